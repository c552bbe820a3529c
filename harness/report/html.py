"""One self-contained HTML file per run: tables (sortable) and plots embedded as data URIs.

Nothing is fetched when the file is opened: no scripts, fonts or styles from elsewhere, so it
works offline, as a CI artifact and as an e-mail attachment.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.stats import UNSTABLE_SPREAD
from harness.results import Run

if TYPE_CHECKING:
    import pandas as pd

    from harness.report.frame import DevicePair
    from harness.report.plots import Plot

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px}td{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.bad td{background:#fde8e8}tr.unstable td.flag{background:#fff3cd}
figure{margin:1em 0}figcaption{font-size:13px;color:#555}img{max-width:100%}
.meta{font-size:14px;color:#444}code{background:#f3f3f3;padding:0 3px}
.scroll{overflow:auto;max-height:75vh;max-width:100%;border:1px solid #eee}
.scroll table{margin:0}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;background:#fff}
th:first-child{z-index:2;background:#f3f3f3}tr.bad td:first-child{background:#fde8e8}
details>summary{cursor:pointer}details>summary h2{display:inline-block;border:0}
nav.toc{font-size:14px;background:#fafafa;border:1px solid #eee;padding:.4em 1em;
display:inline-block}nav.toc ul{margin:.2em 0;padding-left:1.2em}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
.groups{font-size:13px}.groups label{margin-right:.8em}
table.hide-latency .g-latency,table.hide-memory .g-memory,table.hide-power .g-power,
table.hide-quality .g-quality{display:none}
"""

# Click a header to sort by it (numbers numerically, blanks last); click again to reverse.
# Untick a column group above a table to hide its columns.
SCRIPT = """
document.querySelectorAll('.groups input').forEach(function(box){
  box.addEventListener('change',function(){
    document.getElementById(box.dataset.table).classList.toggle(
      'hide-'+box.dataset.group,!box.checked);
  });
});
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      function key(r){var s=r.cells[i].textContent.trim().replace(/,/g,'');
        var n=parseFloat(s);return s===''?null:(isNaN(n)||!/^[-+]?[0-9.]/.test(s)?s:n)}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(x===null)return 1;if(y===null)return -1;
        var c=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==='number'?-1:1);
        return asc?c:-c});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
"""


def _groups() -> dict[str, str]:
    """Column -> the section (latency, memory, power, quality) it belongs to: the summary
    table's column groups, which the reader can hide."""
    from harness.report.frame import _CASE, SECTIONS

    out: dict[str, str] = {}
    for title, cols in SECTIONS.items():
        for col in cols:
            if col not in _CASE and col != "status":
                out.setdefault(col, title.lower())
    return out


def _group_toggles(columns: dict[str, str], table_id: str) -> str:
    groups = sorted({g for c in columns if (g := _groups().get(c))})
    if not groups:
        return ""
    boxes = "".join(
        f'<label><input type="checkbox" checked data-table="{table_id}" data-group="{g}"> '
        f"{html.escape(g)}</label> " for g in groups)
    return f'<p class="groups">Columns: {boxes}</p>'


def _anchor(case_id: str) -> str:
    import hashlib

    return "time-" + hashlib.sha256(case_id.encode()).hexdigest()[:12]


def _table(df: pd.DataFrame, columns: dict[str, str], table_id: str,
           linked: frozenset[str] = frozenset()) -> str:
    from harness.report.frame import TEXT_COLUMNS, display_frame

    shown = display_frame(df, columns)
    groups = _groups()
    klass = {c: (f' class="g-{groups[c]}"' if c in groups else "") for c in columns}
    head = "".join(f"<th{klass[c]}>{html.escape(str(h))}</th>"
                   for c, h in zip(columns, shown.columns, strict=True))
    body = []
    for (_, raw), (_, row) in zip(df.iterrows(), shown.iterrows(), strict=True):
        cls = []
        if raw.get("status") != "ok":
            cls.append("bad")
        if raw.get("unstable") is True:
            cls.append("unstable")
        cells = []
        for col, v in zip(columns, row, strict=True):
            kind = "flag" if col == "unstable" else ("" if col in TEXT_COLUMNS else "num")
            kind += f" g-{groups[col]}" if col in groups else ""
            text = html.escape(str(v))
            if col == "device_latency_ms" and text and raw.get("case_id") in linked:
                # the prediction links to where its device time goes (per-node breakdown)
                text = f'<a href="#{_anchor(str(raw["case_id"]))}">{text}</a>'
            cells.append(f'<td class="{kind}">{text}</td>')
        body.append(f'<tr class="{" ".join(cls)}">{"".join(cells)}</tr>')
    # scrolls inside its box with the case column pinned: wide tables fit a laptop screen
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    return (f'<figure id="plot-{html.escape(plot.name)}"><img alt="{html.escape(plot.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(plot.title)} '
            f'(<code>plots/{html.escape(plot.svg.name)}</code> for a vector copy)</figcaption>'
            "</figure>")


