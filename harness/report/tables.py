"""Run tables: statistics are computed here, from the raw samples in the rows.

:func:`summary_frame` turns a run into one machine-readable row per case (every column the
report knows, with the unit in its name); :data:`SECTIONS` picks the columns of each table
people read (latency, memory, power, quality) and gives them headers with units.
:func:`write_report` writes ``report.md``, ``report.csv``, ``report.json`` and, unless told not
to, the plots and the self-contained ``report.html``.

Fields added by later issues (device traces, power, fidelity, battery) are shown when a row has
them and left blank when it does not.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.report.stats import UNSTABLE_SPREAD, sample_stats
from harness.results import Run, load_run

if TYPE_CHECKING:
    import pandas as pd

# column -> header shown to people (units in every header): the compact summary table; columns
# without a value in any row (e.g. energy before the run has power figures) are left out
COLUMNS: dict[str, str] = {
    "workload": "workload",
    "quant": "quant",
    "prune": "prune",
    "device": "device",
    "status": "status",
    "host_p50_ms": "host p50 (ms)",
    "host_p90_ms": "host p90 (ms)",
    "unstable": "unstable",
    "cold_start_ms": "cold start (ms)",
    "device_latency_ms": "device pred. (ms)",
    "device_sustained_p50_ms": "device sustained (ms)",
    "energy_mj": "energy (mJ)",
    "size_kb": "size (KB)",
    "sparsity_pct": "sparsity %",
    "host_peak_mb": "host peak (MB)",
    "device_footprint_mb": "device footprint (MB)",
    "fits": "fits",
    "metric": "metric",
    "quality": "quality",
    "quality_delta": "Δ vs fp32",
    "fidelity_cosine": "cosine vs fp32",
    "fidelity_top1_agreement": "top-1 agree",
    "fidelity_sqnr_db": "SQNR (dB)",
    "reason": "reason",
}

_CASE = {"workload": "workload", "quant": "quant", "prune": "prune", "device": "device"}

# title -> (column -> header); the tables of report.md / report.html
SECTIONS: dict[str, dict[str, str]] = {
    "Latency": {**_CASE, "status": "status",
                "host_p50_ms": "host p50 (ms)", "host_p90_ms": "host p90 (ms)",
                "host_p99_ms": "host p99 (ms)", "host_spread_pct": "spread (p90-p10)/p50 %",
                "unstable": "unstable", "cold_start_ms": "cold start (ms)",
                "device_latency_ms": "device pred. (ms)",
                "device_burst_p50_ms": "device burst p50 (ms)",
                "device_burst_p90_ms": "device burst p90 (ms)",
                "device_sustained_p50_ms": "device sustained p50 (ms)",
                "device_sustained_p90_ms": "device sustained p90 (ms)"},
    "Memory": {**_CASE, "size_kb": "size (KB)", "sparsity_pct": "sparsity %",
               "host_peak_mb": "host peak (MB)", "device_footprint_mb": "device footprint (MB)",
               "app_cap_mb": "app cap (MB)", "cap_used_pct": "of cap %", "fits": "fits"},
    "Power": {**_CASE, "avg_power_w": "avg power (W)", "energy_mj": "energy (mJ/inference)",
              "battery_wh": "battery (Wh)",
              "inferences_per_pct_battery": "inferences per 1% battery"},
    "Quality": {**_CASE, "metric": "metric", "quality": "quality",
                "quality_delta": "Δ vs fp32", "n_examples": "examples",
                "fidelity_cosine": "cosine vs fp32", "fidelity_top1_agreement":
                "top-1 agreement vs fp32", "fidelity_sqnr_db": "SQNR vs fp32 (dB)"},
}

# column -> decimals when shown to people
DIGITS: dict[str, int] = {
    "host_p50_ms": 3, "host_p90_ms": 3, "host_p99_ms": 3, "host_spread_pct": 0,
    "cold_start_ms": 1, "device_latency_ms": 3, "device_burst_p50_ms": 3,
    "device_burst_p90_ms": 3, "device_sustained_p50_ms": 3, "device_sustained_p90_ms": 3,
    "size_kb": 1, "sparsity_pct": 1, "host_peak_mb": 1, "device_footprint_mb": 2,
    "app_cap_mb": 0, "cap_used_pct": 1, "avg_power_w": 3, "energy_mj": 4, "battery_wh": 1,
    "inferences_per_pct_battery": 0, "n_examples": 0, "quality": 4, "quality_delta": 4,
    "fidelity_cosine": 5, "fidelity_top1_agreement": 4, "fidelity_sqnr_db": 1,
}
TEXT_COLUMNS = {"workload", "quant", "prune", "device", "status", "fits", "metric", "reason",
                "unstable"}

# Share of a sustained trace's points that count as "burst" (the start, before heat builds up)
# and as "sustained" (the end, closest to the thermal steady state: the same last tenth the
# emulator's own sustained_latency_ms takes the median of).
BURST_SHARE = 0.10
SUSTAINED_SHARE = 0.10
J_PER_WH = 3600.0


def _ms(ns: float) -> float:
    return ns / 1e6


@functools.lru_cache(maxsize=32)
def _profile_battery_wh(device: str) -> float | None:
    """The profile's battery capacity, when the profile has one (issue 3 adds it)."""
    try:
        from harness.profiles import load_profile

        fig = getattr(load_profile(device).power, "battery_wh", None)
    except Exception:  # an unknown/removed profile must not break reading an old run
        return None
    value = getattr(fig, "value", fig)
    return float(value) if isinstance(value, int | float) else None


