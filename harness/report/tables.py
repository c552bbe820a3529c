"""Run tables: report.md, report.csv, report.json and the terminal summary of a run.

The data (one row per case, the column catalogs) comes from :mod:`harness.report.frame`;
:func:`write_report` writes the files and, unless told not to, the plots and the
self-contained ``report.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.frame import (
    COLUMNS,
    PAIRS_INTRO,
    SECTIONS,
    TEXT_COLUMNS,
    DevicePair,
    device_pairs,
    display_frame,
    pairs_by_device,
    present_columns,
    run_header,
    section_columns,
    summary_frame,
)
from harness.report.stats import UNSTABLE_SPREAD
from harness.results import Run, load_run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "SECTIONS", "json_report", "markdown_report", "markdown_table",
           "terminal_table", "write_report"]


def markdown_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A Markdown table of some columns, numbers right-aligned."""
    from harness.report.markup import md

    shown = display_frame(df, columns).map(md)   # names and reasons may hold | or HTML
    align = ["left" if c in TEXT_COLUMNS else "right" for c in columns]
    return str(shown.to_markdown(index=False, disable_numparse=True, colalign=align))


def markdown_report(run: Run, df: pd.DataFrame, *, unstable_threshold: float = UNSTABLE_SPREAD
                    ) -> str:
    """The whole Markdown report: header, one table per section, rows that are not ok."""
    from harness.report.markup import md

    h = run_header(run, df, unstable_threshold=unstable_threshold)
    status_line = ", ".join(f"{n} {s}" for s, n in h["status_counts"].items()) or "no cases"
    parts = [f"# Run {h['run_id']}\n",
             f"- suite: `{h['suite']}`; devices: {', '.join(h['devices']) or '-'}; "
             f"backends: {', '.join(h['backends'])}",
             f"- host: {h['host']}, threads per case: {h['threads']}",
             f"- cases: {status_line}; unstable rows: {h['unstable_rows']} (spread (p90-p10)/p50"
             f" of the warm samples above {h['unstable_threshold_pct']:.0f}%)\n",
             "Host latency is measured on this machine (warm runs, batch 1); device latency, "
             "memory and power are the emulator's predictions for the device profile.\n",
             *([md(h["calibration"]) + "\n"] if h.get("calibration") else []),
             "## Summary\n", markdown_table(df, present_columns(df, COLUMNS)), ""]
    for title, cols in SECTIONS.items():
        keep = section_columns(df, cols)
        if keep is None:
            parts += [f"## {title}\n", f"No {title.lower()} figures in this run.\n"]
            continue
        parts += [f"## {title}\n", markdown_table(df, keep), ""]
    parts += generation_markdown(df)
    parts += _pairs_markdown(device_pairs(run))
    assumed = _assumed(df)
    if assumed:
        parts += ["## Assumed by the emulator\n",
                  "Dynamic input dimensions the emulator costed at an assumed value instead of "
                  "the shape the host timed (runs before input shapes were recorded): the "
                  "device figures hold only if the timed shape had that value.\n",
                  *[f"- {md(cid)}: {md(dims)}" for cid, dims in assumed], ""]
    return "\n".join(parts) + "\n"


def generation_markdown(df: pd.DataFrame) -> list[str]:
    """The language-model table (:data:`harness.report.frame.GENERATION`) as Markdown lines;
    nothing when no row of the run is a generative case."""
    from harness.report.frame import GENERATION

    if "load_ms" not in df or not df["load_ms"].notna().any():
        return []
    gen = df[df["load_ms"].notna() | df["status"].ne("ok")]
    gen = gen[gen["workload"].isin(set(df.loc[df["load_ms"].notna(), "workload"]))]
    return ["## Generation\n",
            "Language models: host medians of the raw phase samples (load; prefill = time to "
            "first token of an N-token prompt; decode = one token after it, KV cache sized to "
            "the prompt plus the generated tokens), perplexity on the workload's fixed text; "
            "device figures are the generation emulator's, from the decoder graph.\n",
            markdown_table(gen, present_columns(gen, GENERATION)), ""]


