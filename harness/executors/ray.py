"""The Ray executor: a sweep's tasks on the nodes of a Ray cluster (``--executor ray``).

``harness bench --executor ray`` connects to ``--ray-address`` (``auto``, ``HOST:PORT`` or
``ray://HOST:PORT``), or starts a local Ray instance for the run when none is given (no
dashboard). Needs the ``ray`` extra: ``pip install edge-harness[ray]``.

What runs where:

* **Worker tasks** (build, inputs, describe) are Ray tasks of one CPU each. Each one starts the
  same isolated worker process as the local executor (:func:`harness.launcher.run_in_worker`)
  on its node, so a crash, a hang (the task's own timeout) or a runaway allocation still costs
  one task, not the Ray worker or the node. At most as many are in flight as the cluster has
  CPUs, so each one's deadline starts when it can start.
* **Timed cases** (backends that measure on the host: ``emulated``, ``host``) are Ray tasks
  that need the custom resource ``harness_timing`` (1 per node), so a node times one case at a
  time, as the local executor does. The task opens the backend on the node
  (:func:`harness.backends.base.make_backend`, with the driver's device profile) and returns
  ``Measurement.to_row()``; the driver rebuilds it and records which node measured it
  (``provenance.host``, ``measured.extra.ray_node``). Cases that already failed are recorded
  on the driver, as by the local executor, while the cluster works.
* **Device cases** (backends that measure on a device: ``adb``) run on the cluster's phones,
  each declared by a custom resource ``phone:SERIAL`` (or ``phone:HOST:PORT``) and its SoC by
  ``soc:SM8650``: one actor per phone holds it for the sweep and measures one case at a time;
  a phone or node lost mid-case gives a ``device_lost`` row and the rest go to another phone
  of the same SoC (:mod:`harness.executors.ray_phones`). They run after the host cases.
* **Lost nodes**: a task whose worker or node dies is retried once elsewhere
  (``max_retries``); if that fails too, or no answer comes within the task's deadline (its
  timeout, twice for a case that may run under two memory caps, plus a grace for scheduling
  and start-up, times the attempts), the task ends ``error`` with a reason that starts with
  ``node lost``. Every task yields exactly one outcome.

How artifacts move: they do not. Tasks name artifacts by their key in the content-addressed
store (``<cache>/artifacts/<key>/<file>``), and every node must see the same cache directory
at the same path (``--cache-dir`` on a shared mount: NFS, a cluster file system). The same
holds for the results directory (workers write their logs and the emulator's per-node
breakdown files there) and for a suite's own ONNX files. This is the simplest honest first
version; shipping artifacts through Ray's object store is future work (see docs/cluster.md).

Known limits: device cases start once the host cases are done (not side by side); host
runs are not shared between the devices of a multi-device sweep (each case's task opens its
own backend, so each device's row is its own run); a node shared with other work is not
guarded (``harness_timing`` keeps this sweep's timed cases apart, not other people's jobs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import ray
import ray.exceptions

from harness.backends.base import (
    Backend,
    BackendContext,
    BackendOptions,
    CaseJob,
    capabilities_of,
    make_backend,
    measure_guarded,
    measurement_for,
    now_iso,
)
from harness.core.measurement import Measurement
from harness.core.types import WorkerTask
from harness.errors import InputError
from harness.executors.base import BackendKey, ExecutorOptions
from harness.executors.ray_auth import auth_token_source
from harness.executors.ray_phones import measure_on_phones, node_info

# one per node: a node times one case at a time
TIMING_RESOURCE = "harness_timing"
# retries of a task whose Ray worker or node died
RETRIES = 1
# added to a task's own timeout for scheduling, starting a worker and importing
GRACE_S = 120.0
# the object store of a local instance: results are small JSON rows
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
# what says a task's node (or its Ray worker) went away, as opposed to a bug in the task
_LOST = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
         ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError,
         ray.exceptions.LocalRayletDiedError, ray.exceptions.TaskUnschedulableError,
         ray.exceptions.TaskCancelledError)

T = TypeVar("T")


def _run_task(task: dict[str, Any], timeout_s: float, log: str) -> dict[str, Any]:
    """A worker task in a fresh worker process on this node (crash isolation)."""
    from harness.launcher import run_in_worker

    return {"outcome": run_in_worker(task, timeout_s=timeout_s, log=Path(log)),
            "node": node_info()}


def _measure_case(backend: str, profile: Any, options: BackendOptions, job: CaseJob
                  ) -> dict[str, Any]:
    """One case measured on this node by a backend opened here; the row and the node."""
    if profile is None and job.case.device is not None:
        from harness.profiles import load_profile

        profile = load_profile(job.case.device)
    opened = make_backend(backend, profile, BackendContext(options=options))
    try:
        m = measure_guarded(opened, job)
    finally:
        opened.close()
    return {"row": m.to_row(), "node": node_info()}


_run_remote = ray.remote(num_cpus=1, max_retries=RETRIES)(_run_task)
_measure_remote = ray.remote(num_cpus=1, resources={TIMING_RESOURCE: 1},
                             max_retries=RETRIES)(_measure_case)


def _lost_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, _LOST):
        return (f"node lost: the Ray worker or node running the task died "
                f"({type(exc).__name__}, {RETRIES + 1} attempt(s)){': ' + first if first else ''}")
    return f"ray task failed: {type(exc).__name__}: {first}"


class RayExecutor:
    """Runs worker tasks and timed cases on a Ray cluster; yields outcomes as they finish."""

    name = "ray"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()
        self._owns = False
        self._connect(self.options.ray_address)

    # ------------------------------------------------------------------ the cluster
    def _connect(self, address: str | None) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is None:
            if not ray.is_initialized():
                ray.init(num_cpus=os.cpu_count() or 1, resources={TIMING_RESOURCE: 1},
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False)
                self._owns = True
        else:
            if ray.is_initialized():
                ray.shutdown()
            token = auth_token_source()
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = (f" (the Ray auth token was taken from {token}; is it this cluster's? "
                        "`ray get-auth-token` on the head prints it)" if token else
                        " (if the cluster uses token authentication, put its token, from "
                        "`ray get-auth-token` on the head, in ~/.ray/auth_token or "
                        "$RAY_AUTH_TOKEN)")
                raise InputError(f"could not connect to the Ray cluster at {address}: "
                                 f"{exc}{hint}", field="--ray-address") from None
            self._owns = True
        if self._timing_slots() < 1:
            where = address or "this Ray instance"
            self.close()
            raise InputError(
                f"{where} has no node with the custom resource {TIMING_RESOURCE!r}: start each "
                f"node with `ray start ... --resources '{{\"{TIMING_RESOURCE}\": 1}}'` "
                "(see docs/cluster.md)", field="--ray-address")

    @staticmethod
    def _timing_slots() -> int:
        return int(ray.cluster_resources().get(TIMING_RESOURCE, 0))

    @staticmethod
    def _cpus() -> int:
        return int(ray.cluster_resources().get("CPU", 0))

    def close(self) -> None:
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    # ------------------------------------------------------------------ worker tasks
    def run(self, tasks: Iterable[WorkerTask], *, log: Path,
            on_start: Callable[[WorkerTask], None] | None = None
            ) -> Iterator[tuple[WorkerTask, dict[str, Any]]]:
        def submit(task: WorkerTask) -> Any:
            if on_start:
                on_start(task)
            return _run_remote.options(max_retries=RETRIES).remote(
                task.to_worker(), task.timeout_s, str(log))

        def lost(task: WorkerTask, reason: str) -> dict[str, Any]:
            return {"status": "error", "reason": f"{task.to_worker()['kind']}: {reason}"}

        for task, answer in _as_finished(list(tasks), submit=submit, capacity=self._cpus,
                                         deadline_s=lambda t: _deadline(t.timeout_s),
                                         lost=lost):
            yield task, answer.get("outcome", answer)

    # ------------------------------------------------------------------ timed cases
    def measure(self, jobs: Iterable[CaseJob], backends: Mapping[BackendKey, Backend], *,
                on_start: Callable[[CaseJob], None] | None = None
                ) -> Iterator[tuple[CaseJob, Measurement]]:
        remote: list[CaseJob] = []
        local: list[CaseJob] = []
        phones: list[CaseJob] = []
        for job in jobs:
            runs = job.failure is None and job.measure is not None
            where = capabilities_of(job.case.backend).measures_on
            if runs and where == "device":
                phones.append(job)
            else:
                (remote if runs and where == "host" else local).append(job)
        started: dict[str, tuple[float, str]] = {}

        def submit(job: CaseJob) -> Any:
            if on_start:
                on_start(job)
            started[job.case.case_id] = (time.monotonic(), now_iso())
            b = backends[(job.case.backend, job.case.device)]
            context = getattr(b, "context", None)
            return _measure_remote.options(max_retries=RETRIES).remote(
                job.case.backend, getattr(b, "profile", None),
                getattr(context, "options", None) or BackendOptions(), job)

        def lost(job: CaseJob, reason: str) -> dict[str, Any]:
            t0, at = started.get(job.case.case_id, (time.monotonic(), now_iso()))
            return {"measurement": measurement_for(job, backend=job.case.backend,
                                                   status="error", reason=reason,
                                                   started=t0, started_at=at)}

        def on_driver(job: CaseJob) -> dict[str, Any]:
            if on_start:
                on_start(job)
            b = backends[(job.case.backend, job.case.device)]
            return {"measurement": measure_guarded(b, job)}

        for job, answer in _as_finished(
                remote, submit=submit, capacity=self._timing_slots,
                deadline_s=lambda j: _deadline(2 * j.measure.timeout_s if j.measure else 0.0),
                lost=lost, local=local, run_local=on_driver):
            if "measurement" in answer:
                yield job, answer["measurement"]
                continue
            m = Measurement.from_row(answer["row"])
            node = answer["node"]
            yield job, replace(
                m, provenance=replace(m.provenance, host=node["hostname"]),
                measured=None if m.measured is None else replace(
                    m.measured, extra={**(m.measured.extra or {}), "ray_node": node}))
        # then the device cases, on the phones of the cluster (harness.executors.ray_phones)
        yield from measure_on_phones(phones, backends, on_start=on_start)


def _deadline(timeout_s: float) -> float:
    """How long the driver waits for a task: every attempt's timeout and grace."""
    return (timeout_s + GRACE_S) * (RETRIES + 1)