def trace_split(trace: dict[str, Any]) -> dict[str, float | None]:
    """Burst and sustained p50/p90 (ms) from a device trace's per-inference latencies."""
    lat = np.asarray(trace.get("latency_ms") or [], dtype=np.float64)
    out: dict[str, float | None] = {k: None for k in (
        "device_burst_p50_ms", "device_burst_p90_ms", "device_sustained_p50_ms",
        "device_sustained_p90_ms")}
    if lat.size == 0:
        return out
    burst = lat[:max(1, int(BURST_SHARE * lat.size))]
    sustained = lat[-max(1, int(SUSTAINED_SHARE * lat.size)):]
    out["device_burst_p50_ms"] = float(np.percentile(burst, 50))
    out["device_burst_p90_ms"] = float(np.percentile(burst, 90))
    out["device_sustained_p50_ms"] = float(np.percentile(sustained, 50))
    out["device_sustained_p90_ms"] = float(np.percentile(sustained, 90))
    return out


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def row_stats(row: dict[str, Any], *, unstable_threshold: float = UNSTABLE_SPREAD
              ) -> dict[str, Any]:
    """One table row (machine-readable names, units in the names) from one result row."""
    host = row.get("host") or {}
    st = sample_stats(host.get("warm_latency_ns") or [])
    cold = host.get("cold_start") or {}
    pred = row.get("device_prediction") or {}
    art = row.get("artifact") or {}
    quality = row.get("quality") or {}
    fidelity = row.get("fidelity") or {}
    trace = row.get("device_trace") or {}
    split = trace_split(trace) if trace else {}
    # without a trace the only burst figure is the single prediction (device_latency_ms)
    burst_p50 = split.get("device_burst_p50_ms")
    sustained_p50 = split.get("device_sustained_p50_ms") or _num(
        pred.get("sustained_latency_ms"))
    footprint = _num(pred.get("footprint_mb"))
    cap = _num(pred.get("app_cap_mb"))
    energy_mj = _num(pred.get("energy_mj"))
    battery_wh = _num(pred.get("battery_wh")) or (
        _profile_battery_wh(row["device"]) if energy_mj else None)
    per_pct = (0.01 * battery_wh * J_PER_WH * 1e3 / energy_mj
               if battery_wh and energy_mj else None)
    return {
        "case_id": row["case_id"],
        "workload": row["workload"],
        "quant": row["quant"],
        "prune": str(row["prune"]),
        "device": row["device"],
        "status": row["status"],
        "host_p50_ms": st.p50_ms if st else None,
        "host_p90_ms": st.p90_ms if st else None,
        "host_p99_ms": st.p99_ms if st else None,
        "host_mean_ms": st.mean_ms if st else None,
        "host_stdev_ms": st.stdev_ms if st else None,
        "host_spread_pct": 100 * st.spread if st else None,
        "unstable": st.unstable(threshold=unstable_threshold) if st else None,
        "host_n": st.n if st else 0,
        "cold_start_ms": _ms(cold["session_create_ns"] + cold["first_inference_ns"])
        if cold else None,
        "device_latency_ms": _num(pred.get("latency_ms")),
        "device_burst_p50_ms": burst_p50,
        "device_burst_p90_ms": split.get("device_burst_p90_ms"),
        "device_sustained_p50_ms": sustained_p50,
        "device_sustained_p90_ms": split.get("device_sustained_p90_ms"),
        "size_kb": art["size_bytes"] / 1024.0 if art.get("size_bytes") is not None else None,
        "sparsity_pct": 100.0 * art["sparsity"] if art.get("sparsity") is not None else None,
        "host_peak_mb": _num(host.get("peak_rss_mb")),
        "device_footprint_mb": footprint,
        "app_cap_mb": cap,
        "cap_used_pct": 100 * footprint / cap if footprint is not None and cap else None,
        "fits": pred.get("fits"),
        "avg_power_w": _num(pred.get("avg_power_w")),
        "energy_mj": energy_mj,
        "battery_wh": battery_wh,
        "inferences_per_pct_battery": per_pct,
        "metric": quality.get("metric"),
        "quality": _num(quality.get("value")),
        "higher_is_better": quality.get("higher_is_better"),
        "n_examples": quality.get("n_examples"),
        "fidelity_cosine": _num(fidelity.get("cosine")),
        "fidelity_top1_agreement": _num(fidelity.get("top1_agreement")),
        # outputs bit-identical to fp32: infinite SQNR (JSON stores null and a flag)
        "fidelity_sqnr_db": float("inf") if fidelity.get("identical")
        else _num(fidelity.get("sqnr_db")),
        "has_trace": bool(trace.get("latency_ms")),
        "reason": row.get("reason") or "",
    }


