"""End to end through the CLI: a real sweep of the digits CNN plus a deliberately broken model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

pytestmark = pytest.mark.slow


def _broken_onnx(path: Path) -> Path:
    """A valid graph that fails at run time: [N, 4] @ [4, 4] reshaped to [3]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [3])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Reshape", ["h", "shape"], ["y"])],
        "broken", [x], [y], initializer=[w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "bench", *args],
                          capture_output=True, text=True, timeout=900, check=False)


def test_sweep_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    _broken_onnx(tmp_path / "broken.onnx")
    suite = tmp_path / "e2e.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "e2e"\n'
        'workloads = ["digits_cnn", { name = "broken", onnx = "broken.onnx", '
        'shapes = { x = [1, 4] } }]\n'
        'quant = ["fp32", "int8-dynamic", "int8-static"]\nprune = [0, 50]\n'
        '[measure]\nwarmup = 2\niterations = 25\ntimeout_s = 300\nthreads = 1\n'
        'min_time_s = 0\n')
    results_dir = tmp_path / "results"
    proc = _bench("--device", "snapdragon8gen3", "--suite", str(suite),
                  "--results-dir", str(results_dir), "--cache-dir", str(cache_dir))
    assert proc.returncode == 0, proc.stderr
    # progress names every case and counts down
    assert "[1/12]" in proc.stderr and "[12/12]" in proc.stderr and "0 left" in proc.stderr

    (run_dir,) = list(results_dir.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["devices"] == ["snapdragon8gen3"]
    assert manifest["backends"] == ["emulated"]
    assert manifest["packages"]["onnxruntime"] and manifest["host"]["logical_cpus"] >= 1
    assert manifest["measure"]["iterations"] == 25
    assert manifest["eval_size"] == "small"
    rows = {r["case_id"]: r for r in map(json.loads,
                                         (run_dir / "cases.jsonl").read_text().splitlines())}
    assert len(rows) == 12

    digits = {cid: r for cid, r in rows.items() if r["workload"] == "digits_cnn"}
    assert all(r["status"] == "ok" for r in digits.values()), digits
    def row(q: str, p: str) -> dict:
        return digits[f"digits_cnn/{q}/prune-{p}/snapdragon8gen3"]

    for p in ("0", "50"):
        fp32 = row("fp32", p)
        for q in ("int8-dynamic", "int8-static"):
            assert row(q, p)["artifact"]["size_bytes"] < 0.5 * fp32["artifact"]["size_bytes"]
        for q in ("fp32", "int8-dynamic", "int8-static"):
            r = row(q, p)
            assert 0.9 <= r["quality"]["value"] <= 1.0
            assert abs(r["quality"]["value"] - row("fp32", "0")["quality"]["value"]) < 0.05
            assert len(r["measured"]["phases"][0]["samples"]) == 25
            assert r["measured"]["peak_memory_mb"] > 0
            assert r["provenance"]["emulator_version"] and r["provenance"]["profile_sha256"]
            pred = r["prediction"]
            assert pred["latency_ms"] > 0 and pred["fits"] is True
            # sparsity is measured from the artifact on disk
            sparsity = r["artifact"]["sparsity"]
            assert (sparsity < 0.05) if p == "0" else (0.45 <= sparsity <= 0.6)
            assert r["artifact"]["sparsity_pattern"] == (None if p == "0" else "unstructured")
            assert r["artifact"]["is_2_4"] is False
    # fidelity vs the fp32 dense model on the evaluation inputs
    base = row("fp32", "0")["fidelity"]
    assert base["identical"] and base["cosine"] == pytest.approx(1.0)
    assert base["top1_agreement"] == 1.0
    for q in ("int8-dynamic", "int8-static"):
        fid = row(q, "0")["fidelity"]
        assert not fid["identical"] and fid["reference_sha256"] == base["reference_sha256"]
        assert 0.99 < fid["cosine"] < 1.0 and fid["top1_agreement"] > 0.95
        assert 20 < fid["sqnr_db"] < 80
    # the quantized graphs are predicted faster on a device whose NPU runs int8
    assert row("int8-static", "0")["prediction"]["latency_ms"] < \
        row("fp32", "0")["prediction"]["latency_ms"]

    broken = [r for r in rows.values() if r["workload"] == "broken"]
    assert len(broken) == 6
    for r in broken:
        assert r["status"] == "error" and r["reason"], r

    report = (run_dir / "report.md").read_text()
    assert "host p50 (ms)" in report and "device pred. (ms)" in report
    assert "cosine vs fp32" in report and "SQNR (dB)" in report
    csv_lines = (run_dir / "report.csv").read_text().splitlines()
    assert len(csv_lines) == 13
    assert "digits_cnn" in proc.stdout and "Not ok:" in proc.stdout

    # --resume: nothing left to do, nothing duplicated, nothing overwritten
    before = (run_dir / "cases.jsonl").read_text()
    again = _bench("--device", "snapdragon8gen3", "--suite", str(suite), "--results-dir",
                   str(results_dir), "--cache-dir", str(cache_dir), "--resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped") == 12
    assert (run_dir / "cases.jsonl").read_text() == before
    assert len(list(results_dir.iterdir())) == 1
    # a resumed run keeps its evaluation size: asking for another one is refused up front
    other = _bench("--device", "snapdragon8gen3", "--suite", str(suite), "--results-dir",
                   str(results_dir), "--cache-dir", str(cache_dir), "--resume", str(run_dir),
                   "--eval-size", "full")
    assert other.returncode == 2 and "eval size" in other.stderr and "differ" in other.stderr
    assert (run_dir / "cases.jsonl").read_text() == before


def test_bad_input_stops_before_any_work(tmp_path: Path) -> None:
    proc = _bench("--device", "snapdragon8gen", "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "unknown device 'snapdragon8gen'" in proc.stderr and "snapdragon8gen3" in proc.stderr
    assert not (tmp_path / "r").exists()
    proc = _bench("--device", "snapdragon8gen3", "--quant", "int7", "--results-dir",
                  str(tmp_path / "r"))
    assert proc.returncode == 2 and "quantization level" in proc.stderr
    assert not (tmp_path / "r").exists()
