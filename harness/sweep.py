"""The sweep: suite -> cases -> build plan -> executor -> backend -> run store.

:func:`run_bench` validates everything first (profiles, suite, filters, backends, a resumed
run's manifest), then plans: every distinct artifact is built once, inspected and predicted
once per device (the ``describe`` worker task), and every case is handed to its backend
through the executor. Each finished case is appended to the run at once, so a crash or Ctrl-C
loses nothing and ``--resume`` runs only what is missing.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import results
from harness.backends.base import (
    BACKENDS,
    Backend,
    BackendContext,
    BackendOptions,
    CaseJob,
    capabilities_of,
    make_backend,
)
from harness.core.measurement import (
    ArtifactFacts,
    Measurement,
    Prediction,
    Provenance,
    passes_of,
    with_pass,
)
from harness.core.types import (
    DEFAULT_BACKEND,
    ArtifactRef,
    BuildTask,
    Case,
    DescribeTask,
    InputsTask,
    MeasureTask,
)
from harness.errors import InputError
from harness.executors.base import EXECUTORS, Executor, ExecutorOptions, make_executor

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile
    from harness.suites import MeasureOptions, Suite

SEED = 0
TELEMETRY_MODES = ("auto", "stream", "file", "off")


@dataclass(frozen=True)
class MeasureOverrides:
    """Command-line values that replace the suite's ``[measure]`` settings (None: keep)."""

    iterations: int | None = None
    warmup: int | None = None
    timeout_s: float | None = None
    threads: int | None = None
    sustained_s: float | None = None
    period_ms: float | None = None
    pace: bool | None = None
    min_time_s: float | None = None
    passes: int | None = None

    def apply(self, measure: MeasureOptions) -> MeasureOptions:
        given = {k: v for k, v in asdict(self).items() if v is not None}
        try:
            return replace(measure, **given)
        except ValueError as exc:
            raise InputError(str(exc)) from exc


