"""The nightly history: the index (results/history.jsonl), change points, `harness history`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import make_run, row

from harness import history
from harness.cli import main

FAST = "vision/fp32/prune-0/phone"
FLAT = "vision/int8-dynamic/prune-0/phone"


def _index_runs(results: Path, host_ms: list[float], *, gated: bool = True) -> list[Path]:
    """One tiny run per value: FAST's host p50 follows ``host_ms``, FLAT stays at 0.5 ms
    (each run's samples drawn with another seed: real run-to-run noise)."""
    runs = []
    for i, ms in enumerate(host_ms):
        d = make_run(results, [row("vision", "fp32", "0", "phone", median_ms=ms, seed=i),
                               row("vision", "int8-dynamic", "0", "phone", median_ms=0.5,
                                   seed=100 + i, size_bytes=30_000)], label=f"night{i}")
        summary = history.gate_summary([{"verdict": "same", "regressions": []}] * 2) \
            if gated and i else None
        history.record(results, d, summary)
        runs.append(d)
    return runs


def test_record_writes_one_line_per_run(tmp_path: Path) -> None:
    runs = _index_runs(tmp_path, [1.0, 1.0])
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [e["run_id"] for e in lines] == [r.name for r in runs]
    assert lines[0]["path"] == runs[0].name  # relative to the results directory
    assert lines[0]["git_sha"] == "f" * 40 and lines[0]["created_at"].startswith("2026-11-22")
    assert lines[0]["gate"] is None
    assert lines[1]["gate"] == {"regression": 0, "improvement": 0, "same": 2, "n/a": 0,
                                "cases": 2, "regressed": 0}
    # indexed again: the latest line wins, the run keeps its place
    history.record(tmp_path, runs[0], {"regression": 1})
    entries = history.read_index(tmp_path)
    assert [e["run_id"] for e in entries] == [r.name for r in runs]
    assert entries[0]["gate"] == {"regression": 1}


def test_step_change_is_found_at_the_first_slow_run(tmp_path: Path) -> None:
    series = [1.0] * 5 + [1.2] * 5
    runs = _index_runs(tmp_path, series)
    h = history.load_history(tmp_path, "host_p50_ms")
    assert h.cases == (FAST, FLAT)
    [cp] = h.change_points
    assert cp.case_id == FAST and cp.index == 5 and cp.run_id == runs[5].name
    assert cp.before == pytest.approx(1.0, rel=0.01)
    assert cp.after == pytest.approx(1.2, rel=0.01)
    assert cp.change_pct == pytest.approx(20, abs=1.5)


def test_flat_data_has_no_change_point(tmp_path: Path) -> None:
    _index_runs(tmp_path, [1.0] * 10)
    h = history.load_history(tmp_path, "host_p50_ms")
    assert h.change_points == ()
    # deterministic figures: identical in every run, so no change either
    assert history.load_history(tmp_path, "size_kb").change_points == ()


def test_change_points_on_plain_series() -> None:
    noise = [0.0, 0.01, -0.01, 0.005, -0.005, 0.01, 0.0, -0.01, 0.005, 0.0]
    flat = [10 + e for e in noise]
    assert history.change_points(flat) == []
    step = [v + (3 if i >= 6 else 0) for i, v in enumerate(flat)]
    [(pos, before, after, _)] = history.change_points(step)
    assert pos == 6 and before == pytest.approx(10, abs=0.02) and after > 12.9
    # one bad night is not a change; too short a series cannot have one
    assert history.change_points([*flat[:5], 20.0, *flat[6:]]) == []
    assert history.change_points([1.0, 1.0, 5.0, 5.0, 5.0]) == []
    # missing values are skipped and positions refer to the input
    gappy = [1.0, 1.0, None, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert [p[0] for p in history.change_points(gappy)] == [5]
    # a deterministic figure: any real change is one
    assert [p[0] for p in history.change_points([5.0] * 3 + [5.5] * 3)] == [3]


def test_cli_prints_the_table_and_writes_the_plots(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    runs = _index_runs(tmp_path, [1.0] * 4 + [1.3] * 4)
    out_png = tmp_path / "plots" / "p50.png"
    assert main(["history", "host_p50_ms", "--results-dir", str(tmp_path), "--case", FAST,
                 "-o", str(out_png)]) == 0
    out = capsys.readouterr().out
    assert FAST in out and FLAT not in out
    assert "1.3 *" in out and f"{FAST}: from run {runs[4].name}" in out
    assert out_png.stat().st_size > 1000 and out_png.with_suffix(".svg").is_file()
    assert main(["history", "quality", "--results-dir", str(tmp_path)]) == 0
    assert "no change point" in capsys.readouterr().out
    assert (tmp_path / "history-quality.png").is_file()


def test_cli_add_reads_the_gate_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = make_run(tmp_path, [row("vision", "fp32", "0", "phone")], label="nightly")
    (d / "gate.json").write_text(json.dumps([
        {"case_id": "a", "verdict": "regression", "regressions": ["host latency x1.1"]},
        {"case_id": "b", "verdict": "same", "regressions": []}]))
    assert main(["history", "add", str(d), "--results-dir", str(tmp_path)]) == 0
    assert f"indexed {d.name}" in capsys.readouterr().out
    [entry] = history.read_index(tmp_path)
    assert entry["gate"]["regression"] == 1 and entry["gate"]["regressed"] == 1


@pytest.mark.parametrize("argv, message", [
    (["history", "host_p50_ms"], "no history index"),
    (["history", "latency"], "unknown metric 'latency'"),
    (["history", "add"], "expected RUN"),
    (["history", "add", "nope"], "the run does not exist"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                               argv: list[str], message: str) -> None:
    if argv[-1] == "nope":
        argv = [*argv[:-1], str(tmp_path / "nope")]
    assert main([*argv, "--results-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_empty_index_or_unknown_case_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "history.jsonl").write_text("")
    assert main(["history", "size_kb", "--results-dir", str(tmp_path)]) == 2
    assert "the history index is empty" in capsys.readouterr().err
    _index_runs(tmp_path, [1.0])
    assert main(["history", "size_kb", "--results-dir", str(tmp_path),
                 "--case", "vision/fp32/prune-0/phon"]) == 2
    assert "unknown case" in capsys.readouterr().err


def test_a_run_gone_from_disk_is_skipped_with_a_warning(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    import shutil

    runs = _index_runs(tmp_path, [1.0, 1.0])
    shutil.rmtree(runs[0])
    assert main(["history", "size_kb", "--results-dir", str(tmp_path)]) == 0
    assert f"skipped: {runs[0].name}" in capsys.readouterr().err
    shutil.rmtree(runs[1])
    assert main(["history", "size_kb", "--results-dir", str(tmp_path)]) == 2
    assert "no indexed run is left on disk" in capsys.readouterr().err
