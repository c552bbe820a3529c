"""Run tables: report.md, report.csv, report.json and the terminal summary of a run.

The data (one row per case, the column catalogs) comes from :mod:`harness.report.frame`;
:func:`write_report` writes the files and, unless told not to, the plots and the
self-contained ``report.html``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
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
from harness.report.term import Column, Heading, fixed, sig, table, terminal_width
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
    from harness.report.frame import banded, calibration_band
    from harness.report.markup import md

    band = calibration_band(run)
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
             "## Summary\n", markdown_table(df, banded(present_columns(df, COLUMNS), band)), ""]
    for title, cols in SECTIONS.items():
        keep = section_columns(df, cols)
        if keep is None:
            parts += [f"## {title}\n", f"No {title.lower()} figures in this run.\n"]
            continue
        parts += [f"## {title}\n", markdown_table(df, banded(keep, band)), ""]
    parts += generation_markdown(df)
    parts += _pairs_markdown(device_pairs(run))
    assumed = _assumed(df)
    if assumed:
        parts += ["## Assumed by the emulator\n",
                  "Dynamic input dimensions the emulator costed at an assumed value instead of "
                  "the shape the host timed (runs before input shapes were recorded): the "
                  "device figures hold only if the timed shape had that value.\n",
                  *[f"- {md(cid)}: {md(dims)}" for cid, dims in assumed], ""]
    unpredicted = _unpredicted(df)
    if unpredicted:
        parts += ["## No device prediction\n",
                  "Cases whose backend predicts but whose artifact the emulator could not "
                  "cost: their device columns are empty, their host figures stand.\n",
                  *[f"- {md(cid)}: {md(why)}" for cid, why in unpredicted], ""]
    return "\n".join(parts) + "\n"


def generation_markdown(df: pd.DataFrame) -> list[str]:
    """The language-model table (:data:`harness.report.frame.GENERATION`) as Markdown lines;
    nothing when no row of the run is a generative case."""
    from harness.report.frame import (
        GENERATION,
        GENERATION_INTRO,
        generation_notes,
        generation_rows,
    )

    gen = generation_rows(df)
    if gen is None:
        return []
    notes = " ".join(generation_notes(gen))
    return ["## Generation\n", GENERATION_INTRO + (f" {notes}" if notes else "") + "\n",
            markdown_table(gen, present_columns(gen, GENERATION)), ""]


def _pairs_markdown(pairs: list[DevicePair]) -> list[str]:
    """The "Emulator vs device" section (nothing when no cell has both rows)."""
    from tabulate import tabulate

    from harness.report.frame import pair_errors, pair_extras
    from harness.report.markup import md

    if not pairs:
        return []
    parts = ["## Emulator vs device\n", PAIRS_INTRO + "\n"]
    for device, ps in pairs_by_device(pairs).items():
        e = pair_errors(ps)
        extras = pair_extras(ps)
        rows = [[md(p.cell_id), p.unit or "", f"{p.predicted_ms:.3f}", f"{p.measured_ms:.3f}",
                 f"{p.error_pct:+.1f}",
                 *(sig(getattr(p, attr)) or "-" for _, pa, ma in extras for attr in (pa, ma))]
                for p in ps]
        heads = [h for head, _, _ in extras
                 for h in (f"predicted {head}", f"measured {head}")]
        parts += [f"### {md(device)}\n",
                  tabulate(rows, headers=["case", "predicted on", "predicted (ms)",
                                          "measured p50 (ms)", "error %", *heads],
                           tablefmt="pipe",
                           colalign=("left", "left", *["right"] * (3 + len(heads))),
                           disable_numparse=True),
                  f"\nMedian error {e['median_pct']:+.1f}% (median |error| "
                  f"{e['median_abs_pct']:.1f}%, worst {e['worst_abs_pct']:.0f}%) over "
                  f"{len(ps)} case(s); plot `plots/emulator-vs-device-{device}.svg`.\n"]
    return parts


def pairs_footnote(pairs: list[DevicePair], *, width: int | None = None) -> str:
    """The terminal's "Emulator vs device" tables (empty when no cell has both rows)."""
    from harness.report.frame import pair_errors, pair_extras

    out = ""
    for device, ps in pairs_by_device(pairs).items():
        e = pair_errors(ps)
        extras = pair_extras(ps)
        cols = [Column("case", wrap=True, priority=1), Column("predicted on", priority=2),
                Column("predicted (ms)", "right"), Column("measured p50 (ms)", "right"),
                Column("error %", "right"),
                *(Column(f"{side} {head}", "right", priority=3)
                  for head, _, _ in extras for side in ("predicted", "measured"))]
        out += (f"\n\nEmulator vs device on {device}: median error {e['median_pct']:+.1f}% "
                f"(median |error| {e['median_abs_pct']:.1f}%) over {len(ps)} case(s)\n"
                + table(cols, [[p.cell_id, p.unit, sig(p.predicted_ms), sig(p.measured_ms),
                                f"{p.error_pct:+.1f}",
                                *(sig(getattr(p, attr)) for _, pa, ma in extras
                                  for attr in (pa, ma))] for p in ps], width=width))
    return out