@dataclass(frozen=True)
class BenchOptions:
    """What to sweep and how: everything ``harness bench`` takes, validated on creation.

    ``suite``, ``devices``, ``backends`` and ``eval_size`` left unset take the defaults
    (``default``, none, ``emulated``, ``small``) or, with ``resume``, the resumed run's.
    """

    devices: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    suite: str | Path | None = None
    workloads: tuple[str, ...] | None = None
    quant: tuple[str, ...] | None = None
    prune: tuple[str, ...] | None = None
    results_dir: Path = Path("results")
    resume: Path | None = None
    cache_dir: Path | None = None
    overrides: MeasureOverrides = field(default_factory=MeasureOverrides)
    eval_size: str | None = None
    executor: str = "local"
    # --ray-address: the Ray cluster of the ray executor (None: a local one for the run)
    ray_address: str | None = None
    command_line: tuple[str, ...] = ()
    # --shape NAME=D1,D2,...: the shape of an input of the user's ONNX workloads that has it
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # --retry STATUS: with --resume, run the cases that ended with these statuses again
    retry: tuple[str, ...] = ()
    # the adb backend: --adb HOST:PORT or --serial SERIAL, and --runner PATH
    adb: str | None = None
    serial: str | None = None
    runner: Path | None = None
    runner_kind: str | None = None   # --runner-kind (None: from the runner's file name)
    telemetry: str = "auto"          # --telemetry auto|stream|file|off (adb)
    adb_connect_timeout_s: float = 10.0
    # --cooldown-c MARGIN / --cooldown-max-s S (0: no cooldown gate), see docs/adb.md
    cooldown_c: float = 3.0
    cooldown_max_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("devices", "backends", "workloads", "quant", "prune", "command_line",
                     "shapes", "retry"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        for b in self.backends:
            BACKENDS.entry(b)  # unknown names fail with close matches
        if len(set(self.backends)) != len(self.backends):
            raise InputError(f"each --backend once, got {list(self.backends)}",
                             field="--backend")
        if len(set(self.devices)) != len(self.devices):
            raise InputError(f"each --device once, got {list(self.devices)}", field="--device")
        EXECUTORS.entry(self.executor)
        self._check_ray_address()
        from harness.core.measurement import STATUSES

        for status in self.retry:
            if status not in STATUSES or status == "ok":
                raise InputError(f"expected --retry to be one of {', '.join(STATUSES[1:])}, "
                                 f"got {status!r}", field="--retry")
        if self.retry and self.resume is None:
            raise InputError("--retry re-runs cases of a run: give --resume RUN too",
                             field="--retry")
        self._check_adb()
        from harness.workloads.base import EVAL_SIZES

        if self.eval_size is not None and self.eval_size not in EVAL_SIZES:
            raise InputError(f"expected --eval-size to be one of {', '.join(EVAL_SIZES)}, "
                             f"got {self.eval_size!r}", field="--eval-size")


    def _check_ray_address(self) -> None:
        if self.ray_address is None:
            return
        if self.executor != "ray":
            raise InputError("--ray-address is for the ray executor: add --executor ray",
                             field="--ray-address")
        host, _, port = self.ray_address.removeprefix("ray://").rpartition(":")
        if self.ray_address != "auto" and (
                not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise InputError(f"expected --ray-address auto, HOST:PORT or ray://HOST:PORT, got "
                             f"{self.ray_address!r}", field="--ray-address")

    @property
    def executor_options(self) -> ExecutorOptions:
        return ExecutorOptions(ray_address=self.ray_address)

    def _check_adb(self) -> None:
        """--adb / --serial / --runner: given exactly when the adb backend is used."""
        for name in ("cooldown_c", "cooldown_max_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                flag = "--" + name.replace("_", "-")
                raise InputError(f"expected {flag} >= 0, got {value!r}", field=flag)
        from harness.backends.adb.benchmark_model import RUNNER_FORMATS

        if self.runner_kind is not None and self.runner_kind not in RUNNER_FORMATS:
            raise InputError(f"expected --runner-kind {' or '.join(RUNNER_FORMATS)}, got "
                             f"{self.runner_kind!r}", field="--runner-kind")
        if self.telemetry not in TELEMETRY_MODES:
            raise InputError(f"expected --telemetry {', '.join(TELEMETRY_MODES)}, got "
                             f"{self.telemetry!r}", field="--telemetry")
        given = [f for f in ("adb", "serial", "runner", "runner_kind")
                 if getattr(self, f) is not None]
        if "adb" not in self.backends:
            if given and self.backends:  # (a resumed run names its backends itself)
                flag = "--" + given[0].replace("_", "-")
                raise InputError(f"{flag} is for the adb backend: add --backend adb",
                                 field=flag)
            return
        if self.executor == "ray":
            # the phones are the cluster's phone:* resources (harness.executors.ray_phones)
            if given and given[0] != "runner":
                raise InputError(f"--{given[0]} names one phone; with --executor ray the "
                                 f"phones are the cluster's phone:SERIAL resources (see "
                                 f"docs/cluster.md): drop --{given[0]}", field=f"--{given[0]}")
        elif (self.adb is None) == (self.serial is None):
            raise InputError("the adb backend needs the phone: --adb HOST:PORT (after `adb "
                             "tcpip 5555`) or --serial SERIAL (USB), one of them",
                             field="--adb")
        if self.adb is not None:
            host, _, port = self.adb.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InputError(f"expected --adb HOST:PORT, e.g. 192.168.1.20:5555, got "
                                 f"{self.adb!r}", field="--adb")
        if self.runner is None:
            raise InputError("the adb backend needs --runner PATH: an onnxruntime_perf_test "
                             "built for Android (see docs/adb.md)", field="--runner")
        if not Path(self.runner).is_file():
            raise InputError(f"--runner {self.runner}: no such file", field="--runner")

    @property
    def backend_options(self) -> BackendOptions:
        return BackendOptions(adb=self.adb, serial=self.serial,
                              runner=None if self.runner is None else Path(self.runner),
                              runner_kind=self.runner_kind,
                              connect_timeout_s=self.adb_connect_timeout_s,
                              cooldown_c=self.cooldown_c, cooldown_max_s=self.cooldown_max_s,
                              telemetry=self.telemetry)


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told when a case starts (``measurement`` None) and ends."""

    index: int  # 1-based
    total: int
    case: Case
    measurement: Measurement | None = None
    skipped: bool = False
    # a sweep with passes = N > 1 (MeasureOptions.passes): which pass this is; index and total
    # count the cases of this pass
    pass_no: int = 1
    passes: int = 1


ProgressFn = Callable[[Progress], None]
NoteFn = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """A validated sweep: the suite, its measure settings, profiles, cases and run settings."""

    suite: Suite
    measure: MeasureOptions
    profiles: Mapping[str, DeviceProfile]
    backends: tuple[str, ...]
    cases: tuple[Case, ...]
    eval_size: str
    cache_dir: Path
    backend_options: BackendOptions = field(default_factory=BackendOptions)


def plan_sweep(options: BenchOptions, *, manifest: Mapping[str, Any] | None = None) -> Plan:
    """Validate ``options`` (against a resumed run's ``manifest``) and expand the cases."""
    from harness.cache import default_cache_dir
    from harness.profiles import load_profile
    from harness.suites import expand, load_suite

    m = manifest or {}
    resumed = _resumed_settings(m)
    suite_ref = options.suite or resumed.get("suite") or "default"
    devices = options.devices or tuple(resumed.get("devices") or ())
    backends = options.backends or tuple(resumed.get("backends") or (DEFAULT_BACKEND,))
    eval_size = options.eval_size or resumed.get("eval_size") or "small"
    filters = {k: getattr(options, k) if getattr(options, k) is not None else (
        tuple(resumed["filters"][k]) if resumed.get("filters", {}).get(k) else None)
        for k in ("workloads", "quant", "prune")}
    if not devices and "adb" in backends:
        if options.executor == "ray":
            raise InputError("with --executor ray, give the phones' --device (their SoC "
                             "chooses the phones: snapdragon8gen3 runs on the soc:SM8650 "
                             "ones)", field="--device")
        devices = (_phone_profile(options),)
    caps = {b: capabilities_of(b) for b in backends}
    if any(c.needs_device for c in caps.values()) and not devices:
        raise InputError("expected at least one --device for backend(s) "
                         + ", ".join(b for b, c in caps.items() if c.needs_device),
                         field="--device")
    profiles = {d: load_profile(d) for d in devices}
    suite = _with_shapes(load_suite(suite_ref), options.shapes)
    measure = options.overrides.apply(suite.measure)
    cases = expand(suite, devices=[p.name for p in profiles.values()],
                   backends={b: c.needs_device for b, c in caps.items()},
                   workloads=filters["workloads"], quant=filters["quant"],
                   prune=filters["prune"])
    from harness.workloads import get_workload
    from harness.workloads.onnxfile import OnnxFileWorkload
    from harness.workloads.tflitefile import TfliteFileWorkload

    for ref in {c.workload for c in cases
                if c.workload.onnx is not None or c.workload.tflite is not None}:
        w = get_workload(ref)
        assert isinstance(w, OnnxFileWorkload | TfliteFileWorkload)
        try:
            w.check()
        except InputError as exc:
            raise InputError(f"workload {ref.name!r}: {exc}",
                             file=suite.path) from None
    plan = Plan(suite=suite, measure=measure, profiles=profiles, backends=tuple(backends),
                cases=tuple(cases), eval_size=eval_size,
                cache_dir=Path(options.cache_dir or default_cache_dir()).absolute(),
                backend_options=options.backend_options)
    if manifest is not None:
        _check_resumable(plan, options, manifest)
    return plan


def _phone_profile(options: BenchOptions) -> str:
    """The adb backend without --device: the profile of the phone, from its SoC."""
    from harness.backends.adb.profile import phone_profile

    return phone_profile(options.backend_options)


def _with_shapes(suite: Suite, shapes: Sequence[tuple[str, tuple[int, ...]]]) -> Suite:
    """``suite`` with --shape values given to every ONNX-file workload that has that input."""
    if not shapes:
        return suite
    import onnx

    from harness.core.types import WorkloadRef
    from harness.errors import unknown_name

    used: set[str] = set()
    every_input: set[str] = set()
    refs = []
    for ref in suite.workloads:
        if ref.onnx is None:
            refs.append(ref)
            continue
        model = onnx.load(str(ref.onnx), load_external_data=False)
        names = {i.name for i in model.graph.input}
        every_input |= names
        given = {k: v for k, v in shapes if k in names}
        used |= set(given)
        refs.append(WorkloadRef(name=ref.name, onnx=ref.onnx,
                                shapes=tuple({**ref.shape_map, **given}.items())))
    for name, _ in shapes:
        if name not in used:
            raise unknown_name("input of the suite's ONNX workloads", name, every_input,
                               field="--shape")
    return replace(suite, workloads=tuple(refs))


def run_bench(options: BenchOptions, *, progress: ProgressFn | None = None,
              note: NoteFn | None = None, executor: Executor | None = None,
              on_run_dir: Callable[[Path], None] | None = None) -> Path:
    """Run a sweep and return its run directory.

    All input is validated before any work starts. ``executor`` defaults to the one
    ``options.executor`` names; ``on_run_dir`` is told the run directory as soon as it exists
    (so an interrupted sweep can say how to resume it).
    """
    manifest = results.load_run(options.resume).manifest if options.resume else None
    plan = plan_sweep(options, manifest=manifest)
    # before the run directory exists: a cluster that cannot be reached leaves no empty run
    executor = executor or make_executor(options.executor, options.executor_options)
    argv = list(options.command_line or sys.argv)
    if options.resume is not None:
        run_dir = Path(options.resume)
    else:
        run_dir = results.create_run(options.results_dir, label=_label(plan),
                                     manifest=_manifest(plan, options, argv))
    with results.open_run(run_dir):
        # read under the lock, after a torn tail was repaired
        previous = results.load_run(run_dir).measurements \
            if options.resume is not None else ()
        results.record_session(run_dir, command_line=argv,
                               resumed=options.resume is not None)
        if note:
            for text in plan.suite.notes:
                note(f"warning: {text}")
            note(f"{'resuming' if options.resume else 'writing'} the run in {run_dir}")
        if on_run_dir:
            on_run_dir(run_dir)
        _sweep(plan, run_dir=run_dir, previous={m.case_id: m for m in previous},
               retry=tuple(options.retry), executor=executor, progress=progress, note=note)
    return run_dir


def _sweep(plan: Plan, *, run_dir: Path, previous: Mapping[str, Measurement],
           retry: Sequence[str], executor: Executor, progress: ProgressFn | None,
           note: NoteFn | None) -> None:
    """Measure the cases of ``plan`` that ``previous`` (a resumed run's rows) does not hold
    (or holds with a status in ``retry``), appending each row; then the later passes.

    With ``passes = N`` the sweep goes over its ok cases N-1 more times, each pass in the
    reverse order of the one before, timing only (no quality pass), and appends each case's
    row again with the new samples pooled in (:func:`with_pass`; the run keeps the last row of
    a case). One case per worker process throughout, so a crash still costs one case; what
    the passes buy is that a slow drift of the host's speed (decode speed moves severalfold
    between minutes on a shared host) weighs on every level alike. A resumed run finishes the
    passes its cases had not had.
    """
    backends: dict[tuple[str, str | None], Backend] = {}
    # host runs shared by backends (host work once per artifact), and their settings
    context = BackendContext(options=plan.backend_options)
    passes = plan.measure.passes
    latest = {cid: m for cid, m in previous.items() if m.status not in retry}
    try:
        pending = [c for c in plan.cases if c.case_id not in latest
                   or (latest[c.case_id].status == "ok"
                       and passes_of(latest[c.case_id]) < passes)]
        jobs = _prepare(plan, pending, executor=executor, run_dir=run_dir, note=note)
        total = len(plan.cases)
        if progress:
            for i, c in enumerate(plan.cases, 1):
                if c.case_id in latest:
                    progress(Progress(i, total, c, skipped=True, passes=passes))
        for job in jobs:
            key = (job.case.backend, job.case.device)
            if key not in backends:
                backends[key] = make_backend(
                    job.case.backend, plan.profiles[job.case.device] if job.case.device
                    else None, context)

        order = list(jobs)
        for pass_no in range(1, passes + 1):
            if pass_no == 1:
                this_pass = [j for j in order if j.case.case_id not in latest]
            else:
                order.reverse()
                this_pass = [replace(j, measure=replace(j.measure, pass_no=pass_no))
                             for j in order if j.measure is not None
                             and (m := latest.get(j.case.case_id)) is not None
                             and m.status == "ok" and passes_of(m) < pass_no]
                if this_pass and note:
                    note(f"pass {pass_no} of {passes}: timing {len(this_pass)} case(s) again, "
                         f"in the reverse order, pooling their samples")
                # progress counts the cases of this pass
                this_pass = [replace(j, index=i) for i, j in enumerate(this_pass, 1)]
            _measure_pass(this_pass, backends, executor=executor, run_dir=run_dir,
                          latest=latest, progress=progress, pass_no=pass_no, passes=passes,
                          total=total if pass_no == 1 else len(this_pass))
    finally:
        for b in backends.values():
            b.close()
        executor.close()


def _measure_pass(jobs: Sequence[CaseJob], backends: Mapping[tuple[str, str | None], Backend],
                  *, executor: Executor, run_dir: Path, latest: dict[str, Measurement],
                  progress: ProgressFn | None, pass_no: int, passes: int, total: int) -> None:
    """Measure ``jobs`` (one pass of the sweep), appending a row per case as it ends (in a
    later pass, the case's row so far with the new samples pooled in)."""
    def started(job: CaseJob) -> None:
        if progress:
            progress(Progress(job.index, total, job.case, pass_no=pass_no, passes=passes))

    written: set[str] = set()
    for job, m in executor.measure(jobs, backends, on_start=started):
        if m.case_id in written:
            # rows are keyed by case id: a case an executor reports twice (a retry whose
            # first answer came late) is written once
            continue
        written.add(m.case_id)
        row = m if pass_no == 1 else with_pass(latest[m.case_id], m, pass_no=pass_no)
        results.append_row(run_dir, row.to_row())
        latest[m.case_id] = row
        if progress:
            progress(Progress(job.index, total, job.case, measurement=m, pass_no=pass_no,
                              passes=passes))


# --------------------------------------------------------------------------- planning


def _prepare(plan: Plan, pending: Sequence[Case], *, executor: Executor, run_dir: Path,
             note: NoteFn | None) -> list[CaseJob]:
    """Build every artifact the pending cases need, write their inputs, inspect and predict
    each artifact once per device; one :class:`CaseJob` per pending case, in sweep order."""
    from harness.build import lookup_artifact
    from harness.workloads import get_workload

    log = run_dir / "logs" / "build.log"
    measure = plan.measure
    variants: dict[tuple[str, str, str], Case] = {}
    for c in pending:
        variants.setdefault(c.variant_key, c)

    def lookup(c: Case) -> ArtifactRef | None:
        from harness.artifacts.formats import format_of

        path = lookup_artifact(get_workload(c.workload), quant=c.quant, prune=c.prune,
                               cache_dir=plan.cache_dir)
        return None if path is None else ArtifactRef.from_path(path,
                                                               format=format_of(path).name)

    # 1. builds: one worker per workload for every missing artifact (torch imported once)
    refs: dict[tuple[str, str, str], ArtifactRef] = {}
    failures: dict[tuple[str, str, str], tuple[str, str]] = {}
    missing: dict[str, list[Case]] = {}
    for key, c in variants.items():
        ref = lookup(c)
        if ref is None:
            missing.setdefault(c.workload.name, []).append(c)
        else:
            refs[key] = ref
    build_tasks = [BuildTask(workload=group[0].workload,
                             variants=tuple((c.quant, c.prune) for c in group),
                             cache_dir=plan.cache_dir, timeout_s=measure.timeout_s * len(group))
                   for group in missing.values()]
    started: dict[str, float] = {}

    def building(task: Any) -> None:
        started[task.workload.name] = time.monotonic()
        if note:
            note(f"building {len(task.variants)} artifact(s) for {task.workload.name} ...")

    for task, out in executor.run(build_tasks, log=log, on_start=building):
        assert isinstance(task, BuildTask)
        group = missing[task.workload.name]
        if note and out["status"] == "ok":
            note(f"built {len(group)} artifact(s) for {task.workload.name} in "
                 f"{time.monotonic() - started[task.workload.name]:.1f} s")
        if out["status"] != "ok":
            if note:
                note(f"building for {task.workload.name} stopped ({out['status']}: "
                     f"{out['reason']}); the rest is built one by one")
            continue
        for c, outcome in zip(group, out["result"]["outcomes"], strict=True):
            if outcome["status"] != "ok":
                failures[c.variant_key] = (outcome["status"], "build: " + outcome["reason"])
    # variants a dead build worker left behind: one worker each, so one crash costs one
    retry = [c for group in missing.values() for c in group
             if c.variant_key not in failures and lookup(c) is None]
    for task, out in executor.run([BuildTask(workload=c.workload, variants=((c.quant, c.prune),),
                                             cache_dir=plan.cache_dir,
                                             timeout_s=measure.timeout_s) for c in retry],
                                  log=log):
        assert isinstance(task, BuildTask)
        c = next(c for c in retry if c.workload == task.workload
                 and (c.quant, c.prune) == task.variants[0])
        outcome = out["result"]["outcomes"][0] if out["status"] == "ok" else out
        if outcome["status"] != "ok":
            failures[c.variant_key] = (outcome["status"], "build: " + outcome["reason"])
    for key, c in variants.items():
        if key not in refs and key not in failures:
            ref = lookup(c)
            if ref is None:
                failures[key] = ("error", "build: the artifact is missing after building")
            else:
                refs[key] = ref

    # 2. timing inputs: one file per workload, cached by the workload's fingerprint
    inputs: dict[str, Path] = {}
    inputs_failed: dict[str, tuple[str, str]] = {}
    input_tasks = []
    from harness.cache import key_of

    for c in {c.workload.name: c for c in pending}.values():
        path = plan.cache_dir / "inputs" / (
            key_of({"inputs": get_workload(c.workload).fingerprint()}) + ".npz")
        inputs[c.workload.name] = path
        if not path.is_file():
            input_tasks.append(InputsTask(workload=c.workload, out=path,
                                          timeout_s=measure.timeout_s))
    for task, out in executor.run(input_tasks, log=log):
        assert isinstance(task, InputsTask)
        if out["status"] != "ok":
            inputs_failed[task.workload.name] = (
                "error", "could not prepare inputs: " + out["reason"])

    # 3. describe: facts of every artifact, predicted once per device that a backend wants
    wanted: dict[str, set[str]] = {}
    workload_of: dict[str, str] = {}
    label_of: dict[str, str] = {}
    for c in pending:
        if c.variant_key in refs:
            devices = wanted.setdefault(refs[c.variant_key].key, set())
            workload_of[refs[c.variant_key].key] = c.workload.name
            label_of.setdefault(refs[c.variant_key].key, "/".join(
                (c.workload.name, c.quant.name, f"prune-{c.prune.name}")))
            if c.device and capabilities_of(c.backend).predicts:
                devices.add(c.device)
    by_key = {r.key: r for r in refs.values()}
    describe_tasks = [DescribeTask(artifact=by_key[k], cache_dir=plan.cache_dir,
                                   inputs=inputs[workload_of[k]]
                                   if workload_of[k] not in inputs_failed else None,
                                   devices=tuple(sorted(devs)), sustained_s=measure.sustained_s,
                                   period_ms=measure.period_ms,
                                   breakdown_dir=run_dir / "breakdown",
                                   timeout_s=measure.timeout_s, label=label_of[k])
                      for k, devs in wanted.items()]
    described: dict[str, dict[str, Any]] = {}
    if note and describe_tasks:
        note(f"inspecting {len(describe_tasks)} artifact(s) and predicting them on "
             f"{', '.join(sorted({d for t in describe_tasks for d in t.devices})) or 'no device'}"
             " ...")
    for task, out in executor.run(describe_tasks, log=log):
        assert isinstance(task, DescribeTask)
        described[task.artifact.key] = out

    # 4. one job per pending case; cases whose backend measures on this host under the
    # device's memory cap share one run per artifact, made first under the smallest cap
    floor: dict[str, float] = {}
    for c in pending:
        caps = capabilities_of(c.backend)
        if c.variant_key in refs and c.device and caps.measures_on == "host" \
                and caps.needs_device:
            cap = plan.profiles[c.device].memory.app_cap_mb.value
            art = refs[c.variant_key].key
            floor[art] = min(cap, floor.get(art, cap))
    index = {c.case_id: i for i, c in enumerate(plan.cases, 1)}
    jobs = []
    for c in pending:
        case_log = run_dir / "logs" / f"{_file_name(c.case_id)}.log"
        ref = refs.get(c.variant_key)
        if ref is None:
            jobs.append(CaseJob(case=c, index=index[c.case_id], log=case_log,
                                failure=failures[c.variant_key]))
            continue
        facts, pred, trace, prov = _described(described.get(ref.key), ref, c)
        failure = inputs_failed.get(c.workload.name)
        jobs.append(CaseJob(
            case=c, index=index[c.case_id], log=case_log, artifact=ref, facts=facts,
            prediction=pred, trace=trace, provenance=prov, failure=failure,
            shared_cap_mb=floor.get(ref.key),
            measure=MeasureTask(workload=c.workload, artifact=ref,
                                inputs=inputs[c.workload.name], cache_dir=plan.cache_dir,
                                warmup=measure.warmup, iterations=measure.iterations,
                                threads=measure.threads, eval_size=plan.eval_size,
                                timeout_s=measure.timeout_s, pace=measure.pace,
                                min_time_s=measure.min_time_s)))
    return jobs


def _described(out: dict[str, Any] | None, ref: ArtifactRef, case: Case
               ) -> tuple[ArtifactFacts, Prediction | None, dict[str, Any] | None, Provenance]:
    """Facts, prediction, trace and provenance of ``case`` from its artifact's describe task."""
    from harness import __version__

    base = Provenance(artifact_key=ref.key, harness_version=__version__)
    if out is None or out["status"] != "ok":
        why = "no describe result" if out is None else f"{out['status']}: {out['reason']}"
        facts = ArtifactFacts(key=ref.key, format=ref.format)
        pred = Prediction(error=f"artifact inspection failed ({why})") \
            if case.device and capabilities_of(case.backend).predicts else None
        return facts, pred, None, base
    result = out["result"]
    facts = ArtifactFacts.from_row(result["facts"])
    if not (case.device and capabilities_of(case.backend).predicts):
        return facts, None, None, base
    p = result["predictions"][case.device]
    return (facts, Prediction.from_row(p["prediction"]), p.get("trace"),
            Provenance.from_row(p.get("provenance") or {}))


def _file_name(case_id: str) -> str:
    """A case id as a file name: readable, and distinct for distinct ids (a short hash of the
    id is appended, since '/' and ':' must go)."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", case_id).strip("_")[:80]
    return f"{slug}-{hashlib.sha256(case_id.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------- manifest


def _label(plan: Plan) -> str:
    names = [*plan.profiles] or list(plan.backends)
    return "-".join([plan.suite.name, *names])[:80]


def _manifest(plan: Plan, options: BenchOptions, argv: list[str]) -> dict[str, Any]:
    s = plan.suite
    return {
        "created_at": results.now_iso(),
        "command_line": argv,
        "suite": {"name": s.name, "description": s.description,
                  "path": str(s.path) if s.path else None},
        "filters": {"workloads": _list(options.workloads), "quant": _list(options.quant),
                    "prune": _list(options.prune)},
        "devices": list(plan.profiles),
        "backends": list(plan.backends),
        "shapes": {w.name: {k: list(v) for k, v in w.shapes} for w in s.workloads if w.shapes},
        "executor": options.executor,
        "seed": SEED,
        "measure": asdict(plan.measure),
        "eval_size": plan.eval_size,
        "host": results.host_info(),
        "packages": results.package_versions(),
        "git": results.git_state(),
    }


def _list(v: Sequence[str] | None) -> list[str] | None:
    return list(v) if v is not None else None


def _resumed_settings(m: Mapping[str, Any]) -> dict[str, Any]:
    if not m:
        return {}
    suite = m.get("suite") or {}
    return {"suite": suite.get("path") or suite.get("name"), "devices": m.get("devices"),
            "backends": m.get("backends"), "eval_size": m.get("eval_size", "small"),
            "filters": m.get("filters") or {}}


def _check_resumable(plan: Plan, options: BenchOptions, m: Mapping[str, Any]) -> None:
    """A resumed run must be the same sweep: differing settings would mix runs in one file."""
    where = Path(options.resume or ".") / results.MANIFEST
    started: dict[str, Any] = {
        "suite": (m.get("suite") or {}).get("name"),
        "devices": list(m.get("devices") or ()),
        "backends": list(m.get("backends") or ()),
        "eval size": m.get("eval_size", "small"),
        "measure": {k: v for k, v in (m.get("measure") or {}).items()},
        "filters": {k: v for k, v in (m.get("filters") or {}).items()},
    }
    now: dict[str, Any] = {
        "suite": plan.suite.name,
        "devices": list(plan.profiles),
        "backends": list(plan.backends),
        "eval size": plan.eval_size,
        "measure": asdict(plan.measure),
        "filters": {k: _list(getattr(options, k)) or started["filters"].get(k)
                    for k in ("workloads", "quant", "prune")},
    }
    diffs = [f"{k}: {started[k]!r} in the run, {now[k]!r} now" for k in started
             if started[k] != now[k] and not (k == "measure" and _same_measure(started[k],
                                                                                 now[k]))]
    if diffs:
        raise InputError("--resume continues the same sweep; these settings differ from the "
                         "run being resumed (start a new run instead): " + "; ".join(diffs),
                         file=where)


def _same_measure(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == v for k, v in b.items() if k in a)
