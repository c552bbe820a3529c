"""Exports, checked against what their consumers expect."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import make_run, rich_rows

from harness.cli import main
from harness.errors import InputError
from harness.report.export import export, pytest_benchmark_stats
from harness.results import load_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path, rich_rows())


def _check_gab(entries: list) -> None:
    # github-action-benchmark's custom tools: an array of {name: string, unit: string,
    # value: number, range?: string, extra?: string}; names identify series, so unique
    assert isinstance(entries, list) and entries
    for e in entries:
        assert set(e) <= {"name", "unit", "value", "range", "extra"}, e
        assert isinstance(e["name"], str) and isinstance(e["unit"], str)
        assert isinstance(e["value"], int | float) and not isinstance(e["value"], bool)
        for opt in ("range", "extra"):
            assert isinstance(e.get(opt, ""), str)
    assert len({e["name"] for e in entries}) == len(entries)


def test_github_action_benchmark(run_dir: Path) -> None:
    run = load_run(run_dir)
    smaller = json.loads(export(run, "gab-smaller"))
    _check_gab(smaller)
    names = {e["name"]: e for e in smaller}
    p50 = names["vision/fp32/prune-0/phone host p50 latency"]
    assert p50["unit"] == "ms" and p50["value"] == pytest.approx(1.0, rel=0.01)
    assert names["vision/fp32/prune-0/phone predicted sustained latency"]["value"] == 5.6
    assert names["vision/int4/prune-channel-l1-25/phone predicted energy"]["value"] == 1.6
    assert not any("prune-50" in n for n in names)           # oom rows are not benchmarks
    bigger = json.loads(export(run, "gab-bigger"))
    _check_gab(bigger)
    assert {e["name"]: e["value"] for e in bigger}[
        "vision/fp16/prune-2:4/board top1_accuracy"] == 0.95
    with pytest.raises(InputError, match="unknown export format"):
        export(run, "influx")


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 10, 200, 201])
def test_pytest_benchmark_stats_match_pytest_benchmark(n: int) -> None:
    from pytest_benchmark.stats import Stats

    rng = random.Random(n)
    data = [rng.lognormvariate(-9, 0.3) for _ in range(n)]
    theirs = Stats()
    for v in data:
        theirs.update(v)
    ours = pytest_benchmark_stats(data)
    for key, value in theirs.as_dict().items():
        assert ours[key] == (value if isinstance(value, str)
                             else pytest.approx(value, rel=1e-12)), key


def test_pytest_benchmark_compare_reads_the_export(run_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "0001_export.json"
    assert main(["export", str(run_dir), "--format", "pytest-benchmark", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert len(doc["benchmarks"]) == 12                   # the ok rows with samples
    tool = Path(sys.executable).parent / "pytest-benchmark"
    proc = subprocess.run([str(tool), "compare", str(out), "--columns", "min,median,rounds",
                           "--time-unit", "ms"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "vision[fp32-prune0-phone]" in proc.stdout and "200" in proc.stdout
