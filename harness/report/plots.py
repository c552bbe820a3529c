"""Plots of a run (matplotlib, Agg backend, imported lazily), each saved as PNG and SVG.

* ``pareto-<device>``: device latency vs quality per workload, the Pareto front marked;
* ``heatmap-latency-<workload>`` / ``heatmap-quality-<workload>``: quantization x pruning;
* ``thermal-<device>``: latency, temperature and clock fraction over a sustained run (only
  when rows carry a ``device_trace``);
* ``memory-<device>``: device footprint per case against the app memory cap;
* ``devices-<workload>``: the same case's predicted latency on every device of the run;
* ``emulator-vs-device-<device>``: predicted vs measured latency of the cells a run measured
  on the phone (``adb``) and predicted (``emulated``), log-log with the y = x line.

A plot whose data is absent from the run (no quality metric, no trace, one device) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.measurement import Measurement
from harness.report.stats import pareto_front
from harness.results import Run

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from harness.report.frame import DevicePair

DPI = 110


@dataclass(frozen=True)
class Plot:
    """One written plot: a stable name, a caption, and its two files."""

    name: str
    title: str
    png: Path
    svg: Path

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"plot name must be file-safe, got {self.name!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _variant(r: Any) -> str:
    return f"{r['quant']} / prune {r['prune']}"


def _plain_log_ticks(axis: Any, *, minor: bool = False) -> None:
    """Log-scale ticks as plain numbers (0.5, 1, 2) instead of 5x10^-1; minor labels only
    where the axis spans about a decade (more would overlap)."""
    import math

    from matplotlib.ticker import FuncFormatter, NullFormatter

    def minor_label(v: float, _pos: int) -> str:  # 2 and 5 of each decade: readable, no overlap
        return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor_label) if minor else NullFormatter())


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if not df.empty else df


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df and bool(df[col].map(lambda v: v is not None and v == v).any())


def pareto_figure(df: pd.DataFrame, device: str) -> Figure | None:
    """Device latency vs quality for one device, one panel per workload with a metric."""
    from matplotlib.figure import Figure

    d = _ok(df)
    d = d[(d["device"] == device) & d["quality"].notna() & d["device_latency_ms"].notna()]
    workloads = sorted(d["workload"].unique())
    if not workloads:
        return None
    fig = Figure(figsize=(6.4 * len(workloads), 4.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(workloads), squeeze=False)[0]
    for ax, wl in zip(axes, workloads, strict=True):
        w = d[d["workload"] == wl]
        higher = w["higher_is_better"].iloc[0] is not False
        sign = 1 if higher else -1
        pts = [(float(r["device_latency_ms"]), sign * float(r["quality"]))
               for _, r in w.iterrows()]
        front = pareto_front(pts)
        labels: dict[tuple[float, float], list[str]] = {}
        # with many variants only the front is labelled (the tables name every point)
        label_all = len(w) <= 8
        for (_, r), on in zip(w.iterrows(), front, strict=True):
            ax.scatter(r["device_latency_ms"], r["quality"], s=60 if on else 30,
                       marker="o" if on else "x", color="C3" if on else "C0", zorder=3)
            lo, hi = r.get("device_latency_low_ms"), r.get("device_latency_high_ms")
            if lo == lo and hi == hi and lo is not None and hi is not None:
                # the prediction's 80% range from the calibration: how far apart two points
                # must be before the emulator can tell them apart
                ax.errorbar(r["device_latency_ms"], r["quality"], fmt="none", ecolor="0.6",
                            elinewidth=1, capsize=2, zorder=2,
                            xerr=[[r["device_latency_ms"] - lo], [hi - r["device_latency_ms"]]])
            if on or label_all:
                labels.setdefault((r["device_latency_ms"], r["quality"]), []).append(
                    _variant(r))
        for k, (xy, names) in enumerate(labels.items()):  # identical points share a label
            text = ", ".join(names) if len(names) <= 3 else \
                f"{', '.join(names[:2])} and {len(names) - 2} more"
            # alternate above/below so neighbours on the front do not overprint each other
            ann = ax.annotate(text, xy, fontsize=8, xytext=(4, 4 if k % 2 == 0 else -11),
                              textcoords="offset points")
            ann.set_in_layout(False)  # long labels must not squeeze the axes
        fr = sorted((p[0], sign * p[1]) for p, on in zip(pts, front, strict=True) if on)
        ax.step([p[0] for p in fr], [p[1] for p in fr], where="post", color="C3",
                label="Pareto front", zorder=2)
        ax.set_xscale("log")
        lat = w["device_latency_ms"].astype(float)
        _plain_log_ticks(ax.xaxis, minor=lat.max() / lat.min() < 20)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.margins(x=0.2, y=0.12)  # room for the labels of the outermost points
        bars = "device_latency_low_ms" in w and bool(w["device_latency_low_ms"].notna().any())
        ax.set_xlabel(f"predicted latency on {device} (ms, log scale"
                      + ("; bars: 80% range from the calibration)" if bars else ")"))
        ax.set_ylabel(f"{w['metric'].iloc[0]} ({'higher' if higher else 'lower'} is better)")
        ax.set_title(f"{wl} on {device}: latency vs quality")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if higher else "upper right", fontsize=8)
    return fig


def heatmap_figure(df: pd.DataFrame, workload: str, column: str, label: str
                   ) -> Figure | None:
    """Quantization x pruning grid of one column, one panel per device."""
    from matplotlib.figure import Figure

    from harness.report.frame import prune_order

    every = df[df["workload"] == workload]
    d = _ok(every)
    d = d[d[column].notna()]
    if d.empty:
        return None
    # axes span every case of the workload, so failed cases show up as labelled cells
    quants = list(dict.fromkeys(every["quant"]))
    prunes = sorted(dict.fromkeys(every["prune"]), key=prune_order)
    devices = sorted(d["device"].unique())
    if column == "quality":
        devices = devices[:1]  # quality comes from the host run: the same on every device
    fig = Figure(figsize=(max(4.0, 1.1 * len(prunes) + 2.5) * len(devices),
                          0.55 * len(quants) + 2.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    import numpy as np

    # one colour scale for the workload across devices: the same colour is the same value
    shared_lo = float(d[d["device"].isin(devices)][column].min())
    shared_hi = float(d[d["device"].isin(devices)][column].max())
    im = None
    for ax, dev in zip(axes, devices, strict=True):
        grid = np.full((len(quants), len(prunes)), np.nan)
        for _, r in d[d["device"] == dev].iterrows():
            grid[quants.index(r["quant"]), prunes.index(r["prune"])] = float(r[column])
        ax.set_facecolor("#eeeeee")  # cells without a value
        im = ax.imshow(grid, cmap="viridis_r" if column != "quality" else "viridis",
                       aspect="auto", vmin=shared_lo, vmax=shared_hi)
        long = len(prunes) > 6 or max(len(str(p)) for p in prunes) > 8
        ax.set_xticks(range(len(prunes)), [str(p) for p in prunes],
                      rotation=35 if long else 0, ha="right" if long else "center")
        ax.set_xlabel("pruning level")
        ax.set_yticks(range(len(quants)), quants)
        lo, hi = shared_lo, shared_hi
        for (i, j), v in np.ndenumerate(grid):
            if v == v:
                dark = (v - lo) / (hi - lo) < 0.5 if hi > lo else True
                if column != "quality":
                    dark = not dark
                ax.text(j, i, f"{v:.4g}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        failed = every[(every["device"] == dev) & (every["status"] != "ok")]
        for _, r in failed.iterrows():
            ax.text(prunes.index(r["prune"]), quants.index(r["quant"]), r["status"],
                    ha="center", va="center", fontsize=8, color="#b00000")
        ax.set_title(f"{workload}: {label}" + ("" if column == "quality" else f" on {dev}"))
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.9, label=label)
    return fig


MAX_TRACES = 12


def thermal_figure(run: Run, device: str) -> Figure | None:
    """Latency, temperature and clock fraction over time for every case with a trace."""
    from matplotlib.figure import Figure

    rows = [m for m in run.measurements if m.device == device and m.status == "ok"
            and (m.trace or {}).get("latency_ms")]
    if not rows:
        return None
    total = len(rows)
    throttles = False
    if total > MAX_TRACES:
        # A legend of dozens of lines outgrows the figure and reads as noise: show the cases
        # the heat slows down most (last vs first latency), which is what the plot is for.
        def slowdown(m: Measurement) -> float:
            lat = (m.trace or {})["latency_ms"]
            return lat[-1] / lat[0] if lat[0] else 1.0
        rows = sorted(rows, key=slowdown, reverse=True)[:MAX_TRACES]
        throttles = slowdown(rows[0]) > 1.01
    series: tuple[tuple[str, str], ...] = (
        ("latency_ms", "latency (ms)"), ("temp_c", "temperature (°C)"),
        ("clock_fraction", "clock (fraction of peak)"))
    if any(((m.trace or {}).get("power_w") or []) for m in rows):
        series += (("power_w", "power (W)"),)
    fig = Figure(figsize=(11, 2.5 * len(series)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(series), 1, sharex=True)
    styles = ("-", "--", ":", "-.")  # identical traces (e.g. pruning the hardware ignores)
    for k, m in enumerate(rows):      # would hide each other with one line style
        tr = m.trace or {}
        t = tr.get("time_s") or list(range(len(tr["latency_ms"])))
        label = f"{m.workload} {m.quant} / prune {m.prune}"
        for ax, (key, _) in zip(axes, series, strict=True):
            if tr.get(key):
                ax.plot(t[:len(tr[key])], tr[key], label=label, linewidth=1.2,
                        linestyle=styles[(k // 10) % len(styles)] if len(rows) > 10
                        else styles[k % len(styles)])
    for ax, (_, ylabel) in zip(axes, series, strict=True):
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time since start of the sustained run (s)"
                        if (rows[0].trace or {}).get("time_s") else "inference #")
    shown = "" if total <= MAX_TRACES else (
        f": the {MAX_TRACES} of {total} cases the heat slows down most" if throttles
        else f": {MAX_TRACES} of {total} cases (none throttles)")
    axes[0].set_title(f"Sustained run on {device} (emulated){shown}")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def memory_figure(df: pd.DataFrame, device: str) -> Figure | None:
    """Predicted device memory per case, stacked as weights / peak activations / runtime
    overhead, against the device's app memory cap."""
    from matplotlib.figure import Figure

    d = df[(df["device"] == device) & df["device_peak_memory_mb"].notna()]
    if d.empty:
        return None
    labels = [f"{r['workload']} {_variant(r)}" for _, r in d.iterrows()]
    fig = Figure(figsize=(8, 0.35 * len(d) + 1.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    y = range(len(d))
    parts = [(c, label, color) for c, label, color in (
        ("device_weights_mb", "weights", "C0"), ("device_activations_mb", "peak activations",
                                                 "C1"),
        ("device_overhead_mb", "runtime overhead", "C7")) if c in d and d[c].notna().any()]
    if parts:
        left = [0.0] * len(d)
        for col, label, color in parts:
            width = [float(v) if v == v and v is not None else 0.0 for v in d[col]]
            ax.barh(y, width, left=left, color=color, label=label)
            left = [a + b for a, b in zip(left, width, strict=True)]
        for i, fits in enumerate(d["fits"]):
            if fits is False:
                ax.annotate("does not fit", (left[i], i), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=7, color="C3")
    else:  # rows before the split was recorded: the total, green fits and red does not
        ax.barh(y, d["device_peak_memory_mb"],
                color=["C2" if f is True else "C3" for f in d["fits"]])
    ax.set_yticks(range(len(d)), labels, fontsize=8)
    ax.invert_yaxis()
    caps = d["app_cap_mb"].dropna().unique()
    for cap in caps:
        ax.axvline(cap, color="C3", linestyle="--", label=f"app cap {cap:,.0f} MB")
    ax.set_xlabel("predicted device memory (MB)")
    ax.set_title(f"Memory on {device} vs app cap")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def distribution_figure(run: Run, workload: str) -> Figure | None:
    """Per-case host latency distributions from the raw samples (one box per variant)."""
    from matplotlib.figure import Figure

    seen: dict[str, tuple[float, ...]] = {}
    for m in run.measurements:
        if m.workload != workload or m.status != "ok":
            continue
        label = f"{m.quant} / prune {m.prune}"
        samples = m.samples_ns()
        if samples and label not in seen:  # host figures are the same on every device
            seen[label] = tuple(s / 1e6 for s in samples)
    if not seen:
        return None
    labels = sorted(seen)
    fig = Figure(figsize=(8, 0.35 * len(labels) + 1.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.boxplot([seen[k] for k in labels], orientation="horizontal", showfliers=True,
               whis=(5, 95),
               flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("host latency per call (ms); box p25-p75, whiskers p5-p95")
    ax.set_title(f"{workload}: host latency distributions")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def devices_figure(df: pd.DataFrame, workload: str) -> Figure | None:
    """The same cases' predicted latency on every device of the run (grouped bars)."""
    import numpy as np
    from matplotlib.figure import Figure

    d = _ok(df)
    d = d[(d["workload"] == workload) & d["device_latency_ms"].notna()]
    devices = sorted(d["device"].unique())
    if len(devices) < 2:
        return None
    variants = list(dict.fromkeys(_variant(r) for _, r in d.iterrows()))
    fig = Figure(figsize=(max(6.0, 0.9 * len(variants) + 2), 4.5), dpi=DPI,
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(devices)
    for k, dev in enumerate(devices):
        vals = {_variant(r): r["device_latency_ms"] for _, r in d[d["device"] == dev].iterrows()}
        ys = [vals.get(v, np.nan) for v in variants]
        bars = ax.bar(np.arange(len(variants)) + (k - (len(devices) - 1) / 2) * width, ys,
                      width, label=dev)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel("predicted latency (ms, log scale)")
    ax.set_title(f"{workload}: same case across devices")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def paced_figure(run: Run, device: str) -> Figure | None:
    """Target latency, emulated temperature and clock per inference of each paced host run
    (``--pace``): what an app held to the device's pace felt as the device heated."""
    from matplotlib.figure import Figure

    rows = [m for m in run.measurements if m.device == device and m.measured
            and isinstance((m.measured.pace or {}).get("target_ms"), list)][:MAX_TRACES]
    if not rows:
        return None
    series = (("target_ms", "device latency held to (ms)"), ("temp_c", "temperature (°C)"),
              ("clock_fraction", "clock (fraction of peak)"))
    fig = Figure(figsize=(11, 2.5 * len(series)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(series), 1, sharex=True)
    for m in rows:
        pace = m.measured.pace if m.measured else None
        for ax, (key, _) in zip(axes, series, strict=True):
            values = (pace or {}).get(key) or []
            ax.plot(range(1, len(values) + 1), values, linewidth=1.2,
                    label=f"{m.workload} {m.quant} / prune {m.prune}")
    for ax, (_, ylabel) in zip(axes, series, strict=True):
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("paced inference #")
    axes[0].set_title(f"Paced host runs on {device}")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def emulator_vs_device_figure(pairs: list[DevicePair], device: str) -> Figure | None:
    """Predicted (emulated) vs measured (adb p50) latency per case on one device, log-log,
    with the y = x line: points above it are predicted slower than the phone was."""
    from matplotlib.figure import Figure

    from harness.report.frame import pair_errors

    ps = [p for p in pairs if p.device == device]
    if not ps:
        return None
    fig = Figure(figsize=(6.4, 5.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    xs = [p.measured_ms for p in ps]
    ys = [p.predicted_ms for p in ps]
    lo, hi = min(xs + ys) / 1.5, max(xs + ys) * 1.5
    ax.plot([lo, hi], [lo, hi], color="C7", linestyle="--", label="y = x (exact)")
    for quant in dict.fromkeys(p.quant for p in ps):
        q = [p for p in ps if p.quant == quant]
        ax.scatter([p.measured_ms for p in q], [p.predicted_ms for p in q], label=quant,
                   zorder=3)
    if len(ps) <= 12:
        for p in ps:
            ann = ax.annotate(f"{p.workload} {p.quant}/{p.prune}",
                              (p.measured_ms, p.predicted_ms), fontsize=7,
                              xytext=(4, 4), textcoords="offset points")
            ann.set_in_layout(False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    e = pair_errors(ps)
    ax.set_xlabel("measured on the phone, p50 (ms, log scale)")
    ax.set_ylabel("predicted by the emulator (ms, log scale)")
    ax.set_title(f"Emulator vs device on {device}: median error {e['median_pct']:+.0f}%")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def build_figures(run: Run, df: pd.DataFrame) -> list[tuple[str, str, Figure]]:
    """Every plot the run has data for: (name, caption, figure)."""
    out: list[tuple[str, str, Figure | None]] = []
    devices = sorted(df["device"].unique()) if not df.empty else []
    workloads = sorted(df["workload"].unique()) if not df.empty else []
    for dev in devices:
        out.append((f"pareto-{dev}", f"Latency vs quality on {dev} (Pareto front in red)",
                    pareto_figure(df, dev)))
    for wl in workloads:
        out.append((f"heatmap-latency-{wl}", f"{wl}: predicted device latency, quantization x "
                    "pruning", heatmap_figure(df, wl, "device_latency_ms", "device latency (ms)")))
        if _has(df, "quality"):
            out.append((f"heatmap-quality-{wl}", f"{wl}: quality, quantization x pruning",
                        heatmap_figure(df, wl, "quality", "quality")))
    for dev in devices:
        out.append((f"thermal-{dev}", f"Thermal trace of the sustained run on {dev}",
                    thermal_figure(run, dev)))
        out.append((f"paced-{dev}", f"Paced host runs on {dev}: the device latency each "
                    "inference was held to as the emulated device heated",
                    paced_figure(run, dev)))
        out.append((f"memory-{dev}", f"Predicted device memory vs app memory cap on {dev}",
                    memory_figure(df, dev)))
    from harness.report.frame import device_pairs

    pairs = device_pairs(run)
    for dev in sorted({p.device for p in pairs}):
        out.append((f"emulator-vs-device-{dev}", f"Predicted vs measured latency on {dev} "
                    "(emulated vs adb rows of the same cells; y = x is exact)",
                    emulator_vs_device_figure(pairs, dev)))
    for wl in workloads:
        out.append((f"devices-{wl}", f"{wl}: the same case across devices",
                    devices_figure(df, wl)))
        out.append((f"distribution-{wl}", f"{wl}: host latency distributions from the raw "
                    "samples", distribution_figure(run, wl)))
    return [(_slug(n), c, f) for n, c, f in out if f is not None]


def write_plots(run: Run, df: pd.DataFrame, out_dir: Path) -> list[Plot]:
    """Save every plot as PNG and SVG under ``out_dir``; return what was written."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; also keeps pyplot's global state out of it
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # a fixed hash salt and no date keep SVGs byte-identical across rebuilds
    with matplotlib.rc_context({"svg.hashsalt": "edge-harness"}):
        for name, title, fig in build_figures(run, df):
            png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
            fig.savefig(png)
            fig.savefig(svg, metadata={"Date": None})
            written.append(Plot(name=name, title=title, png=png, svg=svg))
    return written
