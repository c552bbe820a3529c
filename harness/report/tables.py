"""The run summary table: statistics are computed here, from the raw samples in the rows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.results import Run, load_run

if TYPE_CHECKING:
    import pandas as pd

# column -> header shown to people (units in every header)
COLUMNS: dict[str, str] = {
    "workload": "workload",
    "quant": "quant",
    "prune": "prune %",
    "device": "device",
    "status": "status",
    "host_p50_ms": "host p50 (ms)",
    "host_p90_ms": "host p90 (ms)",
    "cold_start_ms": "cold start (ms)",
    "device_latency_ms": "device pred. (ms)",
    "size_kb": "size (KB)",
    "sparsity_pct": "sparsity %",
    "host_peak_mb": "host peak (MB)",
    "device_footprint_mb": "device footprint (MB)",
    "fits": "fits",
    "metric": "metric",
    "quality": "quality",
    "quality_delta": "Δ vs fp32",
    "cosine": "cosine vs fp32",
    "top1_agreement": "top-1 agree",
    "sqnr_db": "SQNR (dB)",
    "reason": "reason",
}


def _ms(ns: float) -> float:
    return ns / 1e6


def row_stats(row: dict[str, Any]) -> dict[str, Any]:
    """One table row (machine-readable names) from one result row."""
    host = row.get("host") or {}
    samples = np.asarray(host.get("warm_latency_ns") or [], dtype=np.float64)
    cold = host.get("cold_start") or {}
    pred = row.get("device_prediction") or {}
    art = row.get("artifact") or {}
    quality = row.get("quality") or {}
    fid = row.get("fidelity") or {}
    return {
        "case_id": row["case_id"],
        "workload": row["workload"],
        "quant": row["quant"],
        "prune": row["prune"],
        "device": row["device"],
        "status": row["status"],
        "host_p50_ms": _ms(float(np.percentile(samples, 50))) if samples.size else None,
        "host_p90_ms": _ms(float(np.percentile(samples, 90))) if samples.size else None,
        "host_n": int(samples.size),
        "cold_start_ms": _ms(cold["session_create_ns"] + cold["first_inference_ns"])
        if cold else None,
        "device_latency_ms": pred.get("latency_ms"),
        "size_kb": art["size_bytes"] / 1024.0 if art else None,
        "sparsity_pct": 100.0 * art["sparsity"] if art else None,
        "host_peak_mb": host.get("peak_rss_mb"),
        "device_footprint_mb": pred.get("footprint_mb"),
        "app_cap_mb": pred.get("app_cap_mb"),
        "fits": pred.get("fits"),
        "metric": quality.get("metric"),
        "quality": quality.get("value"),
        "cosine": fid.get("cosine"),
        "top1_agreement": fid.get("top1_agreement"),
        # outputs bit-identical to fp32: infinite SQNR (JSON stores null and a flag)
        "sqnr_db": float("inf") if fid.get("identical") else fid.get("sqnr_db"),
        "reason": row.get("reason") or "",
    }


def summary_frame(run: Run) -> pd.DataFrame:
    """All cases of a run with statistics, plus quality delta vs the fp32 dense baseline."""
    import pandas as pd

    df = pd.DataFrame([row_stats(r) for r in run.rows])
    if df.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    base = df[(df["quant"] == "fp32") & (df["prune"] == "0")].set_index(["workload", "device"])
    deltas = []
    for _, r in df.iterrows():
        key = (r["workload"], r["device"])
        ref = base["quality"].get(key) if key in base.index else None
        ok = r["quality"] is not None and ref is not None and not pd.isna(ref)
        deltas.append(r["quality"] - ref if ok and not pd.isna(r["quality"]) else None)
    df["quality_delta"] = deltas
    return df.sort_values(["device", "workload", "prune", "quant"],
                          key=lambda s: s.map(_order) if s.name == "prune" else s,
                          kind="stable").reset_index(drop=True)


def _order(prune: str) -> float:
    try:
        return float(prune)
    except ValueError:
        return float("inf")


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rounded, human-headed copy of :func:`summary_frame` for terminal and Markdown."""
    out = df.reindex(columns=list(COLUMNS)).copy()
    for col, digits in {"host_p50_ms": 3, "host_p90_ms": 3, "cold_start_ms": 1,
                        "device_latency_ms": 3, "size_kb": 1, "sparsity_pct": 1,
                        "host_peak_mb": 1, "device_footprint_mb": 2, "quality": 4,
                        "quality_delta": 4, "cosine": 5, "top1_agreement": 4,
                        "sqnr_db": 1}.items():
        out[col] = out[col].map(lambda v, d=digits: "" if v is None or v != v else f"{v:.{d}f}")
    out["fits"] = out["fits"].map(lambda v: "" if v is None or v != v else ("yes" if v else "NO"))
    out["quality_delta"] = out["quality_delta"].map(
        lambda v: v if not v or v.startswith("-") else "+" + v)
    out["reason"] = out["reason"].map(lambda s: s if len(s) <= 60 else s[:57] + "...")
    out = out.fillna("")
    return out.rename(columns=COLUMNS)


def write_report(run_dir: Path) -> str:
    """Write report.md and report.csv into the run directory; return the terminal table."""
    import pandas as pd

    run = load_run(run_dir)
    df = summary_frame(run)
    df.to_csv(run_dir / "report.csv", index=False)
    shown = display_frame(df)
    suite = run.manifest.get("suite", {}).get("name")
    devices = ", ".join(run.manifest.get("devices", []))
    host = run.manifest.get("host", {})
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    status_line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cases"
    header = (f"# Run {run.manifest.get('run_id', run_dir.name)}\n\n"
              f"- suite: `{suite}`; devices: {devices}; backend: "
              f"{run.manifest.get('backend')}\n"
              f"- host: {host.get('cpu_model')} ({host.get('logical_cpus')} CPUs), "
              f"threads per case: {run.manifest.get('measure', {}).get('threads')}\n"
              f"- cases: {status_line}\n\n"
              "Host latency is measured on this machine (warm runs, batch 1); device latency "
              "and footprint are the emulator's predictions for the device profile.\n\n")
    text_cols = {"workload", "quant", "device", "status", "fits", "metric", "reason"}
    align = ["left" if c in text_cols else "right" for c in COLUMNS]
    table = shown.to_markdown(index=False, disable_numparse=True, colalign=align)
    (run_dir / "report.md").write_text(header + table + "\n")
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 60):
        return shown.drop(columns=["reason"]).to_string(index=False) + _reasons(df)


def _reasons(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return ""
    lines = [f"  {r['case_id']}: {r['status']}: {r['reason']}" for _, r in bad.iterrows()]
    return "\n\nNot ok:\n" + "\n".join(lines)
