"""Names and reasons escaped for Markdown: a hostile workload name cannot break a table."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from report_fixtures import make_run, row

from harness.report.compare import compare_runs, to_markdown
from harness.report.frame import summary_frame
from harness.report.markup import md
from harness.report.recommend import Budgets, recommend
from harness.report.recommend import to_markdown as rec_markdown
from harness.report.tables import markdown_table
from harness.results import load_run


@given(st.text())
def test_escaped_text_never_splits_a_cell_or_opens_a_tag(text: str) -> None:
    out = md(text)
    assert "\n" not in out
    unescaped_pipes = [i for i, ch in enumerate(out) if ch == "|"
                       and (i == 0 or out[i - 1] != "\\" or out[:i].endswith("\\\\"))]
    assert not unescaped_pipes
    # a tag opens with an ASCII letter, '/', '!' or '?' (HTML's tag-open state)
    for i, ch in enumerate(out):
        nxt = out[i + 1:i + 2]
        if ch == "<" and nxt:
            assert not (nxt.isascii() and (nxt.isalpha() or nxt in "/!?")), out


def test_hostile_names_stay_in_their_cells(tmp_path: Path) -> None:
    bad = "evil|<img src=x onerror=alert(1)>"
    rows = [row(bad, "fp32", "0", "phone"), row(bad, "int8", "0", "phone", quality=0.5)]
    run = load_run(make_run(tmp_path, rows, label="a"))
    df = summary_frame(run)
    table = markdown_table(df, {"workload": "workload", "quant": "quant", "status": "status"})
    lines = table.splitlines()
    # every row has as many cell separators as the header (no column shift)
    assert len({line.count("|") - line.count("\\|") for line in lines}) == 1
    assert "<img" not in table
    cmp_md = to_markdown(compare_runs(run, run))
    assert "<img" not in cmp_md and "evil\\|" in cmp_md
    text = rec_markdown(recommend(run, "phone", Budgets(min_quality=0.9)))
    assert "<img" not in text and "0.5000 < 0.9" in text
