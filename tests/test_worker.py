"""Worker isolation: failures become classified outcomes, never exceptions in the sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.bench import _in_worker
from harness.worker import run_task


def _measure_task(artifact: Path, inputs: Path, iterations: int = 5) -> dict:
    return {"kind": "measure", "workload": {"name": "tiny", "onnx": str(artifact)},
            "artifact": str(artifact), "inputs": str(inputs), "warmup": 1,
            "iterations": iterations, "threads": 1}


def _inputs(tmp_path: Path) -> Path:
    p = tmp_path / "inputs.npz"
    np.savez(p, input=np.ones((1, 4, 8, 8), np.float32))
    return p


def test_measure_in_worker_keeps_raw_samples(tiny_model: Path, tmp_path: Path) -> None:
    out = _in_worker(_measure_task(tiny_model, _inputs(tmp_path), iterations=7),
                     timeout_s=120, log=tmp_path / "log")
    assert out["status"] == "ok", out
    row = out["result"]
    assert len(row["warm_latency_ns"]) == 7 and all(s > 0 for s in row["warm_latency_ns"])
    assert row["cold_start"]["session_create_ns"] > 0
    assert row["peak_rss_mb"] >= row["rss_before_session_mb"] > 0
    assert row["quality"] is None  # an ONNX-file workload has no metric


def test_a_hang_becomes_a_timeout(tiny_model: Path, tmp_path: Path) -> None:
    out = _in_worker(_measure_task(tiny_model, _inputs(tmp_path), iterations=10**9),
                     timeout_s=3, log=tmp_path / "log")
    assert out["status"] == "timeout" and "3 s" in out["reason"]


def test_a_corrupt_model_becomes_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = run_task(_measure_task(bad, _inputs(tmp_path)))
    assert out["status"] == "error" and out["reason"]


def test_unknown_task_is_an_error() -> None:
    assert run_task({"kind": "nope"})["status"] == "error"
