"""harness recommend: budgets in, variants best first along the Pareto front, reasons out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import make_run, rich_rows, row

from harness.cli import main
from harness.errors import InputError
from harness.report.recommend import Budgets, recommend
from harness.results import load_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path, rich_rows())


def test_budgets_rank_and_reasons(run_dir: Path) -> None:
    rec = recommend(load_run(run_dir), "phone", Budgets(max_latency_ms=3.5, min_quality=0.92),
                    workload="vision")
    # phone device latency: int4 0.8 (q .90), int8-static 1.0 (.94), fp16 2.0 (.95),
    # int8-dynamic 3.0 (.93), fp32 4.0 (.95)
    assert [c.variant for c in rec.accepted] == [
        "int8-static/prune-0", "fp16/prune-2:4", "int8-dynamic/prune-30"]
    assert [c.rank for c in rec.accepted] == [1, 2, 3]
    assert [c.pareto for c in rec.accepted] == [True, True, False]
    assert rec.accepted[2].note.startswith("dominated by int8-static/prune-0")
    why = {c.variant: c.note for c in rec.rejected}
    assert why["fp32/prune-0"] == "burst latency 4 ms > 3.5"
    assert why["int4/prune-channel-l1-25"] == "top1_accuracy 0.9000 < 0.92"
    assert why["int8-static/prune-50"] == "status oom: fixture says oom"
    assert why["int8-static/prune-90"].startswith("status unsupported")
    assert not rec.notes


def test_memory_budget_and_missing_quality(run_dir: Path) -> None:
    rec = recommend(load_run(run_dir), "board", Budgets(max_memory_mb=115, min_quality=0.5))
    why = {c.case_id: c.note for c in rec.rejected}
    assert why["vision/fp32/prune-0/board"] == "device memory 140.0 MB > 115"
    assert why["mine/fp32/prune-0/board"] == "no quality metric"
    assert "several workloads" not in " ".join(rec.notes)  # only vision is left


def test_sustained_uses_the_trace_or_says_it_is_missing(run_dir: Path) -> None:
    run = load_run(run_dir)
    phone = recommend(run, "phone", Budgets(sustained=True), workload="vision")
    assert {c.latency_kind for c in phone.accepted} == {"sustained"}
    fp32 = next(c for c in phone.accepted if c.quant == "fp32")
    assert fp32.latency_ms is not None and fp32.latency_ms > 4.0   # throttled
    board = recommend(run, "board", Budgets(sustained=True))
    assert {c.latency_kind for c in board.accepted} == {"burst"}
    assert any("sustained latency is not available" in n for n in board.notes)


def test_unknown_device_names_close_matches(run_dir: Path) -> None:
    with pytest.raises(InputError, match="phone"):
        recommend(load_run(run_dir), "phon", Budgets())
    with pytest.raises(InputError, match="positive"):
        Budgets(max_latency_ms=0)


def test_cli(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["recommend", str(run_dir), "--device", "phone", "--workload", "vision",
                 "--max-latency-ms", "0.1"]) == 1   # nothing to ship: CI fails
    out = capsys.readouterr().out
    assert "No variant meets the budgets." in out and "burst latency 0.8 ms > 0.1" in out
    assert main(["recommend", str(run_dir), "--device", "phone", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accepted"][0]["rank"] == 1
    assert main(["recommend", str(run_dir), "--device", "tablet"]) == 2
    assert "unknown device in this run 'tablet'" in capsys.readouterr().err


def test_an_advantage_inside_the_prediction_range_decides_nothing(tmp_path: Path) -> None:
    """Two variants of equal quality, one predicted 10% faster: without ranges the slower is
    dominated; with overlapping 80% ranges (the emulator cannot tell them apart) both stay on
    the front; with ranges that do not overlap, the slower is dominated again."""
    def rec(ranges: tuple | None) -> dict:
        rows = []
        for quant, ms, band in (("fast", 2.0, ranges[0] if ranges else None),
                                ("slow", 2.2, ranges[1] if ranges else None)):
            extra = {"latency_range_ms": list(band)} if band else {}
            rows.append(row("w", quant, "0", "phone", device_ms=ms, quality=0.95,
                            device_prediction=extra))
        run = load_run(make_run(tmp_path / str(ranges), rows))
        return {c.quant: c for c in recommend(run, "phone", Budgets()).accepted}

    plain = rec(None)
    assert plain["fast"].pareto and not plain["slow"].pareto
    overlapping = rec(((1.6, 2.6), (1.8, 2.9)))
    assert overlapping["fast"].pareto and overlapping["slow"].pareto
    apart = rec(((1.6, 2.1), (2.15, 2.9)))
    assert apart["fast"].pareto and not apart["slow"].pareto
