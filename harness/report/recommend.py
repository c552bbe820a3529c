"""Which variant should I ship on this device? Budgets in, ranked variants and rejections out.

A variant (one row of the run for the device) is accepted when it finished ``ok``, fits the
device's app memory cap, and meets every budget given (predicted device latency, predicted
device memory, quality). Accepted variants on the latency-vs-quality Pareto front come
first, fastest first (so quality rises down the list); accepted but dominated variants follow,
each naming a variant that beats it. Every other variant is listed with why it was rejected.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.measurement import Measurement
from harness.errors import InputError, unknown_name
from harness.report.stats import pareto_front
from harness.results import Run

# What "dominated by V" means; the terminal table says it once under the table, not per row.
_DOMINATED = " (as fast or faster, as good or better)"


@dataclass(frozen=True)
class Budgets:
    """What the user asks for; None = no limit."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    min_quality: float | None = None
    sustained: bool = False

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_memory_mb"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise InputError(f"expected a positive number, got {v}",
                                 field="--" + name.replace("_", "-"))


@dataclass(frozen=True)
class Candidate:
    """One variant of the run on the device, with the figures the decision used."""

    case_id: str
    workload: str
    quant: str
    prune: str
    status: str
    latency_ms: float | None
    latency_kind: str                   # "burst" or "sustained"
    # the prediction's 80% range from the calibration (None: no range recorded): a variant is
    # preferred for speed only when its range lies wholly below the other's
    latency_range_ms: tuple[float, float] | None
    peak_memory_mb: float | None
    fits: bool | None
    metric: str | None
    quality: float | None
    size_kb: float | None
    rank: int | None = None             # 1 = best; None when rejected
    pareto: bool = False
    note: str = ""                      # why rejected, or what dominates it

    @property
    def variant(self) -> str:
        return f"{self.quant}/prune-{self.prune}"


@dataclass(frozen=True)
class Recommendation:
    device: str
    budgets: Budgets
    accepted: tuple[Candidate, ...]
    rejected: tuple[Candidate, ...]
    notes: tuple[str, ...]


def _latency(m: Measurement, sustained: bool) -> tuple[float | None, str]:
    pred = m.predicted
    if sustained:
        from harness.report.frame import trace_split

        if m.trace:
            return trace_split(m.trace)["device_sustained_p50_ms"], "sustained"
        if pred.sustained_latency_ms is not None:
            return pred.sustained_latency_ms, "sustained"
    return pred.latency_ms, "burst"


def _candidate(m: Measurement, sustained: bool) -> Candidate:
    pred = m.predicted
    lat, kind = _latency(m, sustained)
    band = pred.detail.get("latency_range_ms")
    scale = (lat / pred.latency_ms) if lat and pred.latency_ms else 1.0  # sustained: same band
    latency_range = (band[0] * scale, band[1] * scale) if isinstance(band, list) \
        and len(band) == 2 else None
    return Candidate(
        case_id=m.case_id, workload=m.workload, quant=m.quant, prune=m.prune, status=m.status,
        latency_ms=lat, latency_kind=kind, latency_range_ms=latency_range,
        peak_memory_mb=pred.peak_memory_mb, fits=pred.fits,
        metric=m.quality.metric if m.quality else None, quality=m.quality_value,
        size_kb=m.artifact.size_bytes / 1024
        if m.artifact and m.artifact.size_bytes is not None else None)


def _higher_is_better(m: Measurement) -> bool:
    return m.quality is None or m.quality.higher_is_better is not False


def _rejection(c: Candidate, m: Measurement, b: Budgets) -> str:
    if c.status != "ok":
        return f"status {c.status}: {m.reason or 'no reason recorded'}"
    if c.latency_ms is None:
        return "no device latency prediction"
    if c.fits is False:
        return (f"does not fit the app memory cap (device memory {c.peak_memory_mb:.1f} MB)"
                if c.peak_memory_mb is not None else "does not fit the app memory cap")
    reasons = []
    if b.max_latency_ms is not None and c.latency_ms > b.max_latency_ms:
        reasons.append(f"{c.latency_kind} latency {c.latency_ms:.4g} ms > {b.max_latency_ms:g}")
    if b.max_memory_mb is not None:
        if c.peak_memory_mb is None:
            reasons.append("no device memory prediction")
        elif c.peak_memory_mb > b.max_memory_mb:
            reasons.append(f"device memory {c.peak_memory_mb:.1f} MB > {b.max_memory_mb:g}")
    if b.min_quality is not None:
        higher = _higher_is_better(m)
        if c.quality is None:
            reasons.append("no quality metric")
        elif (c.quality < b.min_quality) if higher else (c.quality > b.min_quality):
            reasons.append(f"{c.metric} {c.quality:.4f} {'<' if higher else '>'} "
                           f"{b.min_quality:g}")
    return "; ".join(reasons)


