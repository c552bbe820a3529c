"""A run written before the backend seam (results schema 1, tests/data/run_v1) still loads,
reports, compares, recommends, exports and resumes as it did.

The expected outputs in tests/data/run_v1/expected/ were written by that version of the
harness; the only differences allowed are the renamed memory columns (one quantity, one name:
the predicted device memory was "device footprint").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.results import load_run

DATA = Path(__file__).parent / "data" / "run_v1"
RENAMED = {"device footprint (MB)": "device memory (MB)",
           "footprint (MB)": "device memory (MB)"}
CSV_RENAMED = {"host_peak_mb": "host_peak_memory_mb",
               "device_footprint_mb": "device_peak_memory_mb"}


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    dst = tmp_path / "run_v1"
    shutil.copytree(DATA, dst)
    return dst


def _renamed(text: str) -> str:
    for old, new in RENAMED.items():
        text = text.replace(old, new)
    return text


def _cells(markdown: str) -> list[list[str]]:
    """Table rows of a Markdown text as stripped cells (column widths may differ)."""
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")
            and not set(line) <= set("|-: ")]


def test_loads_as_measurements(old_run: Path) -> None:
    run = load_run(old_run)
    assert run.manifest["schema_version"] == 2 and run.manifest["backends"] == ["emulated"]
    ms = {m.case_id: m for m in run.measurements}
    assert len(ms) == 12
    m = ms["digits_cnn/int8-static/prune-0/snapdragon8gen3"]
    assert m.backend == "emulated" and m.status == "ok"
    assert len(m.samples_ns()) == 20 and m.measured and m.measured.cold_start
    assert m.predicted.peak_memory_mb == pytest.approx(150.04, abs=0.01)
    assert m.artifact and m.artifact.key and m.artifact.key in (m.artifact.path or "")
    assert m.provenance.emulator_version is None   # not recorded before the seam
    torch = ms["digits_cnn/torch-int8-dynamic/prune-0/raspberrypi5"]
    assert torch.artifact and torch.artifact.format == "torch"
    assert ms["digits_cnn/fp32/prune-head-l2-25/raspberrypi5"].status == "unsupported"


def _figure_ok(old: str, new: str) -> bool:
    """Two renderings of one figure agree within their rounding (half a unit in the last place
    of each); text must be equal."""
    def ulp(text: str) -> float:
        return 0.5 * 10.0 ** -len(text.partition(".")[2])

    try:
        a, b = float(old.replace(",", "")), float(new.replace(",", ""))
    except ValueError:
        return old == new
    return a == b or abs(a - b) <= ulp(old) + ulp(new) + 1e-12


def _terminal_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(case, device) -> the figures of each row of a terminal table (missing ones left out)."""
    import re

    rows: dict[tuple[str, str], list[str]] = {}
    lines = text.splitlines()
    device = ""
    for line in lines[next(i for i, x in enumerate(lines) if set(x) <= set("- ") and x) + 1:]:
        if not line.strip():
            continue
        if line.startswith("device: "):
            device = line.removeprefix("device: ")
            continue
        if line.startswith("Device predictions:"):
            break
        case, *figures = re.split(r"\s{2,}", line.strip())
        rows[(case, device)] = [f for f in figures if f != "-"]
    return rows


def test_report_has_the_same_figures(old_run: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    assert main(["report", str(old_run), "--no-plots", "--wide"]) == 0
    # the same figures on every row, in the terminal's style (three significant digits, the
    # case id in one column, devices as group lines), then what the emulator of that version
    # assumed: it costed the dynamic batch dimension as 1
    out, _, assumed = capsys.readouterr().out.strip().partition("\n\nAssumed by the emulator")
    # what the report now says about trusting the predictions: none was recorded back then
    assert "\nDevice predictions: no calibration error" in out
    now = _terminal_rows(out)
    before = [line.split() for line in (old_run / "expected" / "terminal.txt").read_text()
              .strip().splitlines()[1:] if line.strip() and not line.startswith(" ")]
    before = [b for b in before if len(b) >= 5 and b[4] in ("ok", "unsupported")]
    assert len(now) == len(before) == 12
    for w, q, p, device, *figures in before:
        got = now[(f"{w}/{q}/prune-{p}", device)]
        assert len(got) == len(figures) and all(
            _figure_ok(o, n) for o, n in zip(figures, got, strict=True)), (got, figures)
    assert assumed.count("input[0] 'batch' = 1") == 6
    now = pd.read_csv(old_run / "report.csv")
    before = pd.read_csv(old_run / "expected" / "report.csv").rename(columns=CSV_RENAMED)
    for col in before.columns:
        pd.testing.assert_series_equal(now[col], before[col], check_dtype=False)
    report = (old_run / "report.md").read_text().split("## Assumed by the emulator")[0]
    assert _cells(report) == _cells(_renamed(
        (old_run / "expected" / "report.md").read_text().replace(
            "backend: emulated", "backends: emulated")))


def test_compare_recommend_export_unchanged(old_run: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    exp = old_run / "expected"
    assert main(["compare", str(old_run), str(old_run)]) == 0
    assert _cells(capsys.readouterr().out) == _cells(_renamed((exp / "compare.md").read_text()))
    assert main(["recommend", str(old_run), "--device", "snapdragon8gen3"]) == 0
    assert _cells(capsys.readouterr().out) == _cells(
        _renamed((exp / "recommend.txt").read_text()))
    for fmt in ("gab-smaller", "gab-bigger", "pytest-benchmark"):
        assert main(["export", str(old_run), "--format", fmt]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(
            (exp / f"export-{fmt}.json").read_text()), fmt


def test_resume_knows_every_finished_case(old_run: Path) -> None:
    """Resuming an old run plans nothing: its case ids are today's emulated case ids."""
    from harness.sweep import BenchOptions, plan_sweep

    run = load_run(old_run)
    plan = plan_sweep(BenchOptions(resume=old_run, suite=old_run / "expected" / "fixture.toml"),
                      manifest=run.manifest)
    assert {c.case_id for c in plan.cases} == run.finished_case_ids()