def _pairs_markdown(pairs: list[DevicePair]) -> list[str]:
    """The "Emulator vs device" section (nothing when no cell has both rows)."""
    from tabulate import tabulate

    from harness.report.frame import pair_errors
    from harness.report.markup import md

    if not pairs:
        return []
    parts = ["## Emulator vs device\n", PAIRS_INTRO + "\n"]
    for device, ps in pairs_by_device(pairs).items():
        e = pair_errors(ps)
        rows = [[md(p.cell_id), p.unit or "", f"{p.predicted_ms:.3f}", f"{p.measured_ms:.3f}",
                 f"{p.error_pct:+.1f}"] for p in ps]
        parts += [f"### {md(device)}\n",
                  tabulate(rows, headers=["case", "predicted on", "predicted (ms)",
                                          "measured p50 (ms)", "error %"], tablefmt="pipe",
                           colalign=("left", "left", "right", "right", "right"),
                           disable_numparse=True),
                  f"\nMedian error {e['median_pct']:+.1f}% (median |error| "
                  f"{e['median_abs_pct']:.1f}%, worst {e['worst_abs_pct']:.0f}%) over "
                  f"{len(ps)} case(s); plot `plots/emulator-vs-device-{device}.svg`.\n"]
    return parts


def pairs_footnote(pairs: list[DevicePair]) -> str:
    """The terminal's "Emulator vs device" lines (empty when no cell has both rows)."""
    from harness.report.frame import pair_errors

    out = ""
    for device, ps in pairs_by_device(pairs).items():
        e = pair_errors(ps)
        out += (f"\n\nEmulator vs device on {device}: median error {e['median_pct']:+.1f}% "
                f"(median |error| {e['median_abs_pct']:.1f}%) over {len(ps)} case(s), "
                "predicted vs measured p50:\n"
                + "\n".join(f"  {p.cell_id}: {p.predicted_ms:.3f} vs {p.measured_ms:.3f} ms "
                             f"({p.error_pct:+.1f}%{', predicted on ' + p.unit if p.unit else ''})"
                             for p in ps))
    return out


def _assumed(df: pd.DataFrame) -> list[tuple[str, str]]:
    if "assumed_dims" not in df:
        return []
    return [(r["case_id"], r["assumed_dims"]) for _, r in df.iterrows() if r["assumed_dims"]]


def json_report(run: Run, df: pd.DataFrame, *, unstable_threshold: float = UNSTABLE_SPREAD
                ) -> dict[str, Any]:
    """Header and every machine-readable column of every case (NaN -> null)."""
    records = json.loads(df.to_json(orient="records"))
    return {"kind": "edge-harness-report", "schema_version": 1,
            "run": run_header(run, df, unstable_threshold=unstable_threshold),
            "cases": records}


# The terminal summary: the columns that decide, short headers, in the order they are given
# up when the terminal is too narrow (last first). Everything is in report.md / CSV / JSON.
TERMINAL: dict[str, str] = {
    "workload": "workload", "quant": "quant", "prune": "prune", "device": "device",
    "backend": "backend", "status": "status", "host_p50_ms": "host p50 ms",
    "device_latency_ms": "device ms", "fits": "fits", "size_kb": "size KB",
    "quality": "quality", "quality_delta": "Δ fp32", "device_sustained_p50_ms": "sustained ms",
    "unstable": "unstable",
}
_GIVE_UP = ("unstable", "device_sustained_p50_ms", "quality_delta", "size_kb", "quality")


