"""Compare two runs case by case (joined on ``case_id``): did B get slower, fatter or worse?

Host latency is noisy, so a latency change is claimed only when it is both statistically
significant (the bootstrap confidence interval of median(B)/median(A) excludes 1) and larger
than a noise threshold (default 5%: the CI must lie entirely beyond 1 ± threshold). Everything
else the rows hold is deterministic for a given artifact and profile (size, device prediction,
memory, quality), so those are compared directly, unless the emulator or the profile changed
between the runs (the rows' provenance says): then prediction changes are reported as changes
of the yardstick, not as regressions of the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.measurement import Measurement
from harness.errors import InputError
from harness.report.stats import median_ratio_ci
from harness.results import Run

VERDICTS = ("faster", "slower", "same", "n/a")
FAIL_ON = ("regression", "change", "never")
DEFAULT_THRESHOLD = 0.10
DEFAULT_QUALITY_TOLERANCE = 0.005


@dataclass(frozen=True)
class CompareOptions:
    """How strict a comparison is."""

    # relative latency/size change that counts; 10% because two back-to-back runs of the same
    # code on a 2-core cloud VM differed by up to 9.8% on a case (docs/comparing-runs.md)
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = 0.95
    quality_tolerance: float = DEFAULT_QUALITY_TOLERANCE   # in metric units

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise InputError(f"expected 0 <= threshold < 1, got {self.threshold}",
                             field="--threshold")
        if not 0.5 <= self.confidence < 1:
            raise InputError(f"expected 0.5 <= confidence < 1, got {self.confidence}",
                             field="--confidence")
        if self.quality_tolerance < 0:
            raise InputError("expected a non-negative quality tolerance",
                             field="--quality-tolerance")


@dataclass(frozen=True)
class CaseComparison:
    """One case in both runs (or in one of them)."""

    case_id: str
    presence: str                     # both, added (only in B), removed (only in A)
    status_a: str | None
    status_b: str | None
    device: str | None = None          # the case's device (profile name, or the backend for a
    backend: str | None = None         # host run) and backend: the terminal table's groups
    host_p50_a_ms: float | None = None
    host_p50_b_ms: float | None = None
    ratio: float | None = None        # median(B) / median(A) of host warm latency
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str = "n/a"
    device_a_ms: float | None = None
    device_b_ms: float | None = None
    size_a_kb: float | None = None
    size_b_kb: float | None = None
    host_peak_a_mb: float | None = None
    host_peak_b_mb: float | None = None
    memory_a_mb: float | None = None       # predicted device memory
    memory_b_mb: float | None = None
    sustained_a_ms: float | None = None   # issue 3's optional figures, None when absent
    sustained_b_ms: float | None = None
    energy_a_mj: float | None = None
    energy_b_mj: float | None = None
    fits_a: bool | None = None
    fits_b: bool | None = None
    metric: str | None = None
    quality_a: float | None = None
    quality_b: float | None = None
    yardstick: str | None = None          # how the prediction's yardstick changed, if it did
    unstable_a: bool | None = None        # warm samples spread too widely to trust (each side)
    unstable_b: bool | None = None
    regressions: tuple[str, ...] = field(default=())
    changes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")


def _rel(a: float | None, b: float | None) -> float | None:
    return (b - a) / a if a and b is not None else None


# float rounding between writers: within it two figures are the same figure
SAME_RTOL = 1e-6
# An artifact that grows by less than this (a doc string, node names, metadata) is listed as
# a change, not judged a regression: the bytes a device loads barely move.
SIZE_TOLERANCE = 0.005


@dataclass(frozen=True)
class FigureChanges:
    """What differs between two rows of one case in the figures that are deterministic for an
    artifact and a profile (predictions, fit, size, quality, status), each with its size."""

    regressions: tuple[str, ...]
    changes: tuple[str, ...]
    yardstick: str | None     # how the prediction's yardstick moved, None if it did not


def _differs(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return not math.isclose(a, b, rel_tol=SAME_RTOL, abs_tol=1e-12)


def _num(v: float) -> str:
    """4 significant digits, but whole numbers (byte counts) in full."""
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def figure_changes(a: Measurement, b: Measurement, *, threshold: float = 0.0,
                   quality_tolerance: float = 0.0) -> FigureChanges:
    """Every deterministic figure that differs between rows ``a`` and ``b`` of one case.

    A prediction, memory or size change of more than ``threshold`` (relative; 0: any change
    beyond float rounding) is listed, as a regression when it got worse (an artifact only when
    it grew by more than :data:`SIZE_TOLERANCE`), unless the
    prediction's yardstick (emulator version, profile figures) changed: then it is a change
    with the reason (the model did not get slower, the ruler moved; sizes are no prediction
    and are judged anyway). A quality drop beyond ``quality_tolerance`` (metric units) is a
    regression, any other quality difference a change; ok -> anything else is a regression.
    ``harness compare`` and ``harness gate`` both judge figures with this function.
    """
    regressions: list[str] = []
    changes: list[str] = []
    yardstick = yardstick_change(a, b)
    pa, pb = a.predicted, b.predicted
    size_a = a.artifact.size_bytes if a.artifact else None
    size_b = b.artifact.size_bytes if b.artifact else None
    figures = (("predicted device latency", pa.latency_ms, pb.latency_ms, "ms", True),
               ("predicted sustained latency", pa.sustained_latency_ms,
                pb.sustained_latency_ms, "ms", True),
               ("predicted energy", pa.energy_mj, pb.energy_mj, "mJ", True),
               ("predicted device memory", pa.peak_memory_mb, pb.peak_memory_mb, "MB", True),
               ("artifact size", size_a, size_b, "bytes", False))
    for what, va, vb, unit, predicted in figures:
        if not _differs(va, vb):
            continue
        if va is None or vb is None:
            changes.append(f"{what} {va} -> {vb}")
            continue
        rel = (vb - va) / va if va else math.inf
        if abs(rel) <= threshold:
            continue
        text = f"{what} {_num(va)} -> {_num(vb)} {unit}" + (f" ({100 * rel:+.2f}%)" if va else "")
        if predicted and yardstick:
            changes.append(f"{text} (yardstick changed: {yardstick})")
        elif not predicted and rel <= SIZE_TOLERANCE:
            changes.append(text)
        else:
            (regressions if vb > va else changes).append(text)
    if pa.fits is not None and pb.fits is not None and pa.fits != pb.fits:
        text = "no longer fits the app memory cap" if pa.fits else "now fits the app memory cap"
        if pa.fits and not yardstick:
            regressions.append(text)
        else:
            changes.append(text + (f" (yardstick changed: {yardstick})" if yardstick else ""))
    qa, qb = a.quality_value, b.quality_value
    if _differs(qa, qb):
        qm = b.quality or a.quality
        metric = qm.metric if qm else "quality"
        if qa is None or qb is None:
            changes.append(f"{metric} {qa} -> {qb}")
        else:
            higher = qm is None or qm.higher_is_better is not False
            gain = (qb - qa) if higher else (qa - qb)
            text = f"{metric} {qa:.4f} -> {qb:.4f} ({qb - qa:+.4f})"
            (regressions if gain < -quality_tolerance else changes).append(text)
    if a.status != b.status:
        text = f"status {a.status} -> {b.status}"
        (regressions if a.status == "ok" else changes).append(text)
    return FigureChanges(regressions=tuple(regressions), changes=tuple(changes),
                         yardstick=yardstick)


def yardstick_change(a: Measurement, b: Measurement) -> str | None:
    """How the prediction's yardstick differs between the two rows, or None if it does not
    (or cannot be told: rows written before provenance was recorded)."""
    pa, pb = a.provenance, b.provenance
    diffs = []
    if pa.emulator_version and pb.emulator_version and pa.emulator_version != pb.emulator_version:
        diffs.append(f"emulator {pa.emulator_version} -> {pb.emulator_version}")
    if pa.profile_sha256 and pb.profile_sha256 and pa.profile_sha256 != pb.profile_sha256:
        diffs.append("device profile figures changed (recalibrated or edited)")
    return "; ".join(diffs) or None


def compare_case(case_id: str, a: Measurement | None, b: Measurement | None,
                 opts: CompareOptions) -> CaseComparison:
    """Compare one case; ``a`` or ``b`` is None when the case is missing from that run.

    Prediction changes count as regressions only when both rows were predicted with the same
    yardstick (emulator version and profile figures); otherwise they are reported as changes
    with the reason, since the model did not get slower, the ruler moved.
    """
    import numpy as np

    presence = "both" if a and b else ("added" if b else "removed")
    out: dict[str, Any] = {"case_id": case_id, "presence": presence,
                           "status_a": a.status if a else None,
                           "status_b": b.status if b else None}
    either = b or a
    if either is not None:
        out.update(device=either.device_label, backend=either.backend)
    regressions: list[str] = []
    changes: list[str] = []
    sa = a.samples_ns() if a else ()
    sb = b.samples_ns() if b else ()
    from harness.report.stats import sample_stats

    if sa:
        out["host_p50_a_ms"] = float(np.median(sa)) / 1e6
        st = sample_stats(sa)
        out["unstable_a"] = st.unstable() if st else None
    if sb:
        out["host_p50_b_ms"] = float(np.median(sb)) / 1e6
        st = sample_stats(sb)
        out["unstable_b"] = st.unstable() if st else None
    if sa and sb:
        ci = median_ratio_ci(sa, sb, confidence=opts.confidence)
        out.update(ratio=ci.ratio, ci_low=ci.low, ci_high=ci.high)
        if ci.low > 1 + opts.threshold:
            out["verdict"] = "slower"
            regressions.append(f"host latency x{ci.ratio:.2f}")
        elif ci.high < 1 - opts.threshold:
            out["verdict"] = "faster"
            changes.append(f"host latency x{ci.ratio:.2f}")
        else:
            out["verdict"] = "same"
    yardstick = yardstick_change(a, b) if a and b else None
    out["yardstick"] = yardstick

    def figures(m: Measurement | None) -> dict[str, float | None]:
        if m is None:
            return {}
        p = m.predicted
        return {"device": p.latency_ms, "sustained": p.sustained_latency_ms,
                "energy": p.energy_mj, "memory": p.peak_memory_mb,
                "size": m.artifact.size_bytes / 1024
                if m.artifact and m.artifact.size_bytes is not None else None,
                "host_peak": m.measured.peak_memory_mb if m.measured else None}

    # the figures side by side for the tables (host peak RSS moves by a few hundred KB
    # between identical runs: reported, never judged)
    fa, fb = figures(a), figures(b)
    for key, unit in (("device", "ms"), ("sustained", "ms"), ("energy", "mj"), ("size", "kb"),
                      ("host_peak", "mb"), ("memory", "mb")):
        out[f"{key}_a_{unit}"], out[f"{key}_b_{unit}"] = fa.get(key), fb.get(key)
    out["fits_a"] = a.predicted.fits if a else None
    out["fits_b"] = b.predicted.fits if b else None
    qa = a.quality_value if a else None
    qb = b.quality_value if b else None
    qm = (b.quality if b and b.quality else None) or (a.quality if a else None)
    out["metric"] = qm.metric if qm else None
    out["quality_a"], out["quality_b"] = qa, qb
    if a and b:
        judged = figure_changes(a, b, threshold=opts.threshold,
                                quality_tolerance=opts.quality_tolerance)
        regressions += judged.regressions
        changes += judged.changes
    if presence == "removed":
        regressions.append("case missing from B")
    elif presence == "added":
        changes.append("new case")
    return CaseComparison(**out, regressions=tuple(regressions), changes=tuple(changes))


@dataclass(frozen=True)
class Comparison:
    """Two runs compared: per-case results and the notes a reader needs."""

    run_a: str
    run_b: str
    options: CompareOptions
    cases: tuple[CaseComparison, ...]
    notes: tuple[str, ...]

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.regressions]

    def fails(self, fail_on: str) -> bool:
        """Whether CI should fail: on any regression, on any change, or never."""
        if fail_on not in FAIL_ON:
            raise InputError(f"expected one of {FAIL_ON}, got {fail_on!r}", field="--fail-on")
        if fail_on == "regression":
            return bool(self.regressions)
        if fail_on == "change":
            return any(c.regressions or c.changes for c in self.cases)
        return False


def compare_runs(a: Run, b: Run, options: CompareOptions | None = None) -> Comparison:
    """Compare run B against baseline run A, case by case."""
    opts = options or CompareOptions()
    rows_a = {m.case_id: m for m in a.measurements}
    rows_b = {m.case_id: m for m in b.measurements}
    ids = list(dict.fromkeys([*rows_a, *rows_b]))
    cases = tuple(compare_case(i, rows_a.get(i), rows_b.get(i), opts) for i in ids)
    notes = []
    ha, hb = a.manifest.get("host", {}), b.manifest.get("host", {})
    for key in ("cpu_model", "logical_cpus"):
        if ha.get(key) != hb.get(key):
            notes.append(f"the runs were measured on different hosts ({key}: {ha.get(key)} vs "
                         f"{hb.get(key)}): host latency ratios compare machines, not releases")
    ta = (a.manifest.get("measure") or {}).get("threads")
    tb = (b.manifest.get("measure") or {}).get("threads")
    if ta != tb:
        notes.append(f"threads per case differ ({ta} vs {tb})")
    if not set(rows_a) & set(rows_b):
        notes.append("the runs have no case in common")
    sa, sb = (a.manifest.get("suite") or {}).get("name"), (b.manifest.get("suite") or {}).get(
        "name")
    if sa != sb:
        notes.append(f"the runs swept different suites ({sa} vs {sb}): only common cases "
                     "are compared")
    ea, eb = a.manifest.get("eval_size", "small"), b.manifest.get("eval_size", "small")
    if ea != eb:
        notes.append(f"quality was evaluated on different data sizes ({ea} vs {eb}): quality "
                     "changes may come from the data, not the model")
    moved = sorted({c.yardstick for c in cases if c.yardstick})
    if moved:
        notes.append("the emulator's yardstick changed between the runs ("
                     + "; ".join(moved) + "): prediction changes are listed as changes, "
                     "not regressions")
    return Comparison(run_a=str(a.manifest.get("run_id", a.path.name)),
                      run_b=str(b.manifest.get("run_id", b.path.name)), options=opts,
                      cases=cases, notes=tuple(notes))


def _f(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    if a is None and b is None:
        return ""
    if a is not None and b is not None and format(a, fmt) == format(b, fmt):
        return format(a, fmt)
    return f"{_f(a, fmt) or '-'} → {_f(b, fmt) or '-'}"


def to_markdown(cmp: Comparison) -> str:
    """Markdown for release notes and CI step summaries."""
    from tabulate import tabulate

    from harness.report.markup import md

    counts = {v: sum(c.verdict == v for c in cmp.cases) for v in VERDICTS}
    o = cmp.options
    lines = [f"## `{cmp.run_b}` vs `{cmp.run_a}`", "",
             f"{len(cmp.cases)} cases: **{counts['slower']} slower**, {counts['faster']} "
             f"faster, {counts['same']} same (host latency); **{len(cmp.regressions)} with a "
             f"regression**.", "",
             f"A latency verdict needs the {100 * o.confidence:.0f}% bootstrap confidence "
             f"interval of median(B)/median(A) to lie beyond ±{100 * o.threshold:.0f}%; "
             f"quality changes smaller than {o.quality_tolerance:g} are ignored.", ""]
    lines += [f"> note: {md(n)}" for n in cmp.notes]
    if cmp.notes:
        lines.append("")
    rows = []
    for c in cmp.cases:
        ci = f"[{c.ci_low:.3f}, {c.ci_high:.3f}]" if c.ci_low is not None else ""
        ratio = f"{c.ratio:.3f}" if c.ratio is not None else ""
        verdict = f"**{c.verdict}**" if c.verdict in ("slower", "faster") else c.verdict
        yn = {True: "yes", False: "NO", None: "-"}
        fits = yn[c.fits_a] if c.fits_a == c.fits_b else f"{yn[c.fits_a]} → {yn[c.fits_b]}"
        rows.append([md(c.case_id), c.status_a or "-", c.status_b or "-",
                     _f(c.host_p50_a_ms, ".4f") + (" (unstable)" if c.unstable_a else ""),
                     _f(c.host_p50_b_ms, ".4f") + (" (unstable)" if c.unstable_b else ""),
                     ratio, ci, verdict,
                     _pair(c.device_a_ms, c.device_b_ms, ".4f"),
                     _pair(c.sustained_a_ms, c.sustained_b_ms, ".4f"),
                     _pair(c.energy_a_mj, c.energy_b_mj, ".4f"),
                     _pair(c.size_a_kb, c.size_b_kb, ".1f"),
                     _pair(c.host_peak_a_mb, c.host_peak_b_mb, ".1f"),
                     _pair(c.memory_a_mb, c.memory_b_mb, ".2f"),
                     fits,
                     _pair(c.quality_a, c.quality_b, ".4f"),
                     md("; ".join(c.regressions))])
    headers = ["case", "status A", "status B", "host p50 A (ms)", "host p50 B (ms)",
               "B/A", f"{100 * o.confidence:.0f}% CI", "verdict", "device pred. (ms)",
               "device sustained (ms)", "energy (mJ)", "size (KB)", "host peak (MB)",
               "device memory (MB)", "fits", "quality", "regression"]
    # drop columns no case has (sustained latency and energy before the run models them)
    keep = [i for i, h in enumerate(headers)
            if h in ("case", "verdict", "regression") or any(r[i] for r in rows)]
    lines.append(tabulate([[r[i] for i in keep] for r in rows],
                          headers=[headers[i] for i in keep], tablefmt="github",
                          disable_numparse=True))
    return "\n".join(lines) + "\n"


def _sig_pair(a: float | None, b: float | None) -> str | None:
    """``a → b`` with three significant digits, one value when they read the same."""
    from harness.report.term import sig

    sa, sb = sig(a), sig(b)
    if sa is None and sb is None:
        return None
    return sa if sa == sb else f"{sa or '-'} → {sb or '-'}"


def _cell_text(c: CaseComparison) -> str:
    """The case id without the device and backend its group line names."""
    text = c.case_id.removesuffix(f"@{c.backend}")
    return text.removesuffix(f"/{c.device}")


def to_table(cmp: Comparison, *, width: int | None = None, wide: bool = False) -> str:
    """The comparison for a terminal: the summary lines, then one row per case fitted to
    ``width`` (default: the terminal's; ``wide``: every column)."""
    import textwrap

    from harness.report.term import Column, Heading, sig, table, terminal_width

    width = terminal_width(width)
    counts = {v: sum(c.verdict == v for c in cmp.cases) for v in VERDICTS}
    o = cmp.options
    lines = [f"{cmp.run_b} vs {cmp.run_a}:",
             f"{len(cmp.cases)} cases: {counts['slower']} slower, {counts['faster']} faster, "
             f"{counts['same']} same (host latency); {len(cmp.regressions)} with a regression.",
             f"A latency verdict needs the {100 * o.confidence:.0f}% bootstrap confidence "
             f"interval of median(B)/median(A) to lie beyond ±{100 * o.threshold:.0f}%; "
             f"quality changes smaller than {o.quality_tolerance:g} are ignored.",
             *(f"note: {n}" for n in cmp.notes)]
    out = [textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)
           for line in lines]
    yn = {True: "yes", False: "NO", None: "-"}
    # Given up when the terminal is narrow, highest first: the secondary figures, the
    # interval (the verdict sums it up), fits (a lost fit is in the regression text), then
    # the regression text and the case id wrap, then the device prediction and quality go.
    cols = [Column("case", wrap=True, priority=3), Column("status"),
            Column("host p50 A (ms)", "right"), Column("host p50 B (ms)", "right"),
            Column("B/A", "right"), Column(f"{100 * o.confidence:.0f}% CI", priority=7),
            Column("verdict"), Column("device (ms)", "right", priority=5),
            Column("sustained (ms)", "right", priority=10),
            Column("energy (mJ)", "right", priority=11), Column("size (KB)", "right", priority=8),
            Column("host peak (MB)", "right", priority=12),
            Column("device memory (MB)", "right", priority=9), Column("fits", priority=6),
            Column("quality", "right", priority=1), Column("regression", wrap=True, priority=4)]
    # Rows grouped by device and backend (a line above each group, when there are several)
    # rather than repeated in every case id.
    group = [k for k in ("device", "backend") if len({getattr(c, k) for c in cmp.cases}) > 1]
    rows: list[list[str | None] | Heading] = []
    last = None
    for c in sorted(cmp.cases, key=lambda c: tuple(str(getattr(c, k)) for k in group)):
        key = tuple(getattr(c, k) for k in group)
        if group and key != last:
            rows.append(Heading(", ".join(f"{k}: {getattr(c, k)}" for k in group)))
            last = key
        status = (c.status_a or "-") if c.status_a == c.status_b else (
            f"{c.status_a or '-'} → {c.status_b or '-'}")
        rows.append([_cell_text(c) if group else c.case_id, status,
                     (sig(c.host_p50_a_ms) or "-") + ("*" if c.unstable_a else ""),
                     (sig(c.host_p50_b_ms) or "-") + ("*" if c.unstable_b else ""),
                     None if c.ratio is None else f"{c.ratio:.3f}",
                     None if c.ci_low is None else f"{c.ci_low:.3f}-{c.ci_high:.3f}",
                     c.verdict.upper() if c.verdict == "slower" else c.verdict,
                     _sig_pair(c.device_a_ms, c.device_b_ms),
                     _sig_pair(c.sustained_a_ms, c.sustained_b_ms),
                     _sig_pair(c.energy_a_mj, c.energy_b_mj),
                     _sig_pair(c.size_a_kb, c.size_b_kb),
                     _sig_pair(c.host_peak_a_mb, c.host_peak_b_mb),
                     _sig_pair(c.memory_a_mb, c.memory_b_mb),
                     yn[c.fits_a] if c.fits_a == c.fits_b else f"{yn[c.fits_a]} → {yn[c.fits_b]}",
                     _pair(c.quality_a, c.quality_b, ".4f") or None,
                     "; ".join(c.regressions)])
    # columns no case has a figure in (sustained latency and energy before the run models
    # them) are left out, as in the Markdown table
    cells = [r for r in rows if not isinstance(r, Heading)]
    keep = [i for i, col in enumerate(cols) if col.header in ("case", "verdict", "regression")
            or any(r[i] not in (None, "", "-") for r in cells)]
    out += ["", table([cols[i] for i in keep],
                      [r if isinstance(r, Heading) else [r[i] for i in keep] for r in rows],
                      width=width, wide=wide)]
    if any(c.unstable_a or c.unstable_b for c in cmp.cases):
        out.append(textwrap.fill("* unstable: the warm samples spread too widely to trust "
                                 "(rerun on a quieter machine)", width))
    return "\n".join(out) + "\n"


def to_json(cmp: Comparison) -> str:
    """The comparison as JSON (every field of every case)."""
    return json.dumps({"kind": "edge-harness-comparison", "schema_version": 1,
                       "run_a": cmp.run_a, "run_b": cmp.run_b,
                       "options": asdict(cmp.options), "notes": list(cmp.notes),
                       "cases": [asdict(c) for c in cmp.cases]}, indent=1) + "\n"
