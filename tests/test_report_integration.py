"""Reports from real runs: two real sweeps of the digits CNN, then report/compare/recommend/export
through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=900, check=False)


def test_reports_from_real_runs(tmp_path: Path, cache_dir: Path) -> None:
    results_dir = tmp_path / "results"
    bench = ["bench", "--workload", "digits_cnn", "--device", "snapdragon8gen3", "--device",
             "raspberrypi5", "--quant",
             "fp32", "--quant", "int8-static", "--prune", "0", "--iterations", "40",
             "--min-time-s", "0",
             "--warmup", "5", "--sustained-s", "60", "--results-dir", str(results_dir),
             "--cache-dir", str(cache_dir), "--quiet"]
    for _ in range(2):
        proc = _harness(*bench)
        assert proc.returncode == 0, proc.stderr
    run_a, run_b = sorted(results_dir.iterdir())
    for name in ("report.md", "report.csv", "report.json", "report.html",
                 "plots/pareto-snapdragon8gen3.png", "plots/devices-digits_cnn.svg",
                 "plots/heatmap-latency-digits_cnn.png", "plots/memory-raspberrypi5.png"):
        assert (run_b / name).is_file(), name

    # Same code, same artifacts: deterministic figures agree, so nothing but host latency
    # can regress, and the verdicts are from the allowed set.
    proc = _harness("compare", str(run_a), str(run_b), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    cases = json.loads(proc.stdout)["cases"]
    assert len(cases) == 4
    for c in cases:
        assert c["presence"] == "both" and c["verdict"] in ("faster", "slower", "same")
        assert c["device_a_ms"] == c["device_b_ms"] and c["size_a_kb"] == c["size_b_kb"]
        assert c["quality_a"] == c["quality_b"]
        assert all(r.startswith("host latency") for r in c["regressions"])
        assert c["ci_low"] <= c["ratio"] <= c["ci_high"]

    proc = _harness("recommend", str(run_b), "--device", "snapdragon8gen3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    # the emulator predicts int8-static (NPU) faster than fp32 on the 8 Gen 3 at equal accuracy
    assert rec["accepted"][0]["quant"] == "int8-static" and rec["accepted"][0]["pareto"]

    proc = _harness("export", str(run_b), "--format", "pytest-benchmark")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [b["stats"]["rounds"] for b in doc["benchmarks"]] == [40] * 4
