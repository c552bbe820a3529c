"""The report's data model: measurements -> one DataFrame row per case, and the column
catalogs of the tables people read. The writers (:mod:`harness.report.tables`,
:mod:`harness.report.html`, :mod:`harness.report.plots`) read from here and never from each
other.

:func:`summary_frame` turns a run into one machine-readable row per case (every column the
report knows, with the unit in its name), computing statistics from the raw samples;
:data:`SECTIONS` picks the columns of each table (latency, memory, power, quality) and gives
them headers with units. Figures a row does not have are left blank.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.measurement import Measurement
from harness.report.stats import UNSTABLE_SPREAD, sample_stats
from harness.results import Run

if TYPE_CHECKING:
    import pandas as pd

# column -> header shown to people (units in every header): the compact summary table; columns
# without a value in any row (e.g. energy before the run has power figures) are left out
COLUMNS: dict[str, str] = {
    "workload": "workload",
    "quant": "quant",
    "prune": "prune",
    "device": "device",
    "backend": "backend",
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
    "host_peak_memory_mb": "host peak (MB)",
    "device_peak_memory_mb": "device memory (MB)",
    "fits": "fits",
    "metric": "metric",
    "quality": "quality",
    "quality_delta": "Δ vs fp32",
    "fidelity_cosine": "cosine vs fp32",
    "fidelity_top1_agreement": "top-1 agree",
    "fidelity_sqnr_db": "SQNR (dB)",
    "reason": "reason",
}

_CASE = {"workload": "workload", "quant": "quant", "prune": "prune", "device": "device",
         "backend": "backend"}

# title -> (column -> header); the tables of report.md / report.html
SECTIONS: dict[str, dict[str, str]] = {
    "Latency": {**_CASE, "status": "status",
                "host_p50_ms": "host p50 (ms)", "host_p90_ms": "host p90 (ms)",
                "host_p99_ms": "host p99 (ms)", "host_spread_pct": "spread (p90-p10)/p50 %",
                "unstable": "unstable", "cold_start_ms": "cold start (ms)",
                "device_latency_ms": "device pred. (ms)",
                "device_latency_range": "device 80% range (ms)",
                "device_burst_p50_ms": "device burst p50 (ms)",
                "device_burst_p90_ms": "device burst p90 (ms)",
                "device_sustained_p50_ms": "device sustained p50 (ms)",
                "device_sustained_p90_ms": "device sustained p90 (ms)"},
    "Memory": {**_CASE, "size_kb": "size (KB)", "sparsity_pct": "sparsity %",
               "host_peak_memory_mb": "host peak (MB)",
               "device_peak_memory_mb": "device memory (MB)",
               "app_cap_mb": "app cap (MB)", "cap_used_pct": "of cap %", "fits": "fits"},
    "Power": {**_CASE, "avg_power_w": "avg power (W)", "energy_mj": "energy (mJ/inference)",
              "battery_wh": "battery (Wh)",
              "inferences_per_pct_battery": "inferences per 1% battery",
              # measured on a phone (adb telemetry): the SoC and clocks over the case
              "device_start_temp_c": "SoC start (°C)", "device_end_temp_c": "SoC end (°C)",
              "device_end_clock_fraction": "clock at end (of top)",
              "on_charger": "on charger",
              # how the phone was sampled: the streaming loop, or a fallback (docs/adb.md)
              "telemetry_form": "telemetry"},
    "Quality": {**_CASE, "metric": "metric", "quality": "quality",
                "quality_delta": "Δ vs fp32", "n_examples": "examples",
                "fidelity_cosine": "cosine vs fp32", "fidelity_top1_agreement":
                "top-1 agreement vs fp32", "fidelity_sqnr_db": "SQNR vs fp32 (dB)"},
}

# The table of language-model cases (generative workloads, harness.llm), shown only when a run
# has some: columns for the prompt lengths the llm suite times (64 and 256 tokens; rows carry
# every length the workload timed, see generation_stats). Host figures are medians of the raw
# phase samples; "device" figures are the generation emulator's for the device profile.
GENERATION: dict[str, str] = {
    **_CASE, "status": "status",
    "load_ms": "load (ms)",
    "ttft_64_ms": "TTFT 64 tok (ms)", "ttft_256_ms": "TTFT 256 tok (ms)",
    "prefill_256_tokens_per_s": "prefill 256 (tok/s)",
    "decode_64_tokens_per_s": "decode after 64 (tok/s)",
    "decode_256_tokens_per_s": "decode after 256 (tok/s)",
    "generation_unstable": "unstable phases",
    "host_peak_memory_mb": "host peak (MB)",
    "kv_cache_256_mb": "KV cache 256+gen (MB)",
    "size_kb": "size (KB)",
    "quality": "perplexity", "quality_delta": "Δ vs fp32",
    "fidelity_top1_agreement": "top-1 agree vs fp32",
    "greedy_match_fp32": "greedy = fp32 (share)",
    "device_ttft_256_ms": "device TTFT 256 (ms)",
    "device_prefill_256_tokens_per_s": "device prefill 256 (tok/s)",
    "device_decode_64_tokens_per_s": "device decode (tok/s)",
    "device_sustained_decode_64_tokens_per_s": "device decode 10 min (tok/s)",
    "device_peak_memory_mb": "device memory (MB)", "fits": "fits",
    "energy_mj": "device energy (mJ/token)",
}

# column -> decimals when shown to people
DIGITS: dict[str, int] = {
    "load_ms": 1, "ttft_64_ms": 1, "ttft_256_ms": 1, "prefill_256_tokens_per_s": 1,
    "decode_64_tokens_per_s": 1, "decode_256_tokens_per_s": 1, "kv_cache_256_mb": 2,
    "greedy_match_fp32": 2, "device_ttft_256_ms": 1, "device_prefill_256_tokens_per_s": 0,
    "device_decode_64_tokens_per_s": 1, "device_sustained_decode_64_tokens_per_s": 1,
    "host_p50_ms": 3, "host_p90_ms": 3, "host_p99_ms": 3, "host_spread_pct": 0,
    "cold_start_ms": 1, "device_latency_ms": 3, "device_burst_p50_ms": 3,
    "device_burst_p90_ms": 3, "device_sustained_p50_ms": 3, "device_sustained_p90_ms": 3,
    "size_kb": 1, "sparsity_pct": 1, "host_peak_memory_mb": 1, "device_peak_memory_mb": 2,
    "app_cap_mb": 0, "cap_used_pct": 1, "avg_power_w": 3, "energy_mj": 4, "battery_wh": 1,
    "inferences_per_pct_battery": 0, "device_start_temp_c": 1, "device_end_temp_c": 1,
    "device_end_clock_fraction": 2, "n_examples": 0, "quality": 4, "quality_delta": 4,
    "fidelity_cosine": 5, "fidelity_top1_agreement": 4, "fidelity_sqnr_db": 1,
}
TEXT_COLUMNS = {"workload", "quant", "prune", "device", "backend", "status", "fits", "metric",
                "reason", "unstable", "device_latency_range", "on_charger",
                "generation_unstable", "telemetry_form"}
# quantization levels that are a workload's unquantized reference (the Δ vs fp32 baseline):
# ONNX Runtime's fp32, and the fp32 decoder a language model's GenAI levels are compared with
REFERENCE_LEVELS = ("fp32", "genai-fp32")

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


def trace_split(trace: Mapping[str, Any]) -> dict[str, float | None]:
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


def _band(band: Any, i: int) -> float | None:
    if isinstance(band, list) and len(band) == 2 and isinstance(band[i], int | float):
        return float(band[i])
    return None


def _range_text(band: Any) -> str | None:
    """A prediction's 80% range as text ("1.9-3.1"), from the calibration's residuals."""
    if not (isinstance(band, list) and len(band) == 2
            and all(isinstance(v, int | float) for v in band)):
        return None
    return f"{band[0]:.3g}-{band[1]:.3g}"


def _printed_stats(m: Measurement) -> dict[str, float]:
    """p50/p90/p99/mean in ms from a phase's printed summary (no raw samples)."""
    phase = m.measured.phase() if m.measured else None
    summary = phase.summary if phase is not None else None
    if not summary:
        return {}
    out = {}
    for key in ("p50", "p90", "p99", "mean"):
        v = summary.get(f"{key}_ns")
        if isinstance(v, int | float):
            out[key] = float(v) / 1e6 / (phase.calls_per_sample if phase else 1)
    return out