def terminal_table(df: pd.DataFrame, *, width: int | None = None, wide: bool = False,
                   note: str | None = None) -> str:
    """The summary for a terminal of ``width`` columns (default: this terminal's), then the
    rows that are not ok with their reasons. ``wide`` shows every summary column instead."""
    import shutil

    import pandas as pd

    if df.empty:
        return "no finished cases in this run"
    if wide:
        shown = display_frame(df, {k: v for k, v in present_columns(df, COLUMNS).items()
                                   if k != "reason"})
        with pd.option_context("display.width", 250, "display.max_columns", None,
                               "display.max_colwidth", 60):
            return shown.to_string(index=False) + (f"\n{note}" if note else "") + _reasons(df)
    width = width or shutil.get_terminal_size(fallback=(120, 24)).columns
    cols = present_columns(df, TERMINAL)
    head = []
    for col in ("device", "backend"):   # one value for every row: said once, above the table
        if col in cols and df[col].nunique() == 1:
            head.append(f"{col}: {df[col].iloc[0]}")
            del cols[col]
    hidden = []

    def render() -> str:
        with pd.option_context("display.width", 1000, "display.max_columns", None,
                               "display.max_colwidth", 40):
            return str(display_frame(df, cols, significant=True).to_string(index=False))

    text = render()
    for col in _GIVE_UP:
        if max(len(line) for line in text.splitlines()) <= width:
            break
        if col in cols:
            hidden.append(cols.pop(col))
            text = render()
    out = ("; ".join(head) + "\n" if head else "") + text
    if hidden:
        import textwrap

        out += "\n" + textwrap.fill(
            f"({len(hidden)} column(s) left out to fit {width} columns: {', '.join(hidden)}; "
            "--wide, report.md or report.csv have them all)", width)
    if note:
        import textwrap

        out += "\n" + textwrap.fill(note, width)
    return out + _reasons(df, width=width)


def write_report(run_dir: Path, *, html: bool = True, plots: bool = True,
                 unstable_threshold: float = UNSTABLE_SPREAD, wide: bool = False,
                 width: int | None = None) -> str:
    """Write report.md/.csv/.json (and plots/, report.html) into the run; return the table."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    df = summary_frame(run, unstable_threshold=unstable_threshold)
    df.to_csv(run_dir / "report.csv", index=False)
    (run_dir / "report.md").write_text(
        markdown_report(run, df, unstable_threshold=unstable_threshold))
    (run_dir / "report.json").write_text(json.dumps(
        json_report(run, df, unstable_threshold=unstable_threshold), indent=1) + "\n")
    figures: list[Any] = []
    if plots or html:
        from harness.report.plots import write_plots

        figures = write_plots(run, df, run_dir / "plots")
    if html:
        from harness.report.html import write_html

        write_html(run, df, figures, run_dir / "report.html",
                   unstable_threshold=unstable_threshold)
    from harness.report.frame import calibration_note

    return (terminal_table(df, wide=wide, width=width, note=calibration_note(run))
            + pairs_footnote(device_pairs(run)))


def _reasons(df: pd.DataFrame, *, width: int | None = None) -> str:
    import textwrap

    def wrap(text: str) -> str:
        return text if width is None else textwrap.fill(
            text, width, initial_indent="  ", subsequent_indent="      ",
            break_on_hyphens=False)

    bad = df[df["status"] != "ok"]
    out = ""
    if not bad.empty:
        lines = [wrap(f"{r['case_id']}: {r['status']}: {r['reason']}") if width
                 else f"  {r['case_id']}: {r['status']}: {r['reason']}"
                 for _, r in bad.iterrows()]
        out += "\n\nNot ok:\n" + "\n".join(lines)
    def title(text: str) -> str:
        return text if width is None else textwrap.fill(text, width)

    flagged = df[df["unstable"] == True]  # noqa: E712
    if not flagged.empty:
        out += ("\n\n" + title("Unstable (relative spread of the warm samples above the "
                                "threshold; rerun on a quieter machine or with more "
                                "iterations):") + "\n" + "\n".join(
                    f"  {r['case_id']}: (p90-p10)/p50 = {r['host_spread_pct']:.0f}%"
                    for _, r in flagged.iterrows()))
    assumed = _assumed(df)
    if assumed:
        out += ("\n\n" + title("Assumed by the emulator (dynamic input dimensions costed at "
                                "an assumed value instead of the timed shape; the device "
                                "figures hold only if the timed shape had that value):") + "\n"
                + "\n".join(f"  {cid}: {dims}" for cid, dims in assumed))
    return out