def _unpredicted(df: pd.DataFrame) -> list[tuple[str, str]]:
    if "prediction_error" not in df:
        return []
    return [(r["case_id"], r["prediction_error"]) for _, r in df.iterrows()
            if r["prediction_error"]]


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


# The terminal summary: the columns that decide. Priority says which go first when the terminal
# is too narrow (the highest first): the extras, then the case id wraps (to 24 characters at
# least, two lines for most ids), then Δ, size and quality go. Everything is in report.md /
# CSV / JSON and --wide.
TERMINAL: dict[str, Column] = {
    "case": Column("case", wrap=True, priority=4, min_width=24),
    "status": Column("status"),
    "host_p50_ms": Column("host p50 (ms)", "right"),
    "device_latency_ms": Column("device (ms)", "right"),
    "size_kb": Column("size (KB)", "right", priority=2),
    "fits": Column("fits"),
    "quality": Column("quality", "right", priority=1),
    "quality_delta": Column("Δ fp32", "right", priority=3),
    "device_sustained_p50_ms": Column("sustained (ms)", "right", priority=5),
    "unstable": Column("unstable", priority=6),
}
_IDENTITY = ("workload", "quant", "prune", "device", "backend")
# Shown with fixed decimals in the terminal: quality figures, whose small differences matter,
# and shares and counts; every other number (ms, KB, MB, mJ, W) has three significant digits.
_FIXED = {"quality", "quality_delta", "fidelity_cosine", "fidelity_top1_agreement",
          "fidelity_sqnr_db", "host_spread_pct", "sparsity_pct", "cap_used_pct", "battery_wh",
          "inferences_per_pct_battery", "n_examples"}


def terminal_cell(col: str, value: Any) -> str | None:
    """One summary figure as the terminal shows it (None: missing, shown as ``-``)."""
    import math

    from harness.report.frame import DIGITS

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "" if col == "unstable" else None   # not flagged is not a missing figure
    if col == "fits":
        return "yes" if value else "NO"
    if col == "unstable":
        return "UNSTABLE" if value is True else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) or None
    if col in _FIXED:
        digits = DIGITS.get(col, 4)
        return (f"{value:,.0f}" if digits == 0
                else fixed(value, digits, sign=col == "quality_delta"))
    return sig(value)