def row_stats(m: Measurement, *, unstable_threshold: float = UNSTABLE_SPREAD
              ) -> dict[str, Any]:
    """One table row (machine-readable names, units in the names) from one measurement.

    The measured latency columns come from the raw samples; a runner that prints only its own
    statistics (adb: onnxruntime_perf_test) fills p50/p90/p99/mean from them instead.
    """
    st = sample_stats(m.samples_ns())
    printed = _printed_stats(m) if st is None else {}
    measured = m.measured
    cold = measured.cold_start if measured else None
    pred = m.predicted
    art = m.artifact
    quality = m.quality
    fid = m.fidelity if m.fidelity is not None and m.fidelity.error is None else None
    trace = m.trace or {}
    split = trace_split(trace) if trace else {}
    # without a trace the only burst figure is the single prediction (device_latency_ms)
    sustained_p50 = split.get("device_sustained_p50_ms") or pred.sustained_latency_ms
    memory, cap, energy_mj = pred.peak_memory_mb, pred.app_cap_mb, pred.energy_mj
    avg_power_w = pred.avg_power_w
    tele = measured.telemetry if measured else None
    if tele is not None and energy_mj is None and tele.energy_meaningful:
        # measured on a phone off its charger; on a charger the battery's current is the
        # charger's doing, so the figures stay blank and "on charger" says why
        energy_mj, avg_power_w = tele.energy_mj, tele.avg_power_w
    battery_wh = pred.battery_wh or (
        _profile_battery_wh(m.device) if energy_mj and m.device else None)
    per_pct = (0.01 * battery_wh * J_PER_WH * 1e3 / energy_mj
               if battery_wh and energy_mj else None)
    return {
        "case_id": m.case_id,
        "workload": m.workload,
        "quant": m.quant,
        "prune": m.prune,
        "device": m.device_label,
        "backend": m.backend,
        "status": m.status,
        "host_p50_ms": st.p50_ms if st else printed.get("p50"),
        "host_p90_ms": st.p90_ms if st else printed.get("p90"),
        "host_p99_ms": st.p99_ms if st else printed.get("p99"),
        "host_mean_ms": st.mean_ms if st else printed.get("mean"),
        "host_stdev_ms": st.stdev_ms if st else None,
        "host_spread_pct": 100 * st.spread if st else None,
        "unstable": st.unstable(threshold=unstable_threshold) if st else None,
        "host_n": st.n if st else 0,
        "cold_start_ms": cold.total_ms if cold else None,
        "device_latency_ms": pred.latency_ms,
        "device_latency_range": _range_text(pred.detail.get("latency_range_ms")),
        "device_latency_low_ms": _band(pred.detail.get("latency_range_ms"), 0),
        "device_latency_high_ms": _band(pred.detail.get("latency_range_ms"), 1),
        "device_burst_p50_ms": split.get("device_burst_p50_ms"),
        "device_burst_p90_ms": split.get("device_burst_p90_ms"),
        "device_sustained_p50_ms": sustained_p50,
        "device_sustained_p90_ms": split.get("device_sustained_p90_ms"),
        "size_kb": art.size_bytes / 1024.0 if art and art.size_bytes is not None else None,
        "sparsity_pct": 100.0 * art.sparsity if art and art.sparsity is not None else None,
        "host_peak_memory_mb": measured.peak_memory_mb if measured else None,
        "device_peak_memory_mb": memory,
        "device_weights_mb": _num(pred.detail.get("weights_mb")),
        "device_activations_mb": _num(pred.detail.get("peak_activations_mb")),
        "device_overhead_mb": _num(pred.detail.get("runtime_overhead_mb")),
        "app_cap_mb": cap,
        "cap_used_pct": 100 * memory / cap if memory is not None and cap else None,
        "fits": pred.fits,
        "avg_power_w": avg_power_w,
        "energy_mj": energy_mj,
        "device_start_temp_c": tele.start_temp_c if tele else None,
        "device_end_temp_c": tele.end_temp_c if tele else None,
        "device_end_clock_fraction": tele.end_clock_fraction if tele else None,
        "on_charger": None if tele is None or tele.charging is None
        else ("yes" if tele.charging else "no"),
        "telemetry_form": (measured.extra or {}).get("telemetry_form")
        if tele and measured else None,
        "battery_wh": battery_wh,
        "inferences_per_pct_battery": per_pct,
        "metric": quality.metric if quality else None,
        "quality": float(quality.value) if quality else None,
        "higher_is_better": quality.higher_is_better if quality else None,
        "n_examples": quality.n_examples if quality else None,
        "fidelity_cosine": fid.cosine if fid else None,
        "fidelity_top1_agreement": fid.top1_agreement if fid else None,
        # outputs bit-identical to fp32: infinite SQNR (JSON stores null and a flag)
        "fidelity_sqnr_db": fid.sqnr_db_or_inf if fid else None,
        "has_trace": bool(trace.get("latency_ms")),
        # dynamic input dimensions the emulator had to assume (rows before input shapes were
        # passed to it: they costed every dynamic dimension as 1)
        "assumed_dims": "; ".join(pred.detail.get("fixed_dims") or ()),
        # why a case that wanted a prediction has none (a .tflite file: no ONNX graph to cost)
        "prediction_error": pred.error or "",
        "reason": m.reason,
        "emulator_version": m.provenance.emulator_version,
        "profile_sha256": m.provenance.profile_sha256,
        **generation_stats(m, unstable_threshold=unstable_threshold),
    }


