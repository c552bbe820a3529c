"""The history of nightly runs: an index (``results/history.jsonl``) and a metric over time.

``nox -s nightly`` appends one line per run to ``<results>/history.jsonl`` after its gate
(:func:`record`, also ``harness history add RUN``): the run id, its path (relative to the
results directory when inside it), ``created_at``, the git sha, and the gate's verdict counts
(``None`` when the run was not gated). A run indexed twice keeps its latest line.

``harness history METRIC`` reads the indexed runs, in the order they were indexed (the
nightly appends them in time), takes one figure per case from each run's rows
(:func:`harness.report.frame.row_stats`) and marks **change points** per case
(:func:`change_points`):

* the noise of a case is the run-to-run noise of its series, estimated robustly as
  ``1.4826 * MAD(x[i+1] - x[i]) / sqrt(2)`` (the median absolute deviation of consecutive
  differences, scaled to the standard deviation of one run's value; a single step is one
  outlier among the differences and hardly moves it);
* a run ``i`` is a candidate when the median of the ``k`` runs from ``i`` on differs from the
  median of the ``k`` runs before it by more than ``z`` times the noise (and by more than a
  relative ``1e-6``, float rounding of deterministic figures); ``k = 3``, ``z = 4``;
* of consecutive candidates (a step also shifts the windows next to it) the one with the
  largest difference of the two windows' means is the change point: the first run of the new
  level.

So a change is only seen with ``k`` runs on each side of it (the first ``k`` and the last
``k - 1`` runs cannot start one), and a level that holds for fewer than ``k`` runs (a one-night
outlier) is not a change point.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError

INDEX = "history.jsonl"
INDEX_VERSION = 1
METRICS = ("host_p50_ms", "device_latency_ms", "size_kb", "device_peak_memory_mb", "quality")
UNITS = {"host_p50_ms": "ms", "device_latency_ms": "ms", "size_kb": "KB",
         "device_peak_memory_mb": "MB", "quality": ""}
DEFAULT_K = 3
DEFAULT_Z = 4.0
MIN_REL_CHANGE = 1e-6
MAD_TO_SIGMA = 1.4826


def index_path(results_dir: Path) -> Path:
    return Path(results_dir) / INDEX


def gate_summary(cases: list[dict[str, Any]]) -> dict[str, int]:
    """Verdict counts of a gate (``harness gate --format json``: one object per case)."""
    from harness.gate import VERDICTS

    out = {v: sum(c.get("verdict") == v for c in cases) for v in VERDICTS}
    out["cases"] = len(cases)
    out["regressed"] = sum(bool(c.get("regressions")) for c in cases)
    return out


def record(results_dir: Path, run_dir: Path, gate_summary: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Append one line for ``run_dir`` to ``results_dir/history.jsonl``; return it.

    ``gate_summary``: the gate's verdict counts (:func:`gate_summary`), None when the run was
    not gated. The path is stored relative to ``results_dir`` when the run lies inside it (the
    index stays valid when the results directory is restored elsewhere, e.g. a CI cache).
    """
    from harness.results import append_jsonl, load_run, now_iso

    results_dir, run_dir = Path(results_dir), Path(run_dir)
    run = load_run(run_dir)  # an InputError for a non-run
    try:
        path = str(run_dir.resolve().relative_to(results_dir.resolve()))
    except ValueError:
        path = str(run_dir.resolve())
    git = run.manifest.get("git") or {}
    entry = {"schema_version": INDEX_VERSION, "kind": "edge-harness-history",
             "run_id": run.manifest.get("run_id") or run_dir.name, "path": path,
             "created_at": run.manifest.get("created_at"), "git_sha": git.get("sha"),
             "git_dirty": git.get("dirty"), "cases": len(run.rows),
             "gate": gate_summary, "recorded_at": now_iso()}
    results_dir.mkdir(parents=True, exist_ok=True)
    append_jsonl(index_path(results_dir), entry)
    return entry


