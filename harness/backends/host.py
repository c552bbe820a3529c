"""The ``host`` backend: the artifact timed, evaluated and compared on this machine, in a fresh
worker process per case (crash isolation), with no device figures."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness.backends.base import (
    BackendContext,
    Capabilities,
    CaseJob,
    measurement_for,
    now_iso,
)
from harness.core.measurement import Fidelity, Measured, Measurement, Quality
from harness.launcher import run_in_worker

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile


def host_figures(result: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
    """The measured, quality and fidelity parts of a measure worker's result; ``origin`` is
    the case whose run produced them when this row reuses another case's run."""
    q, f = result.get("quality"), result.get("fidelity")
    measured = Measured.from_row({**result["measured"], "origin": origin})
    return {"measured": measured,
            "quality": Quality.from_row(q) if q else None,
            "fidelity": Fidelity.from_row(f) if f else None}


class HostBackend:
    """A plain host run: latency, cold start, peak memory, quality and fidelity."""

    name = "host"
    capabilities = Capabilities(needs_device=False, predicts=False)

    def __init__(self) -> None:
        self.profile: DeviceProfile | None = None
        self.context = BackendContext()

    def open(self, profile: DeviceProfile | None, context: BackendContext) -> None:
        self.profile = profile
        self.context = context

    def close(self) -> None:
        pass

    def memory_limit_mb(self) -> float | None:
        """The worker's memory cap: none on a plain host run."""
        return None

    def measure(self, job: CaseJob) -> Measurement:
        started, started_at = time.monotonic(), now_iso()

        def finish(status: str, reason: str = "", **figures: Any) -> Measurement:
            return measurement_for(job, backend=self.name, status=status, reason=reason,
                                   started=started, started_at=started_at, **figures)

        try:
            if job.failure is not None:
                return finish(*job.failure, **self.extra_figures(job))
            if job.measure is None:
                return finish("error", "no measurement task (the artifact was not built)")
            task = self.adjust(job)
            out, origin = self._run(job, task)
            if out["status"] != "ok":
                reason = out["reason"] + (f" (the run of {origin})" if origin else "")
                return finish(out["status"], reason, **self.extra_figures(job))
            return self.conclude(job, finish, host_figures(out["result"], origin=origin))
        except Exception as exc:  # last line of defence: one bad case never stops the sweep
            return finish("error", f"{type(exc).__name__}: {exc}")

    def _run(self, job: CaseJob, task: Any) -> tuple[dict[str, Any], str | None]:
        """The worker's outcome for ``task``: another case's run of the same artifact and
        settings when that run tells what this one would (see HostRuns), else a new run.

        A new run goes first under the smallest memory cap of the cases sharing the artifact
        (``job.shared_cap_mb``): a pass there is a pass for all of them, so a multi-device
        sweep measures each artifact once. Anything else is run again under the case's own
        cap, which decides its status.
        """
        from dataclasses import replace

        own = task.memory_limit_mb
        # paced runs differ per device (their target is the device's latency): never shared
        key = None if task.pace_spec else (
            replace(task, memory_limit_mb=None, pace=False, timeout_s=0.0))
        caps = [own]
        if key is not None and own is not None and job.shared_cap_mb is not None \
                and job.shared_cap_mb < own:
            caps = [job.shared_cap_mb, own]
        out: dict[str, Any] = {}
        for cap in caps:
            if key is not None:
                hit = self.context.host_runs.lookup(key, cap)
                if hit is not None:
                    out, origin = hit
                    if out["status"] == "ok" or cap == own:
                        return out, origin
                    continue
            out = run_in_worker(replace(task, memory_limit_mb=cap).to_worker(),
                                timeout_s=task.timeout_s, log=job.log, memory_limit_mb=cap)
            if out["status"] == "ok":
                out["result"]["measured"]["memory_cap_mb"] = cap
            if key is not None:
                self.context.host_runs.store(key, cap, out, job.case.case_id)
            if out["status"] == "ok":
                return out, None
        return out, None

    # Hooks the emulated backend overrides.
    def adjust(self, job: CaseJob) -> Any:
        from dataclasses import replace

        assert job.measure is not None
        return replace(job.measure, memory_limit_mb=self.memory_limit_mb(), pace_spec=None)

    def extra_figures(self, job: CaseJob) -> dict[str, Any]:
        return {}

    def conclude(self, job: CaseJob, finish: Any, figures: dict[str, Any]) -> Measurement:
        result: Measurement = finish("ok", **figures)
        return result