def generation_stats(m: Measurement, *, unstable_threshold: float = UNSTABLE_SPREAD
                     ) -> dict[str, Any]:
    """Columns of a generative case (phases ``load``, ``prefill_N``, ``decode_N``): medians of
    the raw samples, tokens/s derived from them (prefill: N tokens per sample; decode: one),
    which phases are UNSTABLE, the KV cache and quality extras, and the generation emulator's
    figures per prompt length. Empty for other cases."""
    measured = m.measured
    if measured is None or measured.phase("load") is None:
        return {}
    out: dict[str, Any] = {}
    unstable: list[str] = []
    for phase in measured.phases:
        st = sample_stats(phase.samples_ns)
        if st is None:
            continue
        if st.unstable(threshold=unstable_threshold):
            unstable.append(phase.name)
        kind, _, n = phase.name.partition("_")
        if phase.name == "load":
            out["load_ms"] = st.p50_ms
        elif kind == "prefill" and n.isdigit():
            out[f"ttft_{n}_ms"] = st.p50_ms
            out[f"prefill_{n}_tokens_per_s"] = int(n) / st.p50_ms * 1e3
            out[f"prefill_{n}_n"] = st.n
        elif kind == "decode" and n.isdigit():
            out[f"decode_{n}_ms_per_token"] = st.p50_ms
            out[f"decode_{n}_tokens_per_s"] = 1e3 / st.p50_ms
            out[f"decode_{n}_n"] = st.n
    out["generation_unstable"] = ", ".join(unstable) or "no"
    extra = measured.extra or {}
    for n, mb in (extra.get("kv_cache_mb") or {}).items():
        out[f"kv_cache_{n}_mb"] = _num(mb)
    if isinstance(extra.get("reference"), str):
        out["reference_note"] = extra["reference"]
    if m.quality is not None:
        for k in ("greedy_match_fp32", "top1_agreement_fp32", "nll_per_token"):
            if k in m.quality.extra:
                out[k] = _num(m.quality.extra[k])
    detail = m.predicted.detail
    for key, value in detail.items():
        for prefix, col in (("ttft_ms_", "device_ttft_{}_ms"),
                            ("prefill_tokens_per_s_", "device_prefill_{}_tokens_per_s"),
                            ("decode_tokens_per_s_", "device_decode_{}_tokens_per_s"),
                            ("sustained_decode_tokens_per_s_",
                             "device_sustained_decode_{}_tokens_per_s"),
                            ("kv_cache_mb_", "device_kv_cache_{}_mb")):
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                out[col.format(key[len(prefix):])] = _num(value)
    return out