def read_index(results_dir: Path) -> list[dict[str, Any]]:
    """The index's entries, in the order first indexed (a run indexed again keeps its place
    and its latest line). InputError when the index is missing, empty or damaged."""
    path = index_path(results_dir)
    if not path.is_file():
        raise InputError("no history index: `nox -s nightly` (or `harness history add RUN`) "
                         "writes it", file=path)
    entries: dict[str, dict[str, Any]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # a torn last line (a crash mid-write)
                continue
            raise InputError(f"line {n}: not valid JSON: {exc}", file=path) from exc
        if not isinstance(e, dict) or not isinstance(e.get("run_id"), str) \
                or not isinstance(e.get("path"), str):
            raise InputError(f"line {n}: expected an object with run_id and path", file=path)
        if e.get("schema_version", 1) > INDEX_VERSION:
            raise InputError(f"line {n}: written by a newer harness (index version "
                             f"{e['schema_version']})", file=path)
        entries[e["run_id"]] = e
    if not entries:
        raise InputError("the history index is empty: no run indexed yet", file=path)
    return list(entries.values())


@dataclass(frozen=True)
class ChangePoint:
    """The first run of a new level of one case's series."""

    case_id: str
    index: int            # position in the series (the first run of the new level)
    run_id: str
    before: float         # median of the k runs before
    after: float          # median of the k runs from this one on
    noise: float          # run-to-run noise (standard deviation) of the series

    @property
    def change_pct(self) -> float | None:
        return 100 * (self.after - self.before) / self.before if self.before else None


def noise_sigma(values: list[float]) -> float:
    """Run-to-run noise: 1.4826 * MAD of consecutive differences / sqrt(2)."""
    import numpy as np

    d = np.diff(np.asarray(values, dtype=float))
    if d.size == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def change_points(values: list[float | None], *, k: int = DEFAULT_K, z: float = DEFAULT_Z
                  ) -> list[tuple[int, float, float, float]]:
    """Change points of one series (see the module's docstring): a list of (position,
    median before, median after, noise). Missing values (None, NaN) are left out; positions
    refer to ``values``."""
    import numpy as np

    if k < 1:
        raise ValueError("k must be at least 1")
    pos = [i for i, v in enumerate(values) if v is not None and v == v]
    x = np.asarray([values[i] for i in pos], dtype=float)
    if x.size < 2 * k:
        return []
    sigma = noise_sigma(list(x))
    flagged: list[tuple[int, float, float, float]] = []  # (j, score, before, after)
    for j in range(k, x.size - k + 1):
        before, after = x[j - k:j], x[j:j + k]
        mb, ma = float(np.median(before)), float(np.median(after))
        floor = MIN_REL_CHANGE * max(abs(mb), abs(ma), 1e-12)
        if abs(ma - mb) > max(z * sigma, floor):
            flagged.append((j, abs(float(after.mean() - before.mean())), mb, ma))
    out = []
    group: list[tuple[int, float, float, float]] = []
    for f in [*flagged, None]:
        if f is not None and (not group or f[0] == group[-1][0] + 1):
            group.append(f)
            continue
        if group:
            best = max(group, key=lambda g: g[1])
            out.append((pos[best[0]], best[2], best[3], sigma))
        group = [f] if f is not None else []
    return out


@dataclass(frozen=True)
class History:
    metric: str
    runs: tuple[dict[str, Any], ...]                 # index entries, oldest first
    cases: tuple[str, ...]
    values: dict[str, list[float | None]]            # case -> one value per run
    change_points: tuple[ChangePoint, ...]
    skipped: tuple[str, ...]                         # runs in the index that are gone


def run_dir_of(results_dir: Path, entry: dict[str, Any]) -> Path:
    p = Path(entry["path"])
    return p if p.is_absolute() else Path(results_dir) / p


def load_history(results_dir: Path, metric: str, *, cases: list[str] | None = None,
                 k: int = DEFAULT_K, z: float = DEFAULT_Z) -> History:
    """Every indexed run's ``metric`` per case, with change points. InputError (exit 2) for a
    missing or empty index, an unknown metric or case, or no indexed run left on disk."""
    from harness.errors import unknown_name
    from harness.report.frame import row_stats
    from harness.results import load_run

    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS, field="METRIC")
    entries = read_index(results_dir)
    runs: list[dict[str, Any]] = []
    per_run: list[dict[str, float | None]] = []
    skipped: list[str] = []
    for e in entries:
        d = run_dir_of(results_dir, e)
        if not (d / "manifest.json").is_file():
            skipped.append(f"{e['run_id']} ({d} is gone)")
            continue
        run = load_run(d)
        vals: dict[str, float | None] = {}
        for m in run.measurements:
            v = row_stats(m).get(metric)
            vals[m.case_id] = float(v) if isinstance(v, int | float) and \
                not isinstance(v, bool) else None
        runs.append(e)
        per_run.append(vals)
    if not runs:
        raise InputError("no indexed run is left on disk: " + "; ".join(skipped),
                         file=index_path(results_dir))
    known = list(dict.fromkeys(c for vals in per_run for c in vals))
    if cases:
        for c in cases:
            if c not in known:
                raise unknown_name("case", c, known, field="--case")
        chosen = list(dict.fromkeys(cases))
    else:
        chosen = sorted(known)
    values = {c: [vals.get(c) for vals in per_run] for c in chosen}
    points = []
    for c in chosen:
        for i, before, after, sigma in change_points(values[c], k=k, z=z):
            points.append(ChangePoint(case_id=c, index=i, run_id=runs[i]["run_id"],
                                      before=before, after=after, noise=sigma))
    return History(metric=metric, runs=tuple(runs), cases=tuple(chosen), values=values,
                   change_points=tuple(points), skipped=tuple(skipped))