def summary_frame(run: Run, *, unstable_threshold: float = UNSTABLE_SPREAD) -> pd.DataFrame:
    """All cases of a run with statistics, plus quality delta vs the fp32 dense baseline."""
    import pandas as pd

    df = pd.DataFrame([row_stats(r, unstable_threshold=unstable_threshold) for r in run.rows])
    if df.empty:
        return pd.DataFrame(columns=["case_id", *dict.fromkeys(
            c for cols in (COLUMNS, *SECTIONS.values()) for c in cols)])
    base = {(r["workload"], r["device"]): r["quality"] for _, r in df.iterrows()
            if r["quant"] == "fp32" and r["prune"] == "0" and r["status"] == "ok"}
    deltas = []
    for _, r in df.iterrows():
        ref = base.get((r["workload"], r["device"]))
        q = r["quality"]
        ok = q is not None and ref is not None and not pd.isna(q) and not pd.isna(ref)
        deltas.append(float(q - ref) if ok else None)
    df["quality_delta"] = pd.Series(deltas, dtype=object)
    return df.sort_values(["device", "workload", "prune", "quant"],
                          key=lambda s: s.map(prune_order) if s.name == "prune" else s,
                          kind="stable").reset_index(drop=True)


def prune_order(prune: str) -> tuple[float, str]:
    """Sort key for pruning levels: magnitude levels by percentage, then each other method
    (registry order) by share; names the registry does not know go last, by name."""
    from harness.errors import InputError
    from harness.variants import PRUNE_METHODS, parse_prune

    try:
        spec = parse_prune(prune)
    except InputError:
        return (float("inf"), str(prune))
    return (list(PRUNE_METHODS).index(spec.method) * 1000.0 + spec.amount * 100.0, str(prune))


def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:,.{digits}f}" if digits == 0 else f"{v:.{digits}f}"