def summary_frame(run: Run, *, unstable_threshold: float = UNSTABLE_SPREAD) -> pd.DataFrame:
    """All cases of a run with statistics, plus quality delta vs the fp32 dense baseline."""
    import pandas as pd

    df = pd.DataFrame([row_stats(m, unstable_threshold=unstable_threshold)
                       for m in run.measurements])
    if df.empty:
        return pd.DataFrame(columns=["case_id", *dict.fromkeys(
            c for cols in (COLUMNS, *SECTIONS.values()) for c in cols)])
    base = {(r["workload"], r["device"], r["backend"]): r["quality"] for _, r in df.iterrows()
            if r["quant"] in REFERENCE_LEVELS and r["prune"] == "0" and r["status"] == "ok"}
    deltas = []
    for _, r in df.iterrows():
        ref = base.get((r["workload"], r["device"], r["backend"]))
        q = r["quality"]
        ok = q is not None and ref is not None and not pd.isna(q) and not pd.isna(ref)
        deltas.append(float(q - ref) if ok else None)
    df["quality_delta"] = pd.Series(deltas, dtype=object)
    return df.sort_values(["device", "backend", "workload", "prune", "quant"],
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
    """Rounded, human-headed copy of some columns of :func:`summary_frame` (report.md and
    report.html; the terminal's cells are :func:`harness.report.tables.terminal_cell`)."""
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
        if col == "backend":
            # one backend (every run before backends existed): the column says nothing
            if col in df and df[col].nunique() > 1:
                keep[col] = head
            continue
        if col in _CASE or col == "status" or (
                col in df and df[col].map(lambda v: v is not None and v == v and v != "").any()):
            keep[col] = head
    return keep


def section_columns(df: pd.DataFrame, columns: dict[str, str]) -> dict[str, str] | None:
    """:func:`present_columns` of a section, or None when it has no figures beyond the case."""
    keep = present_columns(df, columns)
    return keep if set(keep) - set(_CASE) - {"status"} else None


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
        "backends": list(m.get("backends") or ()),
        "host": f"{host.get('cpu_model')} ({host.get('logical_cpus')} CPUs)",
        "threads": (m.get("measure") or {}).get("threads"),
        "git": m.get("git", {}),
        "status_counts": {str(k): int(v) for k, v in sorted(counts.items())},
        "unstable_rows": unstable,
        "calibration": calibration_note(run),
        "unstable_threshold_pct": 100 * unstable_threshold,
    }