def render_html(run: Run, df: pd.DataFrame, plots: list[Plot], *,
                unstable_threshold: float = UNSTABLE_SPREAD) -> str:
    """The report as one HTML document (string)."""
    from harness.report.frame import (
        COLUMNS,
        SECTIONS,
        banded,
        calibration_band,
        present_columns,
        run_header,
        section_columns,
    )

    h: dict[str, Any] = run_header(run, df, unstable_threshold=unstable_threshold)
    esc = html.escape
    status = ", ".join(f"{n} {s}" for s, n in h["status_counts"].items()) or "no cases"
    git = h["git"] or {}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Run {esc(str(h['run_id']))}</title><style>{STYLE}</style></head><body>",
        f"<h1>Run {esc(str(h['run_id']))}</h1>",
        '<ul class="meta">',
        f"<li>suite <code>{esc(str(h['suite']))}</code>; devices: "
        f"{esc(', '.join(h['devices']) or '-')}; backends: {esc(', '.join(h['backends']))}</li>",
        f"<li>host: {esc(h['host'])}; threads per case: {esc(str(h['threads']))}; created "
        f"{esc(str(h['created_at']))}; git {esc(str(git.get('sha'))[:12])}"
        f"{' (dirty)' if git.get('dirty') else ''}</li>",
        f"<li>cases: {esc(status)}; unstable rows: {h['unstable_rows']} (relative spread "
        f"(p90-p10)/p50 of the warm samples above {h['unstable_threshold_pct']:.0f}%)</li>",
        *([f"<li>{esc(h['calibration'])}</li>"] if h.get("calibration") else []),
        "</ul>",
        "<p>Host latency is measured on the host (warm runs, batch 1); device latency, memory "
        "and power are the emulator's predictions for the device profile. Click a column "
        "header to sort; click a section's title to fold it.</p>",
    ]
    from harness.report.frame import (
        GENERATION_INTRO,
        device_pairs,
        generation_notes,
        generation_rows,
    )

    pairs = device_pairs(run)
    gen = generation_rows(df)
    sections = [("summary", "Summary")] + [(t.lower(), t) for t in SECTIONS] + [
        *([("generation", "Generation")] if gen is not None else []),
        *([("emulator-vs-device", "Emulator vs device")] if pairs else []),
        ("time", "Where the device time goes"), ("plots", "Plots")]
    parts.append('<nav class="toc"><b>Contents</b><ul>' + "".join(
        f'<li><a href="#{k}">{esc(t)}</a></li>' for k, t in sections) + "</ul></nav>")

    def section(key: str, title: str, body: str) -> str:
        return (f'<details open id="{key}"><summary><h2>{esc(title)}</h2></summary>{body}'
                "</details>")

    from harness.report.frame import time_shares

    linked = frozenset(t.case_id for t in time_shares(run))
    band = calibration_band(run)
    summary_cols = banded(present_columns(df, COLUMNS), band)
    parts.append(section("summary", "Summary",
                         _group_toggles(summary_cols, "table-summary")
                         + _table(df, summary_cols, "table-summary", linked)))
    for title, cols in SECTIONS.items():
        keep = section_columns(df, cols)
        parts.append(section(title.lower(), title,
                             _table(df, banded(keep, band), f"table-{title.lower()}", linked)
                             if keep is not None else
                             f"<p>No {esc(title.lower())} figures in this run.</p>"))
    if gen is not None:
        from harness.report.frame import GENERATION

        parts.append(section("generation", "Generation",
                             "<p>" + esc(" ".join([GENERATION_INTRO, *generation_notes(gen)]))
                             + "</p>"
                             + _table(gen, present_columns(gen, GENERATION),
                                      "table-generation")))
    if pairs:
        parts.append(section("emulator-vs-device", "Emulator vs device", _pairs_html(pairs)))
    parts.append(section("time", "Where the device time goes", _time_table(run)))
    grid = "".join(_img(p) for p in plots) or "<p>No plots (no finished cases).</p>"
    parts.append(section("plots", "Plots", f'<div class="plots">{grid}</div>'))
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _pairs_html(pairs: list[DevicePair]) -> str:
    """Per device: predicted vs measured latency per case, the error and its median."""
    from harness.report.frame import PAIRS_INTRO, pair_errors, pair_extras, pairs_by_device
    from harness.report.term import sig

    esc = html.escape
    out = [f"<p>{esc(PAIRS_INTRO.replace('`', ''))}</p>"]
    for device, ps in pairs_by_device(pairs).items():
        e = pair_errors(ps)
        extras = pair_extras(ps)
        rows = "".join(f"<tr><td>{esc(p.cell_id)}</td><td>{esc(p.unit or '')}</td>"
                       f"<td class=\"num\">{p.predicted_ms:.3f}"
                       f"</td><td class=\"num\">{p.measured_ms:.3f}</td>"
                       f'<td class="num">{p.error_pct:+.1f}</td>'
                       + "".join(f'<td class="num">{esc(sig(getattr(p, attr)) or "-")}</td>'
                                 for _, pa, ma in extras for attr in (pa, ma))
                       + "</tr>" for p in ps)
        heads = "".join(f"<th>{side} {esc(head)}</th>" for head, _, _ in extras
                        for side in ("predicted", "measured"))
        out.append(f"<h3>{esc(device)}</h3>"
                   f'<div class="scroll"><table class="sortable" '
                   f'id="table-emulator-vs-device-{esc(device)}"><thead><tr><th>case</th>'
                   "<th>predicted on</th><th>predicted (ms)</th><th>measured p50 (ms)</th>"
                   f"<th>error %</th>{heads}</tr>"
                   f"</thead><tbody>{rows}</tbody></table></div>"
                   f"<p>Median error {e['median_pct']:+.1f}% (median |error| "
                   f"{e['median_abs_pct']:.1f}%, worst {e['worst_abs_pct']:.0f}%) over "
                   f"{len(ps)} case(s).</p>")
    return "".join(out)