def run_label(entry: dict[str, Any]) -> str:
    """A short label for a run: its creation date and time, else its id."""
    created = entry.get("created_at")
    if isinstance(created, str) and len(created) >= 16:
        return created[:16].replace("T", " ")
    return str(entry["run_id"])


def table(h: History) -> str:
    """Runs (rows, oldest first: date, id, git sha, gate regressions) by cases (columns); the
    value at a change point (the first run of the new level) is starred."""
    from tabulate import tabulate

    marked = {(p.case_id, p.index) for p in h.change_points}
    rows = []
    for i, e in enumerate(h.runs):
        gate = e.get("gate")
        verdict = "-" if not gate else (
            f"{gate.get('regressed', gate.get('regression', 0))} regressed")
        row = [run_label(e), e["run_id"], (e.get("git_sha") or "")[:8], verdict]
        for c in h.cases:
            v = h.values[c][i]
            row.append("" if v is None else f"{v:.4g}" + (" *" if (c, i) in marked else ""))
        rows.append(row)
    return tabulate(rows, headers=["date", "run", "git", "gate", *h.cases], disable_numparse=True)


def write_plot(h: History, png: Path) -> tuple[Path, Path]:
    """The metric over the runs, one line per case, change points marked; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    svg = png.with_suffix(".svg")
    unit = UNITS[h.metric]
    n = len(h.runs)
    fig = Figure(figsize=(max(6.4, 0.45 * n + 3), 4.8), dpi=110, layout="constrained")
    ax = fig.subplots()
    xs = list(range(n))
    for j, c in enumerate(h.cases):
        ys = [math.nan if v is None else v for v in h.values[c]]
        ax.plot(xs, ys, marker="o", markersize=3, color=f"C{j % 10}", label=c)
        for p in (p for p in h.change_points if p.case_id == c):
            ax.axvline(p.index - 0.5, color=f"C{j % 10}", linestyle="--", alpha=0.6)
            ax.scatter([p.index], [ys[p.index]], s=90, facecolors="none",
                       edgecolors="C3", linewidths=1.5, zorder=4)
    if h.change_points:
        ax.scatter([], [], s=90, facecolors="none", edgecolors="C3",
                   label=f"change point (k={DEFAULT_K}, {DEFAULT_Z:g}x noise)")
    step = max(1, n // 12)
    ax.set_xticks(xs[::step], [run_label(e) for e in h.runs][::step], rotation=30,
                  ha="right", fontsize=7)
    ax.set_xlabel("indexed run")
    ax.set_ylabel(h.metric + (f" ({unit})" if unit else ""))
    ax.set_title(f"{h.metric} over {n} run(s)")
    ax.grid(True, alpha=0.3)
    if len(h.cases) <= 12:
        ax.legend(fontsize=7)
    png.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "edge-harness"}):
        fig.savefig(png)
        fig.savefig(svg, metadata={"Date": None})
    return png, svg