@dataclass(frozen=True)
class TimeShare:
    """Where one case's predicted device time goes: shares by op type and by compute unit."""

    case_id: str
    device: str
    total_ms: float
    by_op: tuple[tuple[str, float], ...]      # (op type, share of the time), largest first
    by_unit: tuple[tuple[str, float], ...]
    fallbacks: int                            # nodes that could not run where they would best
    nodes: int
    breakdown_file: str | None = None         # the per-node file, relative to the run


def time_shares(run: Run, *, top: int = 5) -> list[TimeShare]:
    """The per-node breakdown of every predicted case, summarised by op type and unit.

    Read from the breakdown files the describe task wrote (one per artifact and device);
    cases without one (old runs, failed predictions) are left out.
    """
    out = []
    for m in run.measurements:
        name = m.predicted.breakdown_file
        if not name or not m.device:
            continue
        path = run.path / name
        try:
            nodes = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        total = sum(float(n.get("time_ms") or 0.0) for n in nodes)
        if total <= 0:
            continue
        ops: dict[str, float] = {}
        units: dict[str, float] = {}
        for n in nodes:
            t = float(n.get("time_ms") or 0.0)
            ops[str(n.get("op"))] = ops.get(str(n.get("op")), 0.0) + t
            if n.get("unit"):
                units[str(n["unit"])] = units.get(str(n["unit"]), 0.0) + t
        out.append(TimeShare(
            case_id=m.case_id, device=m.device, total_ms=total,
            by_op=tuple((k, v / total) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])
                        [:top]),
            by_unit=tuple((k, v / total) for k, v in sorted(units.items(),
                                                             key=lambda kv: -kv[1])),
            fallbacks=sum(1 for n in nodes if n.get("fallback")), nodes=len(nodes),
            breakdown_file=name))
    return out


def _is_generation(m: Measurement) -> bool:
    return m.predicted.detail.get("kind") == "generation"


def _calibration(run: Run, *, generation: bool = False) -> dict[str, Any] | None:
    """The calibration error recorded with the run's single-shot predictions (the first
    row's), or with its generation predictions (the LLM fit's, ``generation=True``)."""
    for m in run.measurements:
        cal = m.predicted.detail.get("calibration")
        if m.predicted.latency_ms is not None and isinstance(cal, dict) \
                and _is_generation(m) == generation:
            return cal
    return None


def calibration_band(run: Run) -> str | None:
    """The calibration's error band for a table header ("±21% median"): the median |error| on
    a model left out of the fit; None when no calibration error was recorded."""
    pct = (_calibration(run) or {}).get("leave_one_model_out_median_pct")
    return f"±{pct:.0f}% median" if isinstance(pct, int | float) else None


def banded(columns: dict[str, str], band: str | None) -> dict[str, str]:
    """``columns`` with the calibration's error band after the device latency's header, so a
    reader sees how far to trust the figures where they read them (report.md, report.html)."""
    return {k: f"{h} {band}" if band and k == "device_latency_ms" else h
            for k, h in columns.items()}