def recommend(run: Run, device: str, budgets: Budgets, *, workload: str | None = None
              ) -> Recommendation:
    """Rank the run's variants on ``device`` against ``budgets`` (see the module docstring)."""
    # Only backends that predict the device say whether a variant fits it.
    predicted = [m for m in run.measurements if m.device is not None]
    devices = sorted({m.device for m in predicted if m.device})
    if device not in devices:
        raise unknown_name("device in this run", device, devices, file=run.path)
    rows = [m for m in predicted if m.device == device]
    if workload is not None:
        names = sorted({m.workload for m in rows})
        if workload not in names:
            raise unknown_name("workload in this run", workload, names, file=run.path)
        rows = [m for m in rows if m.workload == workload]
    notes = []
    cands = [_candidate(r, budgets.sustained) for r in rows]
    if budgets.sustained and any(c.latency_kind == "burst" for c in cands if c.status == "ok"):
        notes.append("sustained latency is not available for some or all variants in this run "
                     "(no device_trace / sustained_latency_ms: the emulator of this run did "
                     "not model throttling); their burst prediction is used and marked 'burst'")
    Item = tuple[Candidate, str, Measurement]
    accepted: list[Item] = []
    rejected: list[Item] = []
    for c, r in zip(cands, rows, strict=True):
        why = _rejection(c, r, budgets)
        (rejected if why else accepted).append((c, why, r))
    out: list[Candidate] = []
    by_workload: dict[str, list[Item]] = {}
    for item in accepted:
        by_workload.setdefault(item[0].workload, []).append(item)
    for wl in sorted(by_workload):
        items = by_workload[wl]
        sign = [1 if _higher_is_better(r) else -1 for _, _, r in items]
        # no quality metric: every variant counts as equal quality, so latency decides
        pts = [(c.latency_ms or 0.0, s * c.quality if c.quality is not None else 0.0)
               for (c, _, _), s in zip(items, sign, strict=True)]
        cands = [c for c, _, _ in items]
        front = _front(cands, pts)
        order = sorted(range(len(items)), key=lambda i: (not front[i], pts[i][0], -pts[i][1],
                                                         items[i][0].size_kb or 0.0))
        for i in order:
            c = items[i][0]
            note = ""
            if not front[i]:
                beaters = [items[j][0] for j in order if front[j] and pts[j][0] <= pts[i][0]
                           and pts[j][1] >= pts[i][1]]
                note = (f"dominated by {beaters[0].variant}{_DOMINATED}" if beaters
                        else "dominated")
            out.append(_with(c, rank=len(out) + 1, pareto=front[i], note=note))
    if len(by_workload) > 1:
        notes.append("several workloads: each is ranked on its own; pass --workload to pick one")
    return Recommendation(device=device, budgets=budgets, accepted=tuple(out),
                          rejected=tuple(_with(c, note=why) for c, why, _ in rejected),
                          notes=tuple(notes))


def _front(cands: list[Candidate], pts: list[tuple[float, float]]) -> list[bool]:
    """Pareto front on (latency, quality). Where predictions carry a range, a latency
    difference inside the ranges is no difference: one variant beats another on speed only
    when its range lies wholly below the other's, so an advantage the emulator cannot resolve
    never decides the ranking."""
    if not any(c.latency_range_ms for c in cands):
        return pareto_front(pts)

    def faster(a: int, b: int) -> bool | None:   # True: a clearly faster; None: a tie
        ra, rb = cands[a].latency_range_ms, cands[b].latency_range_ms
        if ra and rb:
            if ra[1] < rb[0]:
                return True
            if rb[1] < ra[0]:
                return False
            return None
        return pts[a][0] < pts[b][0] if pts[a][0] != pts[b][0] else None

    out = []
    for i in range(len(cands)):
        dominated = False
        for j in range(len(cands)):
            if j == i:
                continue
            f = faster(j, i)
            better_q = pts[j][1] > pts[i][1]
            if f is not False and pts[j][1] >= pts[i][1] and (f is True or better_q):
                dominated = True
                break
        out.append(not dominated)
    return out


def _with(c: Candidate, **changes: Any) -> Candidate:
    return Candidate(**{**asdict(c), **changes})


