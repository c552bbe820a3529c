"""The sweep: suite -> cases -> artifacts -> one worker per case -> appended rows.

Each case is built and measured in fresh worker processes (:mod:`harness.worker`), so a crash,
hang or runaway allocation becomes one ``error``/``timeout``/``oom`` row and the sweep goes on.
Each finished case is appended to the run at once; ``resume=`` skips cases already recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness import results
from harness.cache import default_cache_dir
from harness.errors import InputError
from harness.profiles import DeviceProfile, load_profile
from harness.suites import Case, MeasureOptions, expand, load_suite

SEED = 0
BACKEND = "emulated"


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told when a case starts (``row`` None) and ends."""

    index: int  # 1-based
    total: int
    case: Case
    row: dict[str, Any] | None = None
    skipped: bool = False


ProgressFn = Callable[[Progress], None]


def run_bench(
    *,
    devices: list[str],
    suite: str | Path = "default",
    workloads: list[str] | None = None,
    quant: list[str] | None = None,
    prune: list[str] | None = None,
    results_dir: Path = Path("results"),
    resume: Path | None = None,
    cache_dir: Path | None = None,
    iterations: int | None = None,
    warmup: int | None = None,
    timeout_s: float | None = None,
    threads: int | None = None,
    sustained_s: float | None = None,
    period_ms: float | None = None,
    pace: bool | None = None,
    eval_size: str | None = None,
    command_line: list[str] | None = None,
    progress: ProgressFn | None = None,
    progress_note: Callable[[str], None] | None = None,
) -> Path:
    """Run a sweep and return its run directory.

    All input is validated (profiles, suite, filters) before any work starts. ``eval_size``
    ("small", the default, or "full") sets how much evaluation data the quality metrics use;
    a resumed run keeps the size it was started with.
    """
    from harness.workloads.base import EVAL_SIZES

    if not devices:
        raise InputError("expected at least one --device")
    profiles = {d: load_profile(d) for d in devices}
    suite_obj = load_suite(suite)
    overrides: dict[str, Any] = {k: v for k, v in {
        "iterations": iterations, "warmup": warmup, "timeout_s": timeout_s,
        "threads": threads, "sustained_s": sustained_s, "period_ms": period_ms,
        "pace": pace}.items() if v is not None}
    try:
        measure = replace(suite_obj.measure, **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    cases = expand(suite_obj, devices=[p.name for p in profiles.values()],
                   workloads=workloads, quant=quant, prune=prune)
    cache = cache_dir or default_cache_dir()
    argv = command_line if command_line is not None else sys.argv

    if resume is not None:
        run = results.load_run(resume)
        run_dir = run.path
        done = run.finished_case_ids()
        started_with = run.manifest.get("eval_size", "small")
        if eval_size is not None and eval_size != started_with:
            raise InputError(f"--eval-size {eval_size} differs from the run being resumed "
                             f"({started_with!r}, {resume / 'manifest.json'})")
        eval_size = started_with
    else:
        eval_size = eval_size or "small"
        if eval_size not in EVAL_SIZES:
            raise InputError(f"expected --eval-size to be one of {', '.join(EVAL_SIZES)}, "
                             f"got {eval_size!r}")
        manifest = {
            "created_at": results.now_iso(),
            "command_line": argv,
            "suite": {"name": suite_obj.name, "description": suite_obj.description,
                      "path": str(suite_obj.path) if suite_obj.path else None},
            "filters": {"workloads": workloads, "quant": quant, "prune": prune},
            "devices": [p.name for p in profiles.values()],
            "backend": BACKEND,
            "seed": SEED,
            "measure": asdict(measure),
            "eval_size": eval_size,
            "host": results.host_info(),
            "packages": results.package_versions(),
            "git": results.git_state(),
        }
        label = "-".join([suite_obj.name, *[p.name for p in profiles.values()]])[:80]
        run_dir = results.create_run(results_dir, label=label, manifest=manifest)
        done = set()
    results.record_session(run_dir, command_line=argv, resumed=resume is not None)

    pending = [c for c in cases if c.case_id not in done]
    build_failures = prebuild(pending, cache_dir=cache, measure=measure,
                              log=run_dir / "logs" / "build.log", progress=progress_note)
    for i, case in enumerate(cases, 1):
        if case.case_id in done:
            if progress:
                progress(Progress(i, len(cases), case, skipped=True))
            continue
        if progress:
            progress(Progress(i, len(cases), case))
        row = run_case(case, profile=profiles[case.device], measure=measure, cache_dir=cache,
                       log_dir=run_dir / "logs", index=i, eval_size=eval_size,
                       build_failure=build_failures.get(_variant_key(case)))
        results.append_row(run_dir, row)
        if progress:
            progress(Progress(i, len(cases), case, row=row))
    return run_dir


def prebuild(cases: list[Case], *, cache_dir: Path, measure: MeasureOptions, log: Path,
             progress: Callable[[str], None] | None = None) -> dict[tuple[str, ...], dict]:
    """Build every missing artifact of ``cases``, one worker per workload.

    Returns the failed builds keyed by variant (status and reason), so their cases are recorded
    without trying again. A worker that dies or times out builds nothing more; its remaining
    variants are then built case by case in :func:`run_case`.
    """
    from harness.build import lookup_artifact
    from harness.workloads import get_workload

    by_workload: dict[str, list[Case]] = {}
    for case in cases:
        w = get_workload(case.workload)
        key = _variant_key(case)
        if lookup_artifact(w, quant=case.quant, prune=case.prune, cache_dir=cache_dir) is None:
            group = by_workload.setdefault(case.workload.name, [])
            if all(_variant_key(c) != key for c in group):
                group.append(case)
    failures: dict[tuple[str, ...], dict] = {}
    for name, group in by_workload.items():
        if progress:
            progress(f"building {len(group)} artifact(s) for {name} ...")
        started = time.monotonic()
        out = _in_worker({
            "kind": "build_many", "workload": _workload_task(group[0]),
            "cache_dir": str(cache_dir),
            "variants": [{"quant": c.quant.name, "prune": {"method": c.prune.method,
                                                           "amount": c.prune.amount}}
                         for c in group]}, timeout_s=measure.timeout_s * len(group), log=log)
        if out["status"] != "ok":
            if progress:
                progress(f"building for {name} stopped ({out['status']}: {out['reason']}); "
                         "the rest is built case by case")
            continue
        for case, outcome in zip(group, out["result"]["outcomes"], strict=True):
            if outcome["status"] != "ok":
                failures[_variant_key(case)] = outcome
        if progress:
            progress(f"built {len(group)} artifact(s) for {name} in "
                     f"{time.monotonic() - started:.1f} s")
    return failures


def _variant_key(case: Case) -> tuple[str, ...]:
    return (case.workload.name, case.quant.name, case.prune.name)


def _workload_task(case: Case) -> dict[str, Any]:
    return {"name": case.workload.name,
            "onnx": str(case.workload.onnx) if case.workload.onnx else None}


def run_case(case: Case, *, profile: DeviceProfile, measure: MeasureOptions, cache_dir: Path,
             log_dir: Path, index: int, build_failure: dict | None = None,
             eval_size: str = "small") -> dict[str, Any]:
    """Build, emulate and measure one case; always returns a row, never raises."""
    started = time.monotonic()
    row: dict[str, Any] = {
        "case_id": case.case_id, "workload": case.workload.name, "quant": case.quant.name,
        "precision": case.quant.precision, "prune": case.prune.name,
        "prune_method": case.prune.method, "device": case.device, "backend": BACKEND,
        "status": "ok", "reason": "", "started_at": results.now_iso(),
        "artifact": None, "device_prediction": None, "host": None, "quality": None,
        "fidelity": None,
    }

    def finish(status: str, reason: str = "") -> dict[str, Any]:
        row["status"], row["reason"] = status, reason
        row["duration_s"] = round(time.monotonic() - started, 3)
        return row

    try:
        workload_task = _workload_task(case)
        log = log_dir / f"{index:04d}.log"
        built = build_failure or _artifact_for(case, workload_task, cache_dir=cache_dir,
                                               measure=measure, log=log)
        if built["status"] != "ok":
            return finish(built["status"], "build: " + built["reason"])
        artifact = Path(built["result"]["artifact"])
        row["artifact"] = _artifact_facts(artifact)

        fits = True
        pace_ms = None
        try:
            pred, trace, breakdown = _device_prediction(artifact, profile, measure)
            row["device_prediction"], row["device_trace"] = pred, trace
            breakdown_file = log_dir.parent / "breakdown" / f"{index:04d}.json"
            breakdown_file.parent.mkdir(exist_ok=True)
            breakdown_file.write_text(json.dumps(breakdown))
            pred["breakdown_file"] = str(breakdown_file.relative_to(log_dir.parent))
            fits = bool(pred["fits"])
            pace_ms = pred["latency_ms"] if measure.pace else None
        except Exception as exc:  # a model the emulator cannot read still gets host figures
            row["device_prediction"] = {"error": f"{type(exc).__name__}: {exc}"}

        measured = _in_worker({
            "kind": "measure", "workload": workload_task, "artifact": str(artifact),
            "inputs": str(_inputs_path(case, workload_task, cache_dir, measure, log)),
            "warmup": measure.warmup, "iterations": measure.iterations,
            "threads": measure.threads, "pace_ms": pace_ms, "eval_size": eval_size,
            "cache_dir": str(cache_dir)}, timeout_s=measure.timeout_s, log=log,
            memory_limit_mb=profile.memory.app_cap_mb.value)
        if measured["status"] != "ok":
            return finish(measured["status"], measured["reason"])
        row["quality"] = measured["result"].pop("quality")
        row["fidelity"] = measured["result"].pop("fidelity", None)
        row["host"] = measured["result"]
        if not fits:
            pred = row["device_prediction"]
            return finish("oom", f"predicted device footprint {pred['footprint_mb']:.1f} MB "
                                 f"exceeds the app memory cap {pred['app_cap_mb']:.0f} MB")
        return finish("ok")
    except Exception as exc:  # last line of defence: one bad case never stops the sweep
        return finish("error", f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- helpers


def _artifact_for(case: Case, workload_task: dict[str, Any], *, cache_dir: Path,
                  measure: MeasureOptions, log: Path) -> dict[str, Any]:
    from harness.build import lookup_artifact
    from harness.workloads import get_workload

    cached = lookup_artifact(get_workload(case.workload), quant=case.quant, prune=case.prune,
                             cache_dir=cache_dir)
    if cached is not None:
        return {"status": "ok", "reason": "", "result": {"artifact": str(cached)}}
    return _in_worker({
        "kind": "build", "workload": workload_task, "quant": case.quant.name,
        "prune": {"method": case.prune.method, "amount": case.prune.amount},
        "cache_dir": str(cache_dir)}, timeout_s=measure.timeout_s, log=log)


def _inputs_path(case: Case, workload_task: dict[str, Any], cache_dir: Path,
                 measure: MeasureOptions, log: Path) -> Path:
    """The workload's batch-1 timing inputs as .npz, written once by a worker and cached.

    Written outside the measuring worker so that loading datasets does not count towards
    the measured peak memory.
    """
    from harness.cache import key_of
    from harness.workloads import get_workload

    key = key_of({"inputs": get_workload(case.workload).fingerprint()})
    path = cache_dir / "inputs" / f"{key}.npz"
    if not path.is_file():
        out = _in_worker({"kind": "inputs", "workload": workload_task, "out": str(path)},
                         timeout_s=measure.timeout_s, log=log)
        if out["status"] != "ok":
            raise RuntimeError("could not prepare inputs: " + out["reason"])
    return path


def _artifact_facts(artifact: Path) -> dict[str, Any]:
    from harness.cache import artifact_sha256, artifact_size_bytes
    from harness.compress.inspect import inspect_artifact
    from harness.runtimes import runtime_of

    stats = inspect_artifact(artifact)
    facts: dict[str, Any] = {
        "path": str(artifact), "runtime": runtime_of(artifact),
        "sha256": artifact_sha256(artifact), "size_bytes": artifact_size_bytes(artifact),
        "params": stats.params, "zero_params": stats.zero_params,
        "sparsity": round(stats.sparsity, 6),
        "sparsity_pattern": stats.sparsity_pattern, "is_2_4": stats.is_2_4}
    if artifact.suffix == ".onnx":
        import onnx

        from harness.compress.quantize import quant_metadata

        # What the quantizer recorded, e.g. the nodes a mixed-precision level kept in float.
        facts.update(quant_metadata(onnx.load(str(artifact), load_external_data=False)))
    return facts


def _device_prediction(artifact: Path, profile: DeviceProfile, measure: MeasureOptions
                       ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(summary, sustained trace, per-node breakdown) of the artifact on the device."""
    from harness.emulator import emulate, simulate

    twin = artifact.suffix != ".onnx"
    if twin:
        # The emulator reads ONNX graphs: a PyTorch artifact is predicted from its ONNX twin,
        # the same recipe applied with onnxruntime's tools (harness.compress.torch_quant).
        from harness.compress.torch_quant import TWIN_FILE

        artifact = artifact.with_name(TWIN_FILE)
    em = emulate(artifact, profile)
    trace = simulate(em.latency, profile, duration_s=measure.sustained_s,
                     period_ms=measure.period_ms, max_points=300)
    summary = em.summary()
    if twin:
        summary["onnx_twin"] = True
    summary.update({
        "burst_latency_ms": trace.burst_latency_ms,
        "sustained_latency_ms": trace.sustained_latency_ms,
        "sustained_s": measure.sustained_s,
        "sustained_clock_fraction": trace.clock_fraction[-1],
        "sustained_temp_c": trace.temp_c[-1],
        "sustained_power_w": trace.power_w[-1],
    })
    return summary, trace.to_row(), em.breakdown()


def _limit_data(limit_mb: float) -> Callable[[], None]:
    """A preexec_fn capping the worker's data segment, as the phone caps an app's memory."""
    def apply() -> None:
        import resource

        limit = int(limit_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return apply


def _in_worker(task: dict[str, Any], *, timeout_s: float, log: Path,
               memory_limit_mb: float | None = None) -> dict[str, Any]:
    """Run a task in a fresh ``python -m harness.worker`` and classify how it ended.

    With ``memory_limit_mb`` the worker runs under RLIMIT_DATA of that size, so a runtime that
    needs more ends as an ``oom`` outcome instead of taking the machine down.
    """
    with tempfile.TemporaryDirectory(prefix="harness-task-") as tmp:
        task_path, result_path = Path(tmp) / "task.json", Path(tmp) / "result.json"
        task_path.write_text(json.dumps(task))
        with log.open("a") as log_fh:
            log_fh.write(f"--- {task['kind']} task at {results.now_iso()}\n")
            log_fh.flush()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "harness.worker", str(task_path), str(result_path)],
                    stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, timeout=timeout_s,
                    check=False, preexec_fn=_limit_data(memory_limit_mb)
                    if memory_limit_mb is not None and sys.platform == "linux" else None)
            except subprocess.TimeoutExpired:
                return {"status": "timeout", "reason": f"{task['kind']} did not finish within "
                                                      f"{timeout_s:g} s (worker killed)"}
        if result_path.is_file():
            outcome: dict[str, Any] = json.loads(result_path.read_text())
            if outcome.get("traceback"):
                with log.open("a") as log_fh:
                    log_fh.write(outcome["traceback"])
            return outcome
        code = proc.returncode
        if code < 0:
            import signal

            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            status = "oom" if name == "SIGKILL" else "error"  # the kernel's OOM killer uses KILL
            return {"status": status, "reason": f"{task['kind']} worker died from {name} "
                                                f"(see {log})"}
        if memory_limit_mb is not None and "MemoryError" in log.read_text(errors="replace"):
            return {"status": "oom", "reason": f"{task['kind']} worker ran out of memory under "
                                               f"the {memory_limit_mb:g} MB cap (see {log})"}
        return {"status": "error", "reason": f"{task['kind']} worker exited with status {code} "
                                             f"without a result (see {log})"}