def calibration_note(run: Run) -> str | None:
    """One sentence on how far to trust the run's device predictions: the calibration error
    the predictions were made with (recorded in each row), and how many cases ran mainly on
    units the calibration does not cover."""
    texts = [t for t in (_single_shot_note(run), _generation_note(run)) if t]
    return " ".join(texts) or None


def _single_shot_note(run: Run) -> str | None:
    fid = _calibration(run)
    predicted = [m for m in run.measurements
                 if m.predicted.latency_ms is not None and not _is_generation(m)]
    if not predicted:
        return None
    if fid is None:
        return ("Device predictions: no calibration error was recorded with these predictions "
                "(a run before 2026-11-30, or profiles without a fitted overlay).")
    unit = fid.get("unit", "npu")
    other = sum(1 for m in predicted if m.predicted.detail.get("unit") != unit)
    text = (f"Device predictions: {str(unit).upper()} figures fitted on {fid.get('targets')} "
            f"published latencies; median |error| {fid.get('leave_one_model_out_median_pct')}% "
            f"on a model left out of the fit ({fid.get('in_sample_median_pct')}% in sample, "
            f"{fid.get('leave_one_device_out_median_pct')}% on a device left out).")
    if other:
        text += (f" {other} of {len(predicted)} predicted cases run mainly on another unit, "
                 "whose efficiencies are not fitted.")
    return text


def _generation_note(run: Run) -> str | None:
    if not any(_is_generation(m) and m.predicted.latency_ms is not None
               for m in run.measurements):
        return None
    fid = _calibration(run, generation=True)
    if fid is None:
        return ("Generation predictions: no calibration error was recorded with them (a run "
                "made before they carried it).")
    return (f"Generation predictions: fitted on {fid.get('rows')} published rows "
            f"({fid.get('date')}); median |error| of decode tokens/s "
            f"{fid.get('decode_loo_err_median_abs_pct')}% on a row left out of the fit "
            f"({fid.get('decode_err_median_abs_pct')}% in sample), of prefill tokens/s "
            f"{fid.get('prefill_loo_err_median_abs_pct')}% (TTFT is the least certain figure).")


@dataclass(frozen=True)
class DevicePair:
    """One cell measured on the phone (``adb``) and predicted by the emulator (``emulated``):
    the emulator's burst prediction against the phone's p50 (the runner's printed statistic;
    a warm run of a cool phone, like the burst figure)."""

    cell_id: str
    device: str
    workload: str
    quant: str
    prune: str
    predicted_ms: float
    measured_ms: float
    unit: str | None = None            # the unit the emulator predicted the case on
    # energy per inference: the emulator's (when its placement is the unit compared) and the
    # phone's battery draw over the run (only off the charger); memory: the emulator's device
    # footprint and the runner's peak working set on the phone
    predicted_energy_mj: float | None = None
    measured_energy_mj: float | None = None
    predicted_memory_mb: float | None = None
    measured_memory_mb: float | None = None

    @property
    def error_pct(self) -> float:
        """Signed error of the prediction, % of the measured latency (+: predicted slower)."""
        return 100.0 * (self.predicted_ms - self.measured_ms) / self.measured_ms


# The figures an emulator-vs-device table shows beside latency, where some pair has the
# measured side: (header, predicted, measured).
PAIR_EXTRAS: tuple[tuple[str, str, str], ...] = (
    ("energy (mJ)", "predicted_energy_mj", "measured_energy_mj"),
    ("memory (MB)", "predicted_memory_mb", "measured_memory_mb"),
)


def pair_extras(pairs: list[DevicePair]) -> list[tuple[str, str, str]]:
    """The :data:`PAIR_EXTRAS` that some pair of ``pairs`` has a measured value for."""
    return [x for x in PAIR_EXTRAS if any(getattr(p, x[2]) is not None for p in pairs)]


def cell_id(m: Measurement) -> str:
    """The row's case id without its ``@backend`` suffix (``Case.cell_id``)."""
    suffix = f"@{m.backend}"
    return m.case_id[:-len(suffix)] if m.case_id.endswith(suffix) else m.case_id


# The unit an ONNX Runtime execution provider runs on, for pairing a phone's row with the
# emulator's prediction on that unit.
PROVIDER_UNIT = {"CPUExecutionProvider": "cpu", "XnnpackExecutionProvider": "cpu",
                 "NnapiExecutionProvider": "npu", "QNNExecutionProvider": "npu"}