def check_columns(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` (report.csv columns, for ``--columns``) if the summary can show them all; an
    InputError naming the known ones otherwise (before a sweep starts, not after it)."""
    from harness.errors import InputError, unknown_name

    if not names:
        raise InputError("expected one or more column names")
    known = _known_columns()
    for name in names:
        if name not in known:
            raise unknown_name("column", name, known)
    return tuple(names)


def _known_columns() -> dict[str, str]:
    """Every figure the summary can show, by report.csv name, with its header."""
    known = {**{k: h for cols in SECTIONS.values() for k, h in cols.items()}, **COLUMNS}
    return {k: h for k, h in known.items() if k not in _IDENTITY}


def terminal_columns(df: pd.DataFrame, *, wide: bool = False,
                     columns: Sequence[str] | None = None) -> dict[str, Column]:
    """The summary's columns: the deciding ones (:data:`TERMINAL`) that have a value, every
    summary column with ``wide``, or the case, device, status and ``columns`` as asked."""
    if columns is not None:
        known = _known_columns()
        picked = {"status": known["status"], **{c: known[c] for c in check_columns(columns)}}
    elif wide:
        picked = {k: h for k, h in present_columns(df, COLUMNS).items()
                  if k not in _IDENTITY and k != "reason"}
    else:
        present = present_columns(df, {k: c.header for k, c in TERMINAL.items()})
        return {k: c for k, c in TERMINAL.items() if k in present or k in ("case", "status")}
    out = {"case": TERMINAL["case"]}
    for k, head in picked.items():
        # a reason is prose: it wraps rather than widen the table
        col = TERMINAL.get(k) or Column(head, "left" if k in TEXT_COLUMNS else "right",
                                        wrap=k == "reason", min_width=24)
        # a column asked for by name is not hidden to fit; --wide shows everything anyway
        out[k] = dataclasses.replace(col, priority=0) if columns is not None else col
    return out


def _measured_on(df: pd.DataFrame) -> str:
    """Where the table's rows were timed: ``host``, ``phone`` (every backend measures on a
    device) or ``measured`` (both kinds)."""
    from harness.backends.base import capabilities_of

    kinds = set()
    for name in df["backend"].dropna().unique():
        try:
            kinds.add(capabilities_of(str(name)).measures_on)
        except Exception:  # a backend this install does not have: its rows say no more
            kinds.add("host")
    if kinds == {"device"}:
        return "phone"
    return "measured" if "device" in kinds else "host"


def terminal_table(df: pd.DataFrame, *, width: int | None = None, wide: bool = False,
                   columns: Sequence[str] | None = None, note: str | None = None,
                   band: str | None = None) -> str:
    """The summary for a terminal of ``width`` columns (default: this terminal's), then the
    rows that are not ok with their reasons. ``wide`` shows every summary column instead;
    ``columns`` (report.csv names) picks the figures shown; ``band`` (the calibration's
    error, "±21% median") goes in the device latency header."""
    import textwrap

    if df.empty:
        return "no finished cases in this run"
    width = terminal_width(width)
    cols = terminal_columns(df, wide=wide, columns=columns)
    if band and "device_latency_ms" in cols:
        cols["device_latency_ms"] = dataclasses.replace(
            cols["device_latency_ms"], header=f"{cols['device_latency_ms'].header} {band}")
    where = _measured_on(df)
    if where != "host" and "host_p50_ms" in cols:
        # a phone's runner timed these rows (adb), not this host
        cols["host_p50_ms"] = dataclasses.replace(cols["host_p50_ms"],
                                                  header=f"{where} p50 (ms)")
    # The device and backend name groups of rows (summary_frame sorts by them): said once
    # above the table, or on a line above each group, rather than on every row.
    for col in ("device", "backend"):
        cols.pop(col, None)
    group = [c for c in ("device", "backend") if df[c].nunique(dropna=False) > 1]
    # (one backend is not named: every run before backends existed had one)
    head = (f"device: {df['device'].iloc[0]}\n"
            if "device" not in group and df["device"].iloc[0] else "")
    rows: list[list[str | None] | Heading] = []
    last = None
    for _, r in df.iterrows():
        key = tuple(r[c] for c in group)
        if group and key != last:
            rows.append(Heading(", ".join(f"{c}: {r[c] or '(none)'}" for c in group)))
            last = key
        rows.append([f"{r['workload']}/{r['quant']}/prune-{r['prune']}" if k == "case"
                     else terminal_cell(k, r.get(k)) for k in cols])
    text = table(list(cols.values()), rows, width=width, wide=wide,
                 hint="--wide or --columns shows them")
    out = head + text
    if note:
        out += "\n" + textwrap.fill(note, width)
    return out + _reasons(df, width=width)


def write_report(run_dir: Path, *, html: bool = True, plots: bool = True,
                 unstable_threshold: float = UNSTABLE_SPREAD, wide: bool = False,
                 columns: Sequence[str] | None = None, width: int | None = None) -> str:
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
    from harness.report.frame import calibration_band, calibration_note

    return (terminal_table(df, wide=wide, columns=columns, width=width,
                           note=calibration_note(run), band=calibration_band(run))
            + pairs_footnote(device_pairs(run), width=width))


def _reasons(df: pd.DataFrame, *, width: int) -> str:
    """The lines under the summary: why rows are not ok, unstable rows, assumed shapes."""
    import textwrap

    def title(text: str) -> str:
        return textwrap.fill(text, width)

    bad = df[df["status"] != "ok"]
    out = ""
    if not bad.empty:
        out += "\n\nNot ok:\n" + "\n".join(
            textwrap.fill(f"{r['case_id']}: {r['status']}: {r['reason']}", width,
                          initial_indent="  ", subsequent_indent="      ",
                          break_on_hyphens=False) for _, r in bad.iterrows())
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
    # the rows not ok are listed above with their reason already
    unpredicted = _unpredicted(df[df["status"] == "ok"])
    if unpredicted:
        out += ("\n\n" + title("No device prediction (host figures stand):") + "\n"
                + "\n".join(textwrap.fill(f"{cid}: {why}", width, initial_indent="  ",
                                           subsequent_indent="      ",
                                           break_on_hyphens=False)
                             for cid, why in unpredicted))
    return out
