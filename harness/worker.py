"""Worker process entry point: ``python -m harness.worker TASK.json RESULT.json``.

Every build and every measurement runs in a fresh worker so that a crash, a hang or a runaway
allocation costs one case, never the sweep. Tasks are picked from a registry by their ``kind``.
The result file holds ``{"status": ..., "reason": ..., "result": {...}}``; a worker that dies
without writing it is reported by the orchestrator from its exit status.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import Unsupported

Task = Callable[[dict[str, Any]], dict[str, Any]]


def _workload(task: dict[str, Any]) -> Any:
    from harness.core.types import WorkloadRef
    from harness.workloads import get_workload

    return get_workload(WorkloadRef.from_json(task["workload"]),
                        eval_size=task.get("eval_size", "small"))


def _build(task: dict[str, Any]) -> dict[str, Any]:
    from harness.build import build_artifact
    from harness.variants import PruneSpec, QuantSpec

    path = build_artifact(
        _workload(task),
        quant=QuantSpec(task["quant"]),
        prune=PruneSpec(method=task["prune"]["method"], amount=task["prune"]["amount"]),
        cache_dir=Path(task["cache_dir"]),
    )
    return {"artifact": str(path)}


def _measure(task: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from harness.measure import measure_artifact

    workload = _workload(task)
    if workload.generative:
        from harness.llm.measure import measure_task

        return measure_task(workload, task)
    with np.load(task["inputs"]) as npz:
        feeds = {k: npz[k] for k in npz.files}
    out = measure_artifact(Path(task["artifact"]), feeds, warmup=task["warmup"],
                           iterations=task["iterations"], threads=task["threads"],
                           min_time_s=task.get("min_time_s", 0.0),
                           pace=task.get("pace"))
    row: dict[str, Any] = {"measured": out["measured"]}
    if task.get("timing_only"):  # a later pass of the sweep: its quality is the first pass's
        return {**row, "quality": None, "fidelity": None}
    # Quality after timing: evaluation data would otherwise inflate the measured peak memory.
    outputs: list[np.ndarray] = []
    quality = workload.evaluate(_recording(out["loaded"].run, outputs))
    row["quality"] = None if quality is None else {
        "metric": quality.metric, "value": quality.value, "n_examples": quality.n_examples,
        "higher_is_better": quality.higher_is_better, "extra": dict(quality.extra)}
    row["fidelity"] = None
    if quality is not None and outputs and task.get("cache_dir"):
        try:
            row["fidelity"] = _fidelity(workload, Path(task["artifact"]), outputs,
                                        cache_dir=Path(task["cache_dir"]))
        except Exception as exc:  # a missing comparison must not cost the case its figures
            row["fidelity"] = {"error": f"{type(exc).__name__}: {exc}"}
    return row


def _recording(run: Any, into: list[Any]) -> Any:
    """``run``, also appending every output array it returns to ``into`` (in call order)."""
    def recorded(feeds: Any) -> Any:
        out = run(feeds)
        into.extend(out)
        return out
    return recorded


def _fidelity(workload: Any, artifact: Path, outputs: list[Any], *,
              cache_dir: Path) -> dict[str, Any]:
    """Output fidelity of ``artifact`` vs the workload's fp32 dense artifact, on the eval inputs.

    The fp32 dense outputs are computed once per (fp32 artifact, evaluation size, Python
    version) and cached under ``cache_dir/reference``; the case that *is* the fp32 dense
    artifact writes them from its own evaluation, so a sweep that includes it pays nothing extra.
    """
    import math
    import platform

    import numpy as np

    from harness.build import build_artifact
    from harness.cache import artifact_sha256, key_of
    from harness.variants import PruneSpec, QuantSpec
    from harness.workloads.metrics import fidelity

    ref_artifact = build_artifact(workload, quant=QuantSpec("fp32"),
                                  prune=PruneSpec("magnitude", 0.0), cache_dir=cache_dir)
    ref_sha = artifact_sha256(ref_artifact)
    key = key_of({"reference": ref_sha, "eval_size": workload.eval_size,
                  "workload": workload.fingerprint(), "python": platform.python_version()})
    path = cache_dir / "reference" / f"{workload.name}-{key[:24]}.npz"
    if path.is_file():
        with np.load(path) as npz:
            reference = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    else:
        if artifact_sha256(artifact) == ref_sha:
            reference = outputs
        else:
            from harness.runtimes.onnxruntime import cpu_session

            ref_session = cpu_session(ref_artifact, threads=1)
            reference = []
            workload.evaluate(_recording(lambda f: ref_session.run(None, f), reference))
        from harness.fsutil import atomic_path

        with atomic_path(path) as tmp:
            np.savez(tmp, *reference)
    fid = fidelity(reference, outputs, top1_axis=workload.top1_axis)
    sqnr = fid["sqnr_db"]
    # JSON has no infinity: identical outputs are flagged instead of an infinite SQNR.
    return {"cosine": fid["cosine"], "top1_agreement": fid["top1_agreement"],
            "sqnr_db": sqnr if sqnr is not None and math.isfinite(sqnr) else None,
            "identical": sqnr == math.inf,
            "reference_sha256": ref_sha}


def _inputs(task: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from harness.fsutil import atomic_path

    out = Path(task["out"])
    with atomic_path(out) as tmp:
        np.savez(tmp, **_workload(task).timing_inputs())
    return {"inputs": str(out)}


def _build_many(task: dict[str, Any]) -> dict[str, Any]:
    """Build several variants of one workload in one process (torch is imported once).

    Each variant's outcome is classified on its own, so one failing variant does not cost the
    others; finished artifacts are in the cache even if this worker dies later.
    """
    outcomes = [run_task({"kind": "build", "workload": task["workload"],
                          "cache_dir": task["cache_dir"], **variant})
                for variant in task["variants"]]
    # Each failed variant's traceback goes to the build log (the launcher writes only the
    # top-level outcome's).
    for variant, outcome in zip(task["variants"], outcomes, strict=True):
        if outcome.get("traceback"):
            print(f"--- build of {variant['quant']} / {variant['prune']} failed:\n"
                  f"{outcome.pop('traceback')}", file=sys.stderr)
    return {"outcomes": outcomes}


def _describe(task: dict[str, Any]) -> dict[str, Any]:
    """Inspect an artifact and predict it on each device profile of the task.

    Run in a worker, not in the orchestrator: inspecting a PyTorch artifact unpickles it, and
    the emulator's graph and shape inference can use as much memory as the model.
    """
    from harness.core.types import ArtifactRef
    from harness.predict import artifact_facts, predict_devices

    ref = ArtifactRef(**task["artifact"])
    cache_dir = Path(task["cache_dir"])
    path = ref.path(cache_dir)
    facts = artifact_facts(path, ref=ref)
    breakdown_dir = Path(task["breakdown_dir"]) if task.get("breakdown_dir") else None
    shapes: dict[str, list[int]] = {}
    if task.get("inputs"):
        import numpy as np

        with np.load(task["inputs"]) as npz:
            shapes = {k: list(npz[k].shape) for k in npz.files}
    predictions = predict_devices(path, task["devices"], sustained_s=task["sustained_s"],
                                  period_ms=task.get("period_ms"), input_shapes=shapes,
                                  breakdown_dir=breakdown_dir, artifact_key=ref.key,
                                  label=task.get("label") or "")
    return {"facts": facts.to_row(), "predictions": predictions, "input_shapes": shapes}


def _gate(task: dict[str, Any]) -> dict[str, Any]:
    """Time two artifacts against each other in interleaved rounds (``harness gate``)."""
    from harness.gate import run_gate_task

    return run_gate_task(task)


def _gate_selftest(task: dict[str, Any]) -> dict[str, Any]:
    """A/A and injected-slowdown comparisons (``harness gate --self-test``)."""
    from harness.gate import run_selftest_task

    return run_selftest_task(task)


TASKS: dict[str, Task] = {"build": _build, "build_many": _build_many, "inputs": _inputs,
                          "measure": _measure, "describe": _describe, "gate": _gate,
                          "gate_selftest": _gate_selftest}


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "failed to allocate" in text or "bad_alloc" in text


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task and classify its outcome; never raises."""
    try:
        return {"status": "ok", "reason": "", "result": TASKS[task["kind"]](task)}
    except Unsupported as exc:
        return {"status": "unsupported", "reason": str(exc), "result": None}
    except BaseException as exc:  # the worker reports everything; the orchestrator decides
        status = "oom" if _is_oom(exc) else "error"
        reason = f"{type(exc).__name__}: {exc}".strip()
        if not str(exc).strip():
            # A bare `assert` in a library says nothing: name where it was raised.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            reason = (f"{type(exc).__name__} in {Path(frame.filename).name}:{frame.lineno} "
                      f"({frame.name}): {(frame.line or '').strip()}")
        return {"status": status, "reason": reason, "result": None,
                "traceback": traceback.format_exc()}