def _budget_line(rec: Recommendation) -> str:
    b = rec.budgets
    asked = [f"latency ≤ {b.max_latency_ms:g} ms" if b.max_latency_ms is not None else "",
             f"device memory ≤ {b.max_memory_mb:g} MB" if b.max_memory_mb is not None else "",
             f"quality ≥ {b.min_quality:g}" if b.min_quality is not None else "",
             "sustained latency" if b.sustained else "burst latency"]
    return f"Device {rec.device}; budgets: {', '.join(a for a in asked if a)}."


def _best_line(best: Candidate) -> str:
    return (f"Recommended: {best.workload} {best.variant} ({best.latency_ms:.4g} ms "
            f"{best.latency_kind}" + (f", {best.metric} {best.quality:.4f}"
                                      if best.quality is not None else "") + ")")


def to_table(rec: Recommendation, *, width: int | None = None, wide: bool = False) -> str:
    """The recommendation for a terminal: accepted variants best first, then the rejections,
    fitted to ``width`` (default: the terminal's; ``wide``: every column)."""
    import textwrap

    from harness.report.term import Column, fixed, sig, table, terminal_width

    width = terminal_width(width)
    lines = [textwrap.fill(_budget_line(rec), width)]
    lines += [textwrap.fill(f"note: {n}", width, subsequent_indent="  ") for n in rec.notes]
    if rec.accepted:
        lines += [textwrap.fill(_best_line(rec.accepted[0]), width), ""]
        # Given up when the terminal is narrow, highest first: metric, kind, the Pareto flag,
        # size, then the note and the variant wrap, then device memory goes.
        cols = [Column("rank", "right"), Column("workload"),
                Column("variant", wrap=True, priority=2), Column("Pareto", priority=5),
                Column("latency (ms)", "right"), Column("kind", priority=6),
                Column("device memory (MB)", "right", priority=1),
                Column("size (KB)", "right", priority=4), Column("quality", "right"),
                Column("metric", priority=7), Column("note", wrap=True, priority=3)]
        lines.append(table(cols, [[str(c.rank), c.workload, c.variant,
                                   "yes" if c.pareto else "", sig(c.latency_ms),
                                   c.latency_kind, sig(c.peak_memory_mb), sig(c.size_kb),
                                   fixed(c.quality, 4), c.metric,
                                   c.note.removesuffix(_DOMINATED)]
                                  for c in rec.accepted], width=width, wide=wide))
        if any(c.note.endswith(_DOMINATED) for c in rec.accepted):
            lines.append(textwrap.fill("dominated by V: V is as fast or faster and as good or "
                                       "better", width))
    else:
        lines.append("No variant meets the budgets.")
    if rec.rejected:
        lines += ["", "Rejected:"]
        lines.append(table([Column("workload"), Column("variant", wrap=True, priority=1),
                            Column("reason", wrap=True, priority=2, min_width=24)],
                           [[c.workload, c.variant, c.note] for c in rec.rejected],
                           width=width, wide=wide))
    return "\n".join(lines) + "\n"


def to_markdown(rec: Recommendation) -> str:
    """GitHub Markdown tables: accepted variants best first, then the rejections."""
    from tabulate import tabulate

    from harness.report.markup import md

    lines = [_budget_line(rec), ""]
    lines += [f"note: {n}" for n in rec.notes]
    if rec.accepted:
        lines += [md(_best_line(rec.accepted[0])), ""]
        rows = [[c.rank, md(c.workload), md(c.variant), "yes" if c.pareto else "",
                 f"{c.latency_ms:.4g}", c.latency_kind,
                 "" if c.peak_memory_mb is None else f"{c.peak_memory_mb:.1f}",
                 "" if c.size_kb is None else f"{c.size_kb:.1f}",
                 "" if c.quality is None else f"{c.quality:.4f}", md(c.metric or ""),
                 md(c.note)] for c in rec.accepted]
        lines.append(tabulate(rows, headers=["rank", "workload", "variant", "Pareto",
                                             "latency (ms)", "kind", "device memory (MB)",
                                             "size (KB)", "quality", "metric", "note"],
                              tablefmt="github", disable_numparse=True))
    else:
        lines.append("No variant meets the budgets.")
    if rec.rejected:
        lines += ["", "Rejected:", ""]
        lines.append(tabulate([[md(c.workload), md(c.variant), md(c.note)]
                               for c in rec.rejected],
                              headers=["workload", "variant", "reason"], tablefmt="github",
                              disable_numparse=True))
    return "\n".join(lines) + "\n"


def to_json(rec: Recommendation) -> str:
    return json.dumps({"kind": "edge-harness-recommendation", "device": rec.device,
                       "budgets": asdict(rec.budgets), "notes": list(rec.notes),
                       "accepted": [asdict(c) for c in rec.accepted],
                       "rejected": [asdict(c) for c in rec.rejected]}, indent=1) + "\n"
