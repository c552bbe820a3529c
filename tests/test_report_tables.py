"""Report tables and statistics, on fixture runs (tests/report_fixtures.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_run, measurement, rich_rows, row, samples_ns, thermal_trace

from harness.cli import main
from harness.errors import InputError
from harness.report import stats
from harness.report.frame import row_stats, summary_frame, trace_split
from harness.report.tables import write_report
from harness.results import load_run


def test_sample_stats_match_numpy_and_flag_spread() -> None:
    s = samples_ns(2.0, sigma=0.01, seed=1)
    st = stats.sample_stats(s)
    assert st is not None
    ms = np.asarray(s) / 1e6
    assert st.p50_ms == pytest.approx(np.percentile(ms, 50))
    assert st.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert st.stdev_ms == pytest.approx(np.std(ms, ddof=1))
    # sigma 1% -> inter-decile range about 2 * 1.28 * 1% of the median
    assert st.spread == pytest.approx(2 * 1.2816 * 0.01, rel=0.25)
    assert not st.unstable()
    noisy = stats.sample_stats(samples_ns(2.0, sigma=0.3, seed=1))
    assert noisy is not None and noisy.unstable() and not noisy.unstable(threshold=2.0)
    assert stats.sample_stats([]) is None


def test_pareto_front() -> None:
    # (latency, quality): (2, .95) beats (4, .95); (3, .93) is beaten by (2, .95)
    pts = [(4.0, 0.95), (1.0, 0.94), (2.0, 0.95), (0.8, 0.90), (3.0, 0.93), (1.0, 0.94)]
    assert stats.pareto_front(pts) == [False, True, True, True, False, True]


def test_trace_split_and_battery_arithmetic() -> None:
    tr = thermal_trace(2.0, n=40)
    split = trace_split(tr)
    lat = np.asarray(tr["latency_ms"])
    assert split["device_burst_p50_ms"] == pytest.approx(np.percentile(lat[:4], 50))
    assert split["device_sustained_p90_ms"] == pytest.approx(np.percentile(lat[-4:], 90))
    assert split["device_sustained_p50_ms"] > split["device_burst_p50_ms"]  # it throttled
    r = row("w", "fp32", "0", "phone", device_prediction={
        "energy_mj": 2.0, "avg_power_w": 1.5, "battery_wh": 15.0}, device_trace=tr)
    s = row_stats(measurement(r))
    # 1% of 15 Wh = 0.15 Wh = 540 J = 540000 mJ; at 2 mJ per inference: 270000 inferences
    assert s["inferences_per_pct_battery"] == pytest.approx(270_000)
    assert s["device_burst_p50_ms"] == split["device_burst_p50_ms"]


def test_rows_without_optional_fields_leave_blanks() -> None:
    s = row_stats(measurement(row("w", "fp32", "0", "phone", status="error", median_ms=None,
                                  device_ms=None, footprint_mb=None, quality=None)))
    for key in ("host_p50_ms", "unstable", "device_latency_ms", "energy_mj", "quality",
                "fidelity_cosine", "device_sustained_p50_ms", "inferences_per_pct_battery"):
        assert s[key] is None, key
    assert s["status"] == "error" and s["reason"] == "fixture says error"


def test_summary_frame_deltas_and_named_levels(tmp_path: Path) -> None:
    df = summary_frame(load_run(make_run(tmp_path, rich_rows())))
    phone = df[(df["device"] == "phone") & (df["workload"] == "vision")]
    delta = dict(zip(phone["quant"] + "/" + phone["prune"], phone["quality_delta"], strict=True))
    assert delta["int4/channel-l1-25"] == pytest.approx(-0.05)
    assert delta["fp16/2:4"] == pytest.approx(0.0)
    assert delta["int8-static/50"] is None   # oom: no quality
    # numeric pruning levels first, in numeric order, then named ones
    assert list(dict.fromkeys(phone["prune"])) == ["0", "30", "50", "90", "2:4",
                                                    "channel-l1-25"]
    assert df.loc[df["workload"] == "mine", "unstable"].tolist() == [True, True]


def test_write_report_files(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, rich_rows())
    table = write_report(run_dir, html=False, plots=False)
    assert "Not ok:" in table and "Unstable" in table and "mine/fp32/prune-0/phone" in table
    md = (run_dir / "report.md").read_text()
    for head in ("## Latency", "## Memory", "## Power", "## Quality", "device sustained p50 (ms)",
                 "energy (mJ/inference)", "inferences per 1% battery", "SQNR vs fp32 (dB)",
                 "UNSTABLE", "of cap %"):
        assert head in md, head
    # phone rows: 15 Wh battery; fp32 8 mJ -> 540000 mJ / 8 = 67,500; int8-static 2 mJ
    assert "67,500" in md and "270,000" in md
    summary = md.split("## Summary", 1)[1].split("## Latency", 1)[0]
    assert "device sustained (ms)" in summary and "energy (mJ)" in summary
    with (run_dir / "report.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(rich_rows())
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["run"]["unstable_rows"] == 2 and len(doc["cases"]) == len(rows)
    assert not (run_dir / "report.html").exists()


def test_sections_without_data_say_so(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, [row("w", "fp32", "0", "phone")])
    write_report(run_dir, html=False, plots=False)
    md = (run_dir / "report.md").read_text()
    assert "No power figures in this run." in md
    assert "device sustained" not in md and "energy (mJ)" not in md and "## Quality" in md


def test_a_run_without_rows_reports_so(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, [])
    assert write_report(run_dir) == "no finished cases in this run"
    assert "cases: no cases" in (run_dir / "report.md").read_text()
    assert "No plots" in (run_dir / "report.html").read_text()


def test_report_command_formats(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run(tmp_path, rich_rows())
    assert main(["report", str(run_dir), "--no-plots", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "edge-harness-report"
    assert main(["report", str(run_dir), "--no-plots", "--format", "csv",
                 "--unstable-threshold", "5"]) == 0
    flags = [r["unstable"] for r in csv.DictReader(capsys.readouterr().out.splitlines())]
    assert flags and "True" not in flags
    assert main(["report", str(run_dir), "--no-plots", "--unstable-threshold", "5"]) == 0
    assert "UNSTABLE" not in capsys.readouterr().out


@pytest.mark.parametrize("command", ["report", "compare", "recommend", "export"])
def test_report_commands_have_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and len(capsys.readouterr().out) > 300


def test_terminal_table_fits_the_terminal(tmp_path: Path) -> None:
    from harness.report.tables import terminal_table

    rows = rich_rows()
    rows.append(row("w", "torch-int8-dynamic", "channel-l2-50+ft", "snapdragon8gen3",
                    status="error", median_ms=None, quality=None,
                    reason="a very long reason " * 12))
    df = summary_frame(load_run(make_run(tmp_path, rows)))
    for width in (80, 100, 120):
        text = terminal_table(df, width=width)
        assert all(len(line) <= width for line in text.splitlines()), width
    assert "hidden to fit 80 columns: " in terminal_table(df, width=80)
    wide = terminal_table(df, wide=True)
    assert "cosine vs fp32" in wide and "hidden" not in wide
    picked = terminal_table(df, columns=["host_p90_ms", "energy_mj"], width=200)
    assert "host p90 (ms)" in picked and "energy (mJ)" in picked and "quality" not in picked
    with pytest.raises(InputError, match="host_p50_ms"):
        terminal_table(df, columns=["host_p50"])


def test_generation_table_says_what_the_fp32_reference_is() -> None:
    """A language model whose fp32 is dequantized from a 4-bit file says so beside its Δ."""
    import pandas as pd

    from harness.report.frame import generation_notes
    from harness.report.tables import generation_markdown

    df = pd.DataFrame([
        {"workload": "lm", "quant": "genai-fp32", "prune": "0", "device": None, "status": "ok",
         "load_ms": 100.0, "reference_note": "fp32 is dequantized from a Q4_1 file"},
        {"workload": "lm", "quant": "genai-int4", "prune": "0", "device": None, "status": "ok",
         "load_ms": 50.0, "reference_note": "fp32 is dequantized from a Q4_1 file"},
        {"workload": "cnn", "quant": "fp32", "prune": "0", "device": None, "status": "ok",
         "load_ms": None, "reference_note": None},
    ])
    assert generation_notes(df) == ["lm: fp32 is dequantized from a Q4_1 file."]
    text = "\n".join(generation_markdown(df))
    assert "## Generation" in text and "lm: fp32 is dequantized from a Q4_1 file." in text
    assert "cnn" not in text.split("\n", 2)[2]       # not a generative workload: no row
    assert generation_markdown(df[df["workload"] == "cnn"]) == []