def _data_mb() -> float | None:
    """This process's data size (VmData, what RLIMIT_DATA limits) in MiB, where known."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def apply_memory_limit(task: dict[str, Any]) -> dict[str, Any] | None:
    """Cap this process's data segment at ``task["memory_limit_mb"]`` (RLIMIT_DATA), as the
    phone caps an app's memory, *after* importing the runtime libraries the task needs.

    The cap then limits what the model allocates, not the interpreter starting: numpy's
    OpenBLAS threads and onnxruntime's arenas exist before it, so a failure under it is
    evidence that the model does not fit. If the process already needs more than the cap
    before any model is loaded, the outcome says so (``oom``, with the measured figure)
    instead of an ImportError. Returns that outcome, or None when the cap is in place.
    """
    cap = task.get("memory_limit_mb")
    if cap is None or sys.platform != "linux":
        return None
    import importlib

    loaded = []
    artifact = str(task.get("artifact", ""))
    for lib in ("numpy", "onnxruntime", *(("torch",) if artifact.endswith(".pt") else ()),
                *(("onnxruntime_genai",) if artifact.endswith("genai_config.json") else ()),
                *(("ai_edge_litert.interpreter",) if artifact.endswith(".tflite") else ())):
        try:
            importlib.import_module(lib)
            loaded.append(lib)
        except ImportError:  # the task reports a missing runtime itself
            pass
    used = _data_mb()
    if used is not None and used >= cap:
        return {"status": "oom", "result": None,
                "reason": f"the {cap:g} MB memory cap is below what the runtime itself needs "
                          f"on this host: {used:.0f} MB of data after importing "
                          f"{', '.join(loaded) or 'the interpreter'} (measured), before the "
                          "model was loaded"}
    import resource

    limit = int(cap * 2**20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return None


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = json.loads(task_path.read_text())
    outcome = apply_memory_limit(task) or run_task(task)
    from harness.fsutil import atomic_write_text

    atomic_write_text(result_path, json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
