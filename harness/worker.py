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
    from harness.suites import WorkloadRef
    from harness.workloads import get_workload

    w = task["workload"]
    return get_workload(WorkloadRef(name=w["name"], onnx=Path(w["onnx"]) if w["onnx"] else None))


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
    with np.load(task["inputs"]) as npz:
        feeds = {k: npz[k] for k in npz.files}
    out = measure_artifact(Path(task["artifact"]), feeds, warmup=task["warmup"],
                           iterations=task["iterations"], threads=task["threads"],
                           pace_ms=task.get("pace_ms"))
    row = out["row"]
    session = out["session"]
    # Quality after timing: evaluation data would otherwise inflate the measured peak memory.
    quality = workload.evaluate(lambda f: session.run(None, f))
    row["quality"] = None if quality is None else {
        "metric": quality.metric, "value": quality.value, "n_examples": quality.n_examples,
        "higher_is_better": quality.higher_is_better}
    return row


def _inputs(task: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out = Path(task["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, **_workload(task).timing_inputs())
    tmp.replace(out)
    return {"inputs": str(out)}


def _build_many(task: dict[str, Any]) -> dict[str, Any]:
    """Build several variants of one workload in one process (torch is imported once).

    Each variant's outcome is classified on its own, so one failing variant does not cost the
    others; finished artifacts are in the cache even if this worker dies later.
    """
    outcomes = [run_task({"kind": "build", "workload": task["workload"],
                          "cache_dir": task["cache_dir"], **variant})
                for variant in task["variants"]]
    return {"outcomes": outcomes}


TASKS: dict[str, Task] = {"build": _build, "build_many": _build_many, "inputs": _inputs,
                          "measure": _measure}


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
        return {"status": status, "reason": reason, "result": None,
                "traceback": traceback.format_exc()}


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = json.loads(task_path.read_text())
    outcome = run_task(task)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome))
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
