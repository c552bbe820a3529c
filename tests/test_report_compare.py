"""harness compare: verdicts only when significant and beyond the noise threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_run, row, samples_ns

from harness.cli import main
from harness.errors import InputError
from harness.report.compare import CompareOptions, compare_runs, to_markdown
from harness.report.stats import median_ratio_ci
from harness.results import load_run


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    a = [row("w", q, "0", "phone", median_ms=1.0, seed=i,
             device_prediction={"energy_mj": 2.0, "sustained_latency_ms": 2.5})
         for i, q in enumerate(["slower", "faster", "same", "tiny", "quality", "fit", "status",
                                "gone", "size"])]
    b = [row("w", "slower", "0", "phone", median_ms=1.3, seed=10),
         row("w", "faster", "0", "phone", median_ms=0.7, seed=11),
         row("w", "same", "0", "phone", median_ms=1.0, seed=12),
         # 3% slower with 200 samples at 2% noise: significant, but under the 10% threshold
         row("w", "tiny", "0", "phone", median_ms=1.03, seed=13),
         row("w", "quality", "0", "phone", median_ms=1.0, seed=14, quality=0.93),
         row("w", "fit", "0", "phone", median_ms=1.0, seed=15, footprint_mb=2000.0),
         row("w", "status", "0", "phone", status="error", median_ms=None),
         row("w", "size", "0", "phone", median_ms=1.0, seed=17, size_bytes=150_000,
             device_prediction={"energy_mj": 3.0, "sustained_latency_ms": 2.5}),
         row("w", "new", "0", "phone", median_ms=1.0, seed=18)]
    return make_run(tmp_path, a, label="a"), make_run(tmp_path, b, label="b")


def test_verdicts_and_regressions(tmp_path: Path) -> None:
    a, b = _runs(tmp_path)
    cmp = compare_runs(load_run(a), load_run(b))
    by = {c.case_id.split("/")[1]: c for c in cmp.cases}
    assert by["slower"].verdict == "slower" and by["slower"].ratio == pytest.approx(1.3, rel=0.02)
    assert by["slower"].ci_low is not None and by["slower"].ci_low > 1.1
    assert by["faster"].verdict == "faster" and not by["faster"].regressions
    assert by["same"].verdict == "same"
    tiny = by["tiny"]
    assert tiny.ci_low is not None and tiny.ci_low > 1.0   # significant ...
    assert tiny.verdict == "same" and not tiny.regressions  # ... but within the threshold
    assert by["quality"].regressions == ("top1_accuracy 0.9500 -> 0.9300 (-0.0200)",)
    assert "no longer fits the app memory cap" in by["fit"].regressions
    assert "predicted device memory 100 -> 2000 MB (+1900.00%)" in by["fit"].regressions
    assert by["status"].regressions == ("status ok -> error",)
    assert by["gone"].presence == "removed" and by["gone"].regressions
    assert by["new"].presence == "added" and not by["new"].regressions
    assert by["size"].regressions == ("predicted energy 2 -> 3 mJ (+50.00%)",
                                      "artifact size 100000 -> 150000 bytes (+50.00%)")
    assert by["size"].sustained_a_ms == by["size"].sustained_b_ms == 2.5
    assert {c.case_id.split("/")[1] for c in cmp.regressions} == {
        "slower", "quality", "fit", "status", "gone", "size"}
    assert cmp.fails("regression") and cmp.fails("change") and not cmp.fails("never")
    # a stricter threshold turns the significant 3% into a verdict
    strict = compare_runs(load_run(a), load_run(b), CompareOptions(threshold=0.01))
    assert {c.case_id.split("/")[1]: c.verdict for c in strict.cases}["tiny"] == "slower"


def test_a_run_against_itself_changes_nothing(tmp_path: Path) -> None:
    a, _ = _runs(tmp_path)
    cmp = compare_runs(load_run(a), load_run(a))
    assert all(c.verdict == "same" and c.ratio == 1.0 for c in cmp.cases)
    assert not cmp.fails("change")


def test_bootstrap_ci_is_seeded_and_covers_the_true_ratio() -> None:
    a, b = samples_ns(1.0, seed=1), samples_ns(1.2, seed=2)
    ci = median_ratio_ci(a, b)
    assert ci == median_ratio_ci(a, b)               # same input, same interval
    assert ci.low < 1.2 < ci.high and ci.high - ci.low < 0.05
    wide = median_ratio_ci(a[:20], b[:20])
    assert wide.high - wide.low > ci.high - ci.low   # fewer samples, wider interval
    assert np.isclose(ci.ratio, np.median(b) / np.median(a))


def test_markdown_and_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _runs(tmp_path)
    md = to_markdown(compare_runs(load_run(a), load_run(b)))
    assert "| case" in md and "**slower**" in md and "6 with a regression" in md
    assert "energy (mJ)" in md and "2.0000 → 3.0000" in md
    assert main(["compare", str(a), str(b), "--fail-on", "regression"]) == 1
    out = capsys.readouterr()
    assert "**slower**" in out.out and "6 case(s) regressed" in out.err
    assert main(["compare", str(a), str(b)]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(a), "--fail-on", "change", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "edge-harness-comparison" and len(doc["cases"]) == 9


def test_different_hosts_are_noted(tmp_path: Path) -> None:
    r = [row("w", "fp32", "0", "phone")]
    a = make_run(tmp_path, r, label="a")
    b = make_run(tmp_path, r, label="b", host={"cpu_model": "Other CPU", "logical_cpus": 2})
    notes = compare_runs(load_run(a), load_run(b)).notes
    assert any("different hosts" in n for n in notes)


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="threshold"):
        CompareOptions(threshold=1.5)
    with pytest.raises(InputError, match="confidence"):
        CompareOptions(confidence=1.0)


def _v2(r: dict, **provenance: str) -> dict:
    from harness.core.measurement import upgrade_row_v1

    out = upgrade_row_v1(r)
    out["provenance"] = provenance
    return out


def test_a_changed_yardstick_is_not_a_regression(tmp_path: Path) -> None:
    """Predictions that moved because the emulator or the profile changed are reported as
    changes of the yardstick; the same move under the same yardstick is a regression."""
    same = {"emulator_version": "1", "profile_sha256": "aa"}
    a = [_v2(row("w", q, "0", "phone", median_ms=1.0, seed=i, device_ms=2.0), **same)
         for i, q in enumerate(["recal", "slower"])]
    b = [_v2(row("w", "recal", "0", "phone", median_ms=1.0, seed=5, device_ms=3.0),
             emulator_version="1", profile_sha256="bb"),
         _v2(row("w", "slower", "0", "phone", median_ms=1.0, seed=6, device_ms=3.0), **same)]
    cmp = compare_runs(load_run(make_run(tmp_path, a, label="a")),
                       load_run(make_run(tmp_path, b, label="b")))
    by = {c.case_id.split("/")[1]: c for c in cmp.cases}
    assert not by["recal"].regressions and by["recal"].yardstick
    assert any("yardstick changed" in c for c in by["recal"].changes)
    assert by["slower"].regressions == ("predicted device latency 2 -> 3 ms (+50.00%)",)
    assert any("yardstick changed" in n for n in cmp.notes)
    assert "yardstick" in to_markdown(cmp)


def test_runs_of_other_suites_or_eval_sizes_are_flagged(tmp_path: Path) -> None:
    a = make_run(tmp_path, [row("w", "fp32", "0", "phone")], label="a")
    b = make_run(tmp_path, [row("w", "fp32", "0", "phone")], label="b")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest.update(eval_size="full", suite={"name": "other"})
    (b / "manifest.json").write_text(json.dumps(manifest))
    notes = " ".join(compare_runs(load_run(a), load_run(b)).notes)
    assert "different suites" in notes and "different data sizes" in notes