def measured_unit(m: Measurement) -> str | None:
    """The unit a measured row ran on, from its execution providers (None: not one unit)."""
    if m.measured is None:
        return None
    units = {PROVIDER_UNIT.get(p) for p in m.measured.providers}
    return units.pop() if len(units) == 1 else None


def device_pairs(run: Run, *, measured_backend: str = "adb",
                 predicted_backend: str = "emulated") -> list[DevicePair]:
    """Every cell of ``run`` with an ok ``measured_backend`` row that has a p50 and a
    ``predicted_backend`` row with a prediction, in suite order. The prediction compared is
    the one on the unit the phone ran (its execution provider) where the row has it
    (``latency_ms_by_unit``), else the emulator's own placement."""
    predicted: dict[str, Measurement] = {}
    for m in run.measurements:
        if m.backend == predicted_backend and m.predicted.latency_ms is not None:
            predicted[cell_id(m)] = m
    pairs = []
    for m in run.measurements:
        if m.backend != measured_backend or m.status != "ok" or not m.device:
            continue
        p50 = row_stats(m)["host_p50_ms"]
        cid = cell_id(m)
        if cid not in predicted or not p50:
            continue
        pred = predicted[cid].predicted
        unit = pred.detail.get("unit")
        latency = float(pred.latency_ms or 0.0)
        by_unit = pred.detail.get("latency_ms_by_unit")
        ran_on = measured_unit(m)
        own_unit = unit
        if ran_on and isinstance(by_unit, Mapping) and by_unit.get(ran_on):
            unit, latency = ran_on, float(by_unit[ran_on])
        tele = m.measured.telemetry if m.measured is not None else None
        pairs.append(DevicePair(
            cell_id=cid, device=m.device, workload=m.workload, quant=m.quant, prune=m.prune,
            predicted_ms=latency, measured_ms=float(p50), unit=str(unit) if unit else None,
            predicted_energy_mj=pred.energy_mj if unit == own_unit else None,
            measured_energy_mj=tele.energy_mj if tele is not None and tele.energy_meaningful
            else None,
            predicted_memory_mb=pred.peak_memory_mb,
            measured_memory_mb=m.measured.peak_memory_mb if m.measured is not None else None))
    return pairs


def pair_errors(pairs: list[DevicePair]) -> dict[str, float]:
    """Median signed and median absolute error (%) of ``pairs`` (empty: no figures)."""
    if not pairs:
        return {}
    errors = np.array([p.error_pct for p in pairs])
    return {"median_pct": float(np.median(errors)),
            "median_abs_pct": float(np.median(np.abs(errors))),
            "worst_abs_pct": float(np.max(np.abs(errors)))}


PAIRS_INTRO = ("The emulator's burst prediction (`emulated` row) against the latency measured "
               "on the phone (`adb` row: the runner's p50) for the same cells; error = "
               "(predicted - measured) / measured. The prediction is the one on the unit the "
               "phone's runner used (ONNX Runtime's CPU provider: the CPU), not the emulator's "
               "own choice of unit; rows written before 2026-11-30 have only the latter, and "
               "their unit column says which.")


def pairs_by_device(pairs: list[DevicePair]) -> dict[str, list[DevicePair]]:
    by: dict[str, list[DevicePair]] = {}
    for p in pairs:
        by.setdefault(p.device, []).append(p)
    return by


GENERATION_INTRO = (
    "Language models: host medians of the raw phase samples (load; prefill = time to first "
    "token of an N-token prompt; decode = one token after it, KV cache sized to the prompt "
    "plus the generated tokens), perplexity on the workload's fixed text; device figures are "
    "the generation emulator's, from the decoder graph.")


def generation_notes(gen: pd.DataFrame) -> list[str]:
    """What each workload's fp32 reference is, where it is not a full-precision original."""
    if "reference_note" not in gen:
        return []
    notes = gen.dropna(subset=["reference_note"]).drop_duplicates("workload")
    return [f"{w}: {n}." for w, n in zip(notes["workload"], notes["reference_note"],
                                        strict=True)]


def generation_rows(df: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of the run's generative workloads (ok or not), None when it has none."""
    if "load_ms" not in df or not df["load_ms"].notna().any():
        return None
    gen = df[df["load_ms"].notna() | df["status"].ne("ok")]
    return gen[gen["workload"].isin(set(df.loc[df["load_ms"].notna(), "workload"]))]