def _time_table(run: Run) -> str:
    """Per case: the predicted device time by op type and by compute unit, and fallbacks
    (from the emulator's per-node breakdown files)."""
    from harness.report.frame import time_shares

    shares = time_shares(run)
    if not shares:
        return "<p>No per-node breakdown in this run.</p>"
    rows = []
    for t in shares:
        ops = ", ".join(f"{op} {100 * v:.0f}%" for op, v in t.by_op)
        units = ", ".join(f"{u} {100 * v:.0f}%" for u, v in t.by_unit)
        file = html.escape(t.breakdown_file or "")
        name = html.escape(t.case_id)
        cell = f'<a href="{file}">{name}</a>' if file else name
        rows.append(f'<tr id="{_anchor(t.case_id)}"><td>{cell}</td>'
                    f'<td class="num">{t.total_ms:.4g}</td><td>{html.escape(units)}</td>'
                    f"<td>{html.escape(ops)}</td>"
                    f'<td class="num">{t.fallbacks} of {t.nodes}</td></tr>')
    return ('<div class="scroll"><table class="sortable" id="table-time"><thead><tr>'
            "<th>case</th><th>device (ms)</th><th>by unit</th><th>top op types</th>"
            "<th>fallback nodes</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div>")


def write_html(run: Run, df: pd.DataFrame, plots: list[Plot], path: Path, *,
               unstable_threshold: float = UNSTABLE_SPREAD) -> Path:
    """Write :func:`render_html` to ``path``."""
    path.write_text(render_html(run, df, plots, unstable_threshold=unstable_threshold))
    return path
