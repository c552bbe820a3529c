"""Every command's terminal table, from fixture data, fits 120 and 80 columns ($COLUMNS) in
the one style of harness.report.term, and names the columns it hid to fit."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from report_fixtures import make_run, rich_rows, row

from harness.cli import main

RUN_V1 = Path(__file__).parent / "data" / "run_v1"
# What the run summary must show at 120 columns (the deciding columns)
DECIDING = ["case", "status", "host p50", "device", "size", "fits", "quality", "Δ fp32"]


def _print(args: list[str], width: int, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch, *, code: int = 0) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(args) == code
    out = capsys.readouterr().out
    too_wide = [line for line in out.splitlines() if len(line) > width]
    assert not too_wide, f"{args[0]} at {width} columns:\n" + "\n".join(too_wide)
    return out


def _hidden(out: str) -> list[str]:
    """The column names of every "(hidden to fit N columns: ...)" line."""
    text = " ".join(out.split())
    return [name for names in re.findall(r"\(hidden to fit \d+ columns: (.*?); --", text)
            for name in names.split(", ")]


def _headers(out: str) -> str:
    """The header lines of every table in ``out`` (the lines above each dashed rule)."""
    lines = out.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) <= set("- ")]
    return "\n".join(lines[i - 1] + "\n" + lines[i - 2] for i in rules)


@pytest.fixture
def wide_run(tmp_path: Path) -> Path:
    """Three devices with long names, long level names and a long reason: the run the first
    attempt at one table style failed to fit at 100 columns."""
    rows = []
    for dev in ("snapdragon8gen3", "raspberrypi5", "jetsonorinnano"):
        rows += [r | {"device": dev, "case_id": r["case_id"].rsplit("/", 1)[0] + "/" + dev}
                 for r in rich_rows() if r["device"] == "phone"]
        rows.append(row("digits_cnn", "torch-int8-dynamic", "channel-l2-50+ft", dev,
                        median_ms=0.0961, device_ms=0.125, quality=0.9812, seed=3))
        rows.append(row("yolov8n_det", "int8-static", "head-l2-25", dev, status="unsupported",
                        median_ms=None, device_ms=None, footprint_mb=None, quality=None,
                        reason="build: head pruning needs a BERT-style encoder " * 3))
    return make_run(tmp_path / "wide", rows)


@pytest.mark.parametrize("width", [120, 100, 80])
def test_report_summary(wide_run: Path, width: int, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """bench prints this same summary (write_report) at the end of a sweep."""
    out = _print(["report", str(wide_run), "--no-plots"], width, capsys, monkeypatch)
    heads = _headers(out)
    if width >= 120:
        assert all(col in heads for col in DECIDING), heads
    else:
        hidden = _hidden(out)
        assert hidden and "--wide or --columns shows them" in " ".join(out.split())
        assert set(hidden) <= {"size (KB)", "Δ fp32", "sustained (ms)", "unstable", "quality"}
        assert all(h.split()[0] not in heads for h in hidden)
    # the device is a line above its rows, not a column; every case is there
    assert out.count("device: ") == 3
    assert "torch-int8-dynamic/" in out and "prune-channel-l2-50+ft" in out   # maybe wrapped
    assert "yolov8n_det/int8-static/" in out


def test_report_of_an_old_run_and_wide(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run = tmp_path / "run_v1"
    shutil.copytree(RUN_V1, run)
    for width in (120, 80):
        _print(["report", str(run), "--no-plots"], width, capsys, monkeypatch)
    out = _print(["report", str(run), "--no-plots", "--wide"], 400, capsys, monkeypatch)
    assert not _hidden(out) and "cosine vs fp32" in out
    out = _print(["report", str(run), "--no-plots", "--columns", "cold_start_ms,energy_mj"],
                 80, capsys, monkeypatch)
    heads = _headers(out)
    assert "cold start" in heads and "energy" in heads and "quality" not in heads
    assert not _hidden(out)                          # columns asked for are not hidden


def test_calibration_band_in_the_device_header(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cal = {"unit": "npu", "targets": 103, "leave_one_model_out_median_pct": 20.7,
           "in_sample_median_pct": 15.6, "leave_one_device_out_median_pct": 18.2}
    run = make_run(tmp_path, [row("w", "fp32", "0", "phone", device_prediction={
        "calibration": cal, "unit": "npu"})])
    for width in (120, 80):
        out = _print(["report", str(run), "--no-plots"], width, capsys, monkeypatch)
        assert "±21% median" in _headers(out)
    # the files say it where the figures are too
    _print(["report", str(run)], 120, capsys, monkeypatch)
    assert "   device pred. (ms) ±21% median |" in (run / "report.md").read_text()
    assert ">device pred. (ms) ±21% median</th>" in (run / "report.html").read_text()


@pytest.mark.parametrize("width", [120, 80])
def test_emulate(tiny_model: Path, width: int, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = _print(["emulate", str(tiny_model), "--device", "snapdragon8gen3", "--device",
                  "raspberrypi5", "--precision", "fp32", "--precision", "int8", "--duration",
                  "60", "--unit", "npu"], width, capsys, monkeypatch)
    assert "latency" in _headers(out) and out.count("tiny.onnx") >= 4
    # a unit a device lacks: the row says error, the reason is under the table
    assert re.search(r"raspberrypi5\s+fp32\s+error", out) and "unknown compute unit" in out
    if width == 80:
        assert set(_hidden(out)) >= {"power (W)", "energy (mJ)"}
    detail = _print(["emulate", str(tiny_model), "--device", "snapdragon8gen3", "--detail"],
                    width, capsys, monkeypatch)
    assert "share" in _headers(detail) and "Conv" in detail


@pytest.mark.parametrize("width", [120, 80])
def test_devices(width: int, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = _print(["devices"], width, capsys, monkeypatch)
    assert out.count("snapdragon8gen3") == 2 and "npu int8" in _headers(out)
    if width == 80:
        assert {"RAM (MB)", "cpu fp32 (GOPS)"} <= set(_hidden(out))


@pytest.mark.parametrize("width", [120, 80])
def test_compare(wide_run: Path, width: int, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run = tmp_path / "run_v1"
    shutil.copytree(RUN_V1, run)
    out = _print(["compare", str(run), str(run), "--format", "table"], width, capsys,
                 monkeypatch)
    assert "verdict" in _headers(out) and out.count("device: ") == 2
    assert "| case" not in out                      # not Markdown
    out = _print(["compare", str(wide_run), str(wide_run), "--format", "table"], width,
                 capsys, monkeypatch)
    assert out.count("same") >= 15 and "hidden to fit" in out
    assert "95% CI" in _hidden(out) or width > 120


@pytest.mark.parametrize("width", [120, 80])
def test_recommend(wide_run: Path, width: int, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = _print(["recommend", str(wide_run), "--device", "snapdragon8gen3", "--format",
                  "table"], width, capsys, monkeypatch)
    assert "Rejected:" in out and "latency" in _headers(out)
    assert "| rank" not in out
    if width == 80:
        assert "metric" in _hidden(out)
    _print(["recommend", str(wide_run), "--device", "snapdragon8gen3", "--max-latency-ms",
            "0.001", "--format", "table"], width, capsys, monkeypatch, code=1)


def test_compare_and_recommend_print_tables_on_a_terminal_and_markdown_to_a_file(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    run = tmp_path / "run_v1"
    shutil.copytree(RUN_V1, run)
    assert main(["compare", str(run), str(run)]) == 0      # captured: not a terminal
    assert "| case" in capsys.readouterr().out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["compare", str(run), str(run)]) == 0
    assert "| case" not in capsys.readouterr().out
    assert main(["recommend", str(run), "--device", "raspberrypi5"]) == 0
    out = capsys.readouterr().out
    assert "| rank" not in out and "Recommended:" in out
    assert main(["recommend", str(run), "--device", "raspberrypi5", "--format",
                 "markdown"]) == 0
    assert "| rank" in capsys.readouterr().out


def test_unknown_column_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--columns", "host_p90,energy_mj", "--results-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown column 'host_p90'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
