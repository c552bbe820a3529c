"""Plots and the self-contained HTML report; the HTML is rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_run, rich_rows, row

from harness.report.frame import summary_frame
from harness.report.plots import write_plots
from harness.report.tables import write_report
from harness.results import load_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium "
                             "chromium-driver; .ci/run installs it): HTML render test skipped")


def _png_pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return np.asarray(imread(path))


def test_plots_written_for_the_data_present(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path, rich_rows()))
    plots = write_plots(run, summary_frame(run), tmp_path / "plots")
    names = {p.name for p in plots}
    assert names == {"pareto-phone", "pareto-board", "heatmap-latency-vision",
                     "heatmap-quality-vision", "heatmap-latency-mine", "thermal-phone",
                     "memory-phone", "memory-board", "devices-vision", "devices-mine",
                     "distribution-vision", "distribution-mine"}
    # no quality metric -> no quality heatmap or Pareto panel for "mine"; only the phone rows
    # have traces -> no thermal plot for the board
    for p in plots:
        px = _png_pixels(p.png)
        assert px.shape[0] > 200 and px.shape[1] > 300
        assert px[..., :3].std() > 0.05, f"{p.png} looks blank"
        root = ET.parse(p.svg).getroot()
        assert root.tag.endswith("svg")



def test_svgs_are_byte_identical_when_rebuilt(tmp_path: Path) -> None:
    # stable in version control and diffs: no date, a fixed hash salt
    run = load_run(make_run(tmp_path, [row("w", "fp32", "0", "phone"),
                                       row("w", "int8-static", "0", "phone", quality=0.9)]))
    first = write_plots(run, summary_frame(run), tmp_path / "first")
    again = write_plots(run, summary_frame(run), tmp_path / "again")
    assert [p.name for p in first] == [p.name for p in again] and first
    assert all(a.svg.read_bytes() == b.svg.read_bytes() for a, b in zip(first, again,
                                                                         strict=True))


def test_no_plots_for_a_run_without_ok_rows(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path, [row("w", "fp32", "0", "phone", status="error",
                                           median_ms=None, device_ms=None,
                                           footprint_mb=None, quality=None)]))
    assert write_plots(run, summary_frame(run), tmp_path / "plots") == []


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fixture run with its full report written (shared: plots take a few seconds)."""
    run_dir = make_run(tmp_path_factory.mktemp("runs"), rich_rows())
    write_report(run_dir)
    return run_dir


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained(reported_run: Path) -> None:
    text = (reported_run / "report.html").read_text()
    parser = _Collect()
    parser.feed(text)
    tags = parser.tags
    tables = [a["id"] for t, a in tags if t == "table"]
    assert tables == ["table-summary", "table-latency", "table-memory", "table-power",
                      "table-quality"]
    imgs = [a["src"] or "" for t, a in tags if t == "img"]
    assert len(imgs) == 12 and all(s.startswith("data:image/png;base64,") for s in imgs)
    # nothing is fetched from anywhere: no external src/href, no link/stylesheet tags
    for _, attrs in tags:
        for key in ("src", "href"):
            assert not re.match(r"(https?:)?//", attrs.get(key) or ""), attrs
    assert not any(t == "link" for t, _ in tags)


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={user_dir}", *args],
        capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_html_renders_in_chromium(reported_run: Path, tmp_path: Path) -> None:
    run_dir = reported_run
    page = run_dir / "report.html"
    # Click the "host p50 (ms)" header of the latency table once the page has loaded, so the
    # dumped DOM shows whether the inline sorting script works.
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.read_text().replace(
        "</body>", "<script>document.querySelectorAll('#table-latency th')[5].click()"
                   "</script></body>"))
    dom = _chromium("--dump-dom", clicked.as_uri(), user_dir=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Collect()
    parser.feed(dom.stdout)
    assert sum(t == "table" for t, _ in parser.tags) == 5
    assert sum(t == "img" for t, _ in parser.tags) == 12
    latency = dom.stdout.split('id="table-latency"', 1)[1].split("</table>", 1)[0]
    cells = [c for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", latency, flags=re.S)
             if (c := re.findall(r"<td[^>]*>([^<]*)</td>", tr))]
    p50 = [float(c[5]) for c in cells if c[5]]
    before = summary_frame(load_run(run_dir))["host_p50_ms"].dropna().tolist()
    assert before != sorted(before)                      # the click did the sorting
    assert len(p50) >= 10 and p50 == sorted(p50), p50   # sorted ascending by the click
    assert [c[5] for c in cells][-1] == ""               # blanks (not-ok rows) last

    shot = tmp_path / "shot.png"
    proc = _chromium(f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri(),
                     user_dir=tmp_path / "profile")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    px = _png_pixels(shot)[..., :3]
    assert px.shape[:2] == (2000, 1400)
    # not blank: plenty of non-white pixels (text, table borders, highlighted rows)
    assert (px.mean(axis=2) < 0.9).mean() > 0.02


def test_predictions_link_to_where_their_device_time_goes(tmp_path: Path) -> None:
    """With a per-node breakdown file, a row's device latency links to its time-share row,
    which links to the breakdown file; the Pareto plot draws the prediction's range."""
    import json

    rows = [row("vision", "fp32", "0", "phone", device_ms=2.0,
                device_prediction={"breakdown_file": "breakdown/k-phone.json",
                                   "latency_range_ms": [1.5, 2.8]})]
    run_dir = make_run(tmp_path, rows)
    (run_dir / "breakdown").mkdir()
    (run_dir / "breakdown" / "k-phone.json").write_text(json.dumps(
        [{"op": "Conv", "unit": "npu", "time_ms": 1.5, "fallback": None},
         {"op": "Relu", "unit": "cpu", "time_ms": 0.5, "fallback": "no int8 kernel"}]))
    write_report(run_dir)
    page = (run_dir / "report.html").read_text()
    anchor = re.search(r'<a href="#(time-[0-9a-f]+)">2\.000</a>', page)
    assert anchor, "the device latency cell links to its time share"
    assert f'<tr id="{anchor.group(1)}"><td><a href="breakdown/k-phone.json">' in page
    assert "npu 75%, cpu 25%" in page and "1 of 2" in page


def test_summary_column_groups_can_be_hidden(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, rich_rows())
    write_report(run_dir, plots=False)
    page = (run_dir / "report.html").read_text()
    for group in ("latency", "memory", "quality"):
        assert f'data-table="table-summary" data-group="{group}"' in page
        assert f'class="g-{group}"' in page
        assert f"table.hide-{group} .g-{group}" in page
    assert "classList.toggle" in page