def display_frame(df: pd.DataFrame, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Rounded, human-headed copy of some columns of :func:`summary_frame`."""
    columns = columns or COLUMNS
    out = df.reindex(columns=list(columns)).astype(object)
    for col in out.columns:
        if col in DIGITS:
            out[col] = out[col].map(lambda v, d=DIGITS[col]: _fmt(v, d))
    if "fits" in out:
        out["fits"] = out["fits"].map(lambda v: "" if v is None or v != v
                                      else ("yes" if v else "NO"))
    if "unstable" in out:
        out["unstable"] = out["unstable"].map(lambda v: "UNSTABLE" if v is True else "")
    if "quality_delta" in out:
        out["quality_delta"] = out["quality_delta"].map(
            lambda v: v if not v or v.startswith("-") else "+" + v)
    if "reason" in out:
        out["reason"] = out["reason"].map(lambda s: s if len(s) <= 60 else s[:57] + "...")
    out = out.fillna("").map(lambda v: "" if v is None else v)
    return out.rename(columns=columns)


def present_columns(df: pd.DataFrame, columns: dict[str, str]) -> dict[str, str]:
    """The columns of a section that have at least one value (case columns always)."""
    keep = {}
    for col, head in columns.items():
        if col in _CASE or col == "status" or (
                col in df and df[col].map(lambda v: v is not None and v == v and v != "").any()):
            keep[col] = head
    return keep


def section_columns(df: pd.DataFrame, columns: dict[str, str]) -> dict[str, str] | None:
    """:func:`present_columns` of a section, or None when it has no figures beyond the case."""
    keep = present_columns(df, columns)
    return keep if set(keep) - set(_CASE) - {"status"} else None


def markdown_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A Markdown table of some columns, numbers right-aligned."""
    shown = display_frame(df, columns)
    align = ["left" if c in TEXT_COLUMNS else "right" for c in columns]
    return str(shown.to_markdown(index=False, disable_numparse=True, colalign=align))


def run_header(run: Run, df: pd.DataFrame, *, unstable_threshold: float = UNSTABLE_SPREAD
               ) -> dict[str, Any]:
    """What a report says about the run before its tables."""
    m = run.manifest
    host = m.get("host", {})
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    unstable = int((df["unstable"] == True).sum()) if not df.empty else 0  # noqa: E712
    return {
        "run_id": m.get("run_id", run.path.name),
        "created_at": m.get("created_at"),
        "suite": (m.get("suite") or {}).get("name"),
        "devices": list(m.get("devices", [])),
        "backend": m.get("backend"),
        "host": f"{host.get('cpu_model')} ({host.get('logical_cpus')} CPUs)",
        "threads": (m.get("measure") or {}).get("threads"),
        "git": m.get("git", {}),
        "status_counts": {str(k): int(v) for k, v in sorted(counts.items())},
        "unstable_rows": unstable,
        "unstable_threshold_pct": 100 * unstable_threshold,
    }


def markdown_report(run: Run, df: pd.DataFrame, *, unstable_threshold: float = UNSTABLE_SPREAD
                    ) -> str:
    """The whole Markdown report: header, one table per section, rows that are not ok."""
    h = run_header(run, df, unstable_threshold=unstable_threshold)
    status_line = ", ".join(f"{n} {s}" for s, n in h["status_counts"].items()) or "no cases"
    parts = [f"# Run {h['run_id']}\n",
             f"- suite: `{h['suite']}`; devices: {', '.join(h['devices'])}; backend: "
             f"{h['backend']}",
             f"- host: {h['host']}, threads per case: {h['threads']}",
             f"- cases: {status_line}; unstable rows: {h['unstable_rows']} (spread (p90-p10)/p50"
             f" of the warm samples above {h['unstable_threshold_pct']:.0f}%)\n",
             "Host latency is measured on this machine (warm runs, batch 1); device latency, "
             "footprint and power are the emulator's predictions for the device profile.\n",
             "## Summary\n", markdown_table(df, present_columns(df, COLUMNS)), ""]
    for title, cols in SECTIONS.items():
        keep = section_columns(df, cols)
        if keep is None:
            parts += [f"## {title}\n", f"No {title.lower()} figures in this run.\n"]
            continue
        parts += [f"## {title}\n", markdown_table(df, keep), ""]
    return "\n".join(parts) + "\n"


def json_report(run: Run, df: pd.DataFrame, *, unstable_threshold: float = UNSTABLE_SPREAD
                ) -> dict[str, Any]:
    """Header and every machine-readable column of every case (NaN -> null)."""
    records = json.loads(df.to_json(orient="records"))
    return {"kind": "edge-harness-report", "schema_version": 1,
            "run": run_header(run, df, unstable_threshold=unstable_threshold),
            "cases": records}


def terminal_table(df: pd.DataFrame) -> str:
    """The compact summary for a terminal, then the rows that are not ok with their reasons."""
    import pandas as pd

    if df.empty:
        return "no finished cases in this run"
    shown = display_frame(df, {k: v for k, v in present_columns(df, COLUMNS).items()
                               if k != "reason"})
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 60):
        return shown.to_string(index=False) + _reasons(df)


def write_report(run_dir: Path, *, html: bool = True, plots: bool = True,
                 unstable_threshold: float = UNSTABLE_SPREAD) -> str:
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
    return terminal_table(df)


def _reasons(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    out = ""
    if not bad.empty:
        lines = [f"  {r['case_id']}: {r['status']}: {r['reason']}" for _, r in bad.iterrows()]
        out += "\n\nNot ok:\n" + "\n".join(lines)
    flagged = df[df["unstable"] == True]  # noqa: E712
    if not flagged.empty:
        out += ("\n\nUnstable (relative spread of the warm samples above the threshold; "
                "rerun on a quieter machine or with more iterations):\n" + "\n".join(
                    f"  {r['case_id']}: (p90-p10)/p50 = {r['host_spread_pct']:.0f}%"
                    for _, r in flagged.iterrows()))
    return out