def _as_finished(items: list[T], *, submit: Callable[[T], Any], capacity: Callable[[], int],
                 deadline_s: Callable[[T], float], lost: Callable[[T, str], dict[str, Any]],
                 local: list[T] | None = None,
                 run_local: Callable[[T], dict[str, Any]] | None = None
                 ) -> Iterator[tuple[T, dict[str, Any]]]:
    """Submit ``items`` as Ray tasks, at most ``capacity()`` in flight, and yield each one's
    answer as it finishes: exactly one per item, whatever happens to the cluster. ``local``
    items run here (``run_local``) while the cluster works."""
    queue = list(items)
    waiting = list(local or ())
    running: dict[Any, tuple[T, float, float]] = {}   # ref -> (item, deadline, allowed)
    while queue or running or waiting:
        while queue and len(running) < max(1, capacity()):
            item = queue.pop(0)
            allowed = deadline_s(item)
            running[submit(item)] = (item, time.monotonic() + allowed, allowed)
        if waiting and run_local is not None:
            item = waiting.pop(0)
            yield item, run_local(item)
            continue
        if not running:
            continue
        soonest = min(d for _, d, _ in running.values())
        ready, _ = ray.wait(list(running), num_returns=1,
                            timeout=max(0.0, min(soonest - time.monotonic(), 5.0)))
        for ref in ready:
            item, _, _ = running.pop(ref)
            try:
                answer: dict[str, Any] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                answer = lost(item, _lost_reason(exc))
            yield item, answer
        now = time.monotonic()
        for ref, (item, deadline, allowed) in list(running.items()):
            if deadline <= now:
                del running[ref]
                with contextlib.suppress(Exception):  # its node may be gone already
                    ray.cancel(ref, force=True)
                yield item, lost(item, f"node lost: no answer from the Ray task within "
                                       f"{allowed:g} s")
