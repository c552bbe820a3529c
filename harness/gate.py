"""``harness gate``: is the candidate run's model slower than the baseline's, on this machine, now?

``harness compare`` judges latency from the samples two runs stored, so it must allow for the
drift between two runs of a shared machine (up to 9.8% here: docs/comparing-runs.md) and can
only see a 10% change. The gate re-measures instead: for each case ok in both runs, both
artifacts are loaded in one worker process and timed in interleaved blocks (rounds ordered
ABBA, BAAB, ... so a drift over the round cancels), each round giving one paired log ratio
log(B/A). The median of those, with a bootstrap confidence interval and one-sided p-values
against a noise band of ±threshold (:func:`harness.report.stats.paired_median_test`), decides:
``regression`` / ``improvement`` when Holm's procedure over the cases rejects "within the band"
at ``alpha``, ``same`` otherwise. What happens after the first pass is one sequential rule,
:func:`judge_case`, used by the gate and by its self-test alike: a suspected regression is
re-measured in a fresh worker with more rounds and counts only when that re-run, on its own
data, also finds it (``confirmed``); a first pass that is not significant but whose ratio lies
beyond the band gets one extended fresh measurement, and goes to confirmation if that one is
significant. A regression always needs two independent significant measurements.

Everything else in the rows is deterministic for an artifact and a device profile (predicted
latency, sustained latency, energy, memory, fit, size, quality, status): it is compared
exactly (relative tolerance :data:`harness.report.compare.SAME_RTOL` for float rounding,
:func:`harness.report.compare.figure_changes`, as ``harness compare`` does) and every change
is listed; a worsening counts as a regression unless the emulator's yardstick moved between
the runs (provenance), which is reported as such.

Artifacts are found beside the baseline first (``harness baseline promote`` copies them to
``<baseline>/artifacts/<key>/``), then in the artifact cache, then at the row's own path; a
file whose content hash differs from the row's is not used.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.report.compare import figure_changes
from harness.report.stats import PairedTest, holm_adjusted, paired_median_test

VERDICTS = ("regression", "improvement", "same", "n/a")

# Measured on the 2-core CI VM with `harness gate --self-test` (docs/comparing-runs.md).
DEFAULT_THRESHOLD = 0.02
DEFAULT_ROUNDS = 20
DEFAULT_BLOCK = 5          # samples per block; a sample lasts >= 0.2 ms (measure.choose_loops)
DEFAULT_ALPHA = 0.05       # family-wise error over the cases (Holm), before confirmation
DEFAULT_WARMUP = 20
DEFAULT_QUALITY_TOLERANCE = 0.0
FOLLOWUP_FACTOR = 2        # follow-up measurements take this many times the first pass's rounds


@dataclass(frozen=True)
class GateOptions:
    rounds: int = DEFAULT_ROUNDS
    block: int = DEFAULT_BLOCK
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    confidence: float = 0.95
    warmup: int = DEFAULT_WARMUP
    confirm: bool = True
    quality_tolerance: float = DEFAULT_QUALITY_TOLERANCE
    timeout_s: float = 600.0
    # rounds of the follow-up measurements (extension and confirmation); None: FOLLOWUP_FACTOR
    # x rounds, because the confirming re-run with only `rounds` lost 7 points of detection
    # under load (docs/comparing-runs.md)
    followup_rounds: int | None = None
    extend: bool = True         # re-measure an inconclusive first pass beyond the band

    def __post_init__(self) -> None:
        if self.rounds < 4:
            raise InputError(f"expected at least 4 rounds, got {self.rounds}", field="--rounds")
        if self.followup_rounds is not None and self.followup_rounds < 4:
            raise InputError(f"expected at least 4 follow-up rounds, got "
                             f"{self.followup_rounds}", field="followup_rounds")
        if self.block < 1:
            raise InputError("expected a block of at least 1 sample", field="--block")
        if not 0 <= self.threshold < 1:
            raise InputError(f"expected 0 <= threshold < 1, got {self.threshold}",
                             field="--threshold")
        if not 0 < self.alpha < 0.5:
            raise InputError(f"expected 0 < alpha < 0.5, got {self.alpha}", field="--alpha")
        if self.quality_tolerance < 0:
            raise InputError("expected a non-negative quality tolerance",
                             field="--quality-tolerance")

    @property
    def followup(self) -> int:
        """Rounds of an extended or confirming measurement."""
        return self.followup_rounds or FOLLOWUP_FACTOR * self.rounds


@dataclass(frozen=True)
class GateCase:
    """One case: the re-measured host latency verdict and the deterministic changes."""

    case_id: str
    verdict: str = "n/a"
    ratio: float | None = None            # exp(median of per-round log(B/A))
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None          # Holm-adjusted, two-sided against the noise band
    rounds: int | None = None             # of the first pass
    host_a_ms: float | None = None        # median per call, this machine, this job
    host_b_ms: float | None = None
    suspected: bool = False               # first pass (or its extension) said regression
    extended: bool = False                # inconclusive first pass beyond the band: re-measured
    extension_rounds: int | None = None
    extension_ratio: float | None = None
    extension_ci_low: float | None = None
    extension_ci_high: float | None = None
    extension_p_value: float | None = None  # two-sided, judged at alpha / timed cases
    confirmed: bool | None = None         # the re-run agreed (None: no re-run)
    rerun_rounds: int | None = None
    rerun_ratio: float | None = None
    rerun_ci_low: float | None = None
    rerun_ci_high: float | None = None
    rerun_p_value: float | None = None    # two-sided, judged at alpha
    rounds_total: int | None = None       # every timed round of the case, all measurements
    identical: bool = False               # same artifact content: nothing to time
    yardstick: str | None = None
    reason: str = ""                      # why no verdict, or what the re-run said
    regressions: tuple[str, ...] = field(default=())
    changes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


@dataclass(frozen=True)
class GateResult:
    baseline: str
    candidate: str
    options: GateOptions
    cases: tuple[GateCase, ...]
    notes: tuple[str, ...]

    @property
    def regressions(self) -> list[GateCase]:
        return [c for c in self.cases if c.regressed]


# --------------------------------------------------------------------------- deterministic


def deterministic_changes(a: Any, b: Any, *, quality_tolerance: float = 0.0
                          ) -> tuple[list[str], list[str], str | None]:
    """(regressions, changes, yardstick) between two rows (Measurements) of one case: every
    figure that differs beyond float rounding (:func:`harness.report.compare.figure_changes`
    with no threshold: these figures do not drift between runs, so any change is real)."""
    found = figure_changes(a, b, threshold=0.0, quality_tolerance=quality_tolerance)
    return list(found.regressions), list(found.changes), found.yardstick


# --------------------------------------------------------------------------- artifacts


def find_artifact(m: Any, *, run_dir: Path, cache_dir: Path) -> tuple[Path | None, list[str]]:
    """Where a row's artifact is now: beside the run (a promoted baseline), in the cache, at
    the row's own path; a file whose content hash differs from the row's is skipped.
    Returns the path (or None) and every place looked at."""
    from harness.cache import artifact_sha256

    facts = m.artifact
    if facts is None or not facts.key:
        return None, ["the row names no artifact"]
    filename = Path(facts.path).name if facts.path else "model.onnx"
    candidates = [run_dir / "artifacts" / facts.key / filename,
                  cache_dir / "artifacts" / facts.key / filename]
    if facts.path:
        candidates.append(Path(facts.path))
    looked = []
    for p in candidates:
        if not p.is_file():
            looked.append(f"{p} (absent)")
            continue
        if facts.sha256 and artifact_sha256(p) != facts.sha256:
            looked.append(f"{p} (content differs from the row's sha256)")
            continue
        return p, looked
    return None, looked


# --------------------------------------------------------------------------- judging

# A follow-up measurement: rounds and stage ("extend" or "confirm") -> the test of a fresh
# measurement, or None and why it failed.
Measure = Callable[[int, str], tuple[PairedTest | None, str]]


@dataclass(frozen=True)
class Judgement:
    """What :func:`judge_case` decided for one case, and every measurement it took."""

    verdict: str                           # "regression", "improvement" or "same"
    first: PairedTest
    p_first: float                         # as judged: Holm-adjusted in the gate
    suspected: bool = False                # first pass or extension significantly slower
    extension: PairedTest | None = None    # the extended measurement, when one was taken
    confirmation: PairedTest | None = None  # the confirming re-run, when one was taken
    failure: str = ""                      # a follow-up measurement that could not be taken

    @property
    def extended(self) -> bool:
        return self.extension is not None

    @property
    def confirmed(self) -> bool | None:
        """Did the confirming re-run agree (None: there was none)?"""
        if self.confirmation is None:
            return None
        return self.verdict == "regression"

    @property
    def rounds_total(self) -> int:
        return sum(t.n for t in (self.first, self.extension, self.confirmation) if t is not None)


def _slower(t: PairedTest, alpha: float) -> bool:
    return t.p_value <= alpha and t.direction == "slower"


def judge_case(first: PairedTest, *, p_first: float, opts: GateOptions, measure: Measure,
               family: int = 1) -> Judgement:
    """The gate's sequential rule for one case, after the first pass (the self-test calls it
    too, so it measures exactly what the gate does).

    1. ``p_first`` (Holm-adjusted over the cases in the gate) <= alpha and faster:
       ``improvement`` (nothing is failed on it, so it is not re-measured).
    2. ``p_first`` <= alpha and slower: suspected. A fresh measurement of
       ``opts.followup`` rounds (2R by default: more power where the re-run lost it) is judged
       on its own data at alpha; ``regression`` only when it is significantly slower too.
    3. Not significant, but the point estimate lies beyond the band (ratio > 1 + threshold):
       one extended fresh measurement of ``opts.followup`` rounds, judged on its own data at
       alpha / ``family`` (Bonferroni over the timed cases, because which cases get extended
       depends on the first pass and the extensions are a second family of tests); if it is
       significantly slower the case is suspected and goes to confirmation as in 2. The first
       pass's data are not pooled in: the extension is independent evidence.
    4. Otherwise ``same``.

    A regression thus needs two independent significant measurements: for a case with no
    change beyond the band, P(false alarm) <= P(first) x alpha + P(extension) x alpha <=
    2 alpha^2 (0.5% at alpha 0.05), as long as fresh measurements are independent. Without
    confirmation (``opts.confirm`` False) one significant measurement counts. A follow-up
    measurement that fails is a ``regression`` with the reason, as a failed first pass is.
    """
    alpha = opts.alpha
    if p_first <= alpha and first.direction == "faster":
        return Judgement(verdict="improvement", first=first, p_first=p_first)
    extension = None
    if not (p_first <= alpha and first.direction == "slower"):
        if not (opts.extend and first.ratio > 1 + opts.threshold):
            return Judgement(verdict="same", first=first, p_first=p_first)
        extension, why = measure(opts.followup, "extend")
        if extension is None:
            return Judgement(verdict="regression", first=first, p_first=p_first, failure=why)
        if not _slower(extension, alpha / max(1, family)):
            return Judgement(verdict="same", first=first, p_first=p_first, extension=extension)
    if not opts.confirm:
        return Judgement(verdict="regression", first=first, p_first=p_first, suspected=True,
                         extension=extension)
    confirmation, why = measure(opts.followup, "confirm")
    if confirmation is None:
        return Judgement(verdict="regression", first=first, p_first=p_first, suspected=True,
                         extension=extension, failure=why)
    return Judgement(verdict="regression" if _slower(confirmation, alpha) else "same",
                     first=first, p_first=p_first, suspected=True, extension=extension,
                     confirmation=confirmation)


# --------------------------------------------------------------------------- measuring


def gate_task(a: Path, b: Path, opts: GateOptions, *, threads: int,
              shapes_a: dict[str, list[int]] | None = None,
              shapes_b: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """The worker task (kind ``gate``) that times ``a`` against ``b`` in one process."""
    return {"kind": "gate", "a": str(a), "b": str(b), "threads": threads,
            "rounds": opts.rounds, "block": opts.block, "warmup": opts.warmup,
            "shapes_a": shapes_a, "shapes_b": shapes_b}


def run_gate_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker side of the ``gate`` task: load both artifacts, warm them up, choose the calls
    per sample from A (so both sides take the same number of calls per sample), time
    interleaved rounds."""
    from harness.measure import choose_loops, interleaved_rounds, synthetic_feeds
    from harness.runtimes import load

    a, b = Path(task["a"]), Path(task["b"])
    for p in (a, b):
        if p.suffix != ".onnx":
            from harness.errors import Unsupported

            raise Unsupported(f"the gate re-times ONNX artifacts only, not {p.name}")
    la = load(a, threads=task["threads"])
    lb = load(b, threads=task["threads"])
    fa = synthetic_feeds(a, shapes=task.get("shapes_a"))
    fb = synthetic_feeds(b, shapes=task.get("shapes_b"))
    for _ in range(task["warmup"]):
        la.timing_call(None, fa)
        lb.timing_call(None, fb)
    loops = choose_loops(la.timing_call, fa)
    out = interleaved_rounds(la.timing_call, fa, lb.timing_call, fb, rounds=task["rounds"],
                             block=task["block"], loops=loops)
    out["loops"] = loops
    out["runtime_version"] = la.version
    return out


def _remeasure(a: Path, b: Path, opts: GateOptions, *, threads: int, log: Path,
               shapes: tuple[Any, Any]) -> tuple[PairedTest | None, dict[str, Any], str]:
    """One worker: returns the test (None on failure), the raw result and a reason."""
    import numpy as np

    from harness.launcher import run_in_worker

    out = run_in_worker(gate_task(a, b, opts, threads=threads, shapes_a=shapes[0],
                                  shapes_b=shapes[1]), timeout_s=opts.timeout_s, log=log)
    if out.get("status") != "ok":
        return None, {}, f"re-measuring failed: {out.get('status')}: {out.get('reason')}"
    res = out["result"]
    test = paired_median_test(res["log_ratios"], threshold=opts.threshold,
                              confidence=opts.confidence)
    res["host_a_ms"] = float(np.median(res["samples_a"])) / res["loops"] / 1e6
    res["host_b_ms"] = float(np.median(res["samples_b"])) / res["loops"] / 1e6
    return test, res, ""


def _followup(case_id: str, n: int, paths: tuple[Path, Path], opts: GateOptions, *,
              threads: int, log_dir: Path, shapes: tuple[Any, Any],
              progress: Callable[[str], None] | None) -> Measure:
    """The follow-up measurements of one case for :func:`judge_case`: each in a fresh worker
    (new process, new sessions, so a placement effect of the first one is not repeated)."""
    what = {"extend": "first pass inconclusive beyond the band, extending",
            "confirm": "suspected regression, re-running to confirm"}

    def measure(rounds: int, stage: str) -> tuple[PairedTest | None, str]:
        if progress:
            progress(f"{case_id}: {what[stage]} ({rounds} rounds, fresh worker)")
        name = "rerun" if stage == "confirm" else "extend"
        test, _, why = _remeasure(*paths, replace(opts, rounds=rounds), threads=threads,
                                  log=log_dir / f"gate-{n:04d}-{name}.log", shapes=shapes)
        return test, why

    return measure


def _shapes(m: Any) -> dict[str, list[int]] | None:
    shapes = m.predicted.detail.get("input_shapes")
    return dict(shapes) if isinstance(shapes, dict) and shapes else None


def gate_runs(baseline_dir: Path, candidate_dir: Path, options: GateOptions | None = None, *,
              cache_dir: Path | None = None,
              progress: Callable[[str], None] | None = None) -> GateResult:
    """Gate the candidate run against the baseline run (see the module's docstring).

    Raises InputError (exit status 2) for a run that cannot be read, runs with no case in
    common, and artifacts of cases ok in both runs that can no longer be found (each named).
    """
    from harness.cache import default_cache_dir
    from harness.results import load_run

    opts = options or GateOptions()
    cache = cache_dir or default_cache_dir()
    base, cand = load_run(baseline_dir), load_run(candidate_dir)
    rows_a = {m.case_id: m for m in base.measurements}
    rows_b = {m.case_id: m for m in cand.measurements}
    common = [i for i in rows_a if i in rows_b]
    if not common:
        raise InputError("the runs have no case in common "
                         f"({len(rows_a)} cases in the baseline, {len(rows_b)} in the "
                         "candidate)", file=candidate_dir)
    notes: list[str] = []
    only_a = [i for i in rows_a if i not in rows_b]
    only_b = [i for i in rows_b if i not in rows_a]
    if only_b:
        notes.append(f"{len(only_b)} case(s) only in the candidate, not gated: "
                     + ", ".join(only_b))
    threads = int((cand.manifest.get("measure") or {}).get("threads") or 1)
    # find every artifact first: a missing one is bad input, before anything is timed
    paths: dict[str, tuple[Path, Path]] = {}
    missing: list[str] = []
    for i in common:
        a, b = rows_a[i], rows_b[i]
        if a.status != "ok" or b.status != "ok":
            continue
        pa, looked_a = find_artifact(a, run_dir=base.path, cache_dir=cache)
        pb, looked_b = find_artifact(b, run_dir=cand.path, cache_dir=cache)
        for side, p, looked, m in (("baseline", pa, looked_a, a), ("candidate", pb, looked_b, b)):
            if p is None:
                key = m.artifact.key if m.artifact else None
                missing.append(f"{i} ({side}, artifact {key}): looked at "
                               + "; ".join(looked))
        if pa is not None and pb is not None:
            paths[i] = (pa, pb)
    if missing:
        raise InputError("artifacts can no longer be found (promote the baseline with "
                         "`harness baseline promote`, or rebuild into the cache):\n  "
                         + "\n  ".join(missing), file=candidate_dir)

    log_dir = cand.path / "logs"
    tests: dict[str, PairedTest] = {}
    raw: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    identical: set[str] = set()
    for n, i in enumerate(common):
        if i not in paths:
            continue
        a, b = rows_a[i], rows_b[i]
        if a.artifact and b.artifact and a.artifact.sha256 and \
                a.artifact.sha256 == b.artifact.sha256:
            identical.add(i)
            continue
        if progress:
            progress(f"[{n + 1}/{len(common)}] {i}: timing both artifacts, "
                     f"{opts.rounds} interleaved rounds")
        test, res, why = _remeasure(*paths[i], opts, threads=threads,
                                    log=log_dir / f"gate-{n:04d}.log",
                                    shapes=(_shapes(a), _shapes(b)))
        if test is None:
            failed[i] = why
        else:
            tests[i], raw[i] = test, res
    timed = list(tests)
    adjusted = dict(zip(timed, holm_adjusted([tests[i].p_value for i in timed]), strict=True))

    cases = []
    for n, i in enumerate(common):
        a, b = rows_a[i], rows_b[i]
        regressions, changes, yardstick = deterministic_changes(
            a, b, quality_tolerance=opts.quality_tolerance)
        out: dict[str, Any] = {"case_id": i, "yardstick": yardstick}
        if i in identical:
            out.update(verdict="same", identical=True, ratio=1.0,
                       reason="identical artifact (same content hash): nothing to time")
        elif i in failed:
            out["reason"] = failed[i]
            regressions.append(failed[i])
        elif i in tests:
            t, res = tests[i], raw[i]
            j = judge_case(t, p_first=adjusted[i], opts=opts, family=len(timed),
                           measure=_followup(i, n, paths[i], opts, threads=threads,
                                             log_dir=log_dir, shapes=(_shapes(a), _shapes(b)),
                                             progress=progress))
            out.update(ratio=t.ratio, ci_low=t.low, ci_high=t.high, p_value=adjusted[i],
                       rounds=t.n, host_a_ms=res["host_a_ms"], host_b_ms=res["host_b_ms"],
                       verdict=j.verdict, suspected=j.suspected, extended=j.extended,
                       confirmed=j.confirmed, rounds_total=j.rounds_total)
            if j.extension is not None:
                e = j.extension
                out.update(extension_rounds=e.n, extension_ratio=e.ratio,
                           extension_ci_low=e.low, extension_ci_high=e.high,
                           extension_p_value=e.p_value)
            if j.confirmation is not None:
                c = j.confirmation
                out.update(rerun_rounds=c.n, rerun_ratio=c.ratio, rerun_ci_low=c.low,
                           rerun_ci_high=c.high, rerun_p_value=c.p_value)
            seen = f"host latency x{t.ratio:.3f}"
            if j.extension is not None:
                seen += f", extended x{j.extension.ratio:.3f} ({j.extension.n} rounds)"
            if j.verdict == "improvement":
                changes.append(seen)
            elif j.failure:
                out["reason"] = j.failure
                regressions.append(f"{seen}; {j.failure}")
            elif j.verdict == "regression" and j.confirmation is None:
                regressions.append(f"{seen} (not re-run)")
            elif j.verdict == "regression" and j.confirmation is not None:
                regressions.append(f"{seen} (confirmed by a re-run: "
                                   f"x{j.confirmation.ratio:.3f}, {j.confirmation.n} rounds)")
            elif j.confirmation is not None:
                out["reason"] = (f"suspected: {seen}; not confirmed by the re-run "
                                 f"(x{j.confirmation.ratio:.3f}, {j.confirmation.n} rounds)")
            elif j.extension is not None:
                out["reason"] = (f"first pass x{t.ratio:.3f} inconclusive beyond the band; "
                                 f"the extended measurement (x{j.extension.ratio:.3f}, "
                                 f"{j.extension.n} rounds) was not significant")
        elif a.status == "ok" and b.status != "ok":
            out["reason"] = f"candidate status {b.status}: {b.reason}"
        else:
            out["reason"] = "not ok in both runs: not timed"
        cases.append(GateCase(**out, regressions=tuple(regressions), changes=tuple(changes)))
    for i in only_a:
        cases.append(GateCase(case_id=i, reason="missing from the candidate",
                              regressions=("case missing from the candidate",)))
    moved = sorted({c.yardstick for c in cases if c.yardstick})
    if moved:
        notes.append("the emulator's yardstick changed between the runs ("
                     + "; ".join(moved) + "): prediction changes are listed as changes, "
                     "not regressions")
    if identical:
        notes.append(f"{len(identical)} case(s) have byte-identical artifacts in both runs: "
                     "same by construction, not timed")
    return GateResult(baseline=str(base.manifest.get("run_id", base.path.name)),
                      candidate=str(cand.manifest.get("run_id", cand.path.name)),
                      options=opts, cases=tuple(cases), notes=tuple(notes))


# --------------------------------------------------------------------------- output


def to_json(result: GateResult) -> str:
    """A list with one object per case."""
    return json.dumps([asdict(c) for c in result.cases], indent=1) + "\n"


def to_markdown(result: GateResult) -> str:
    from tabulate import tabulate

    from harness.report.markup import md

    o = result.options
    counts = {v: sum(c.verdict == v for c in result.cases) for v in VERDICTS}
    lines = [f"## Gate: `{result.candidate}` vs baseline `{result.baseline}`", "",
             f"{len(result.cases)} cases: **{counts['regression']} slower (confirmed)**, "
             f"{counts['improvement']} faster, {counts['same']} same; **"
             f"{len(result.regressions)} with a regression**.", "",
             f"Both artifacts of each case re-timed in one worker on this machine, "
             f"{o.rounds} interleaved ABBA rounds of {o.block} samples per block; a verdict "
             f"needs the median ratio beyond ±{100 * o.threshold:g}% (noise band) at a "
             f"family-wise error of {o.alpha:g} (Holm over the cases), and a regression a "
             f"confirming re-run of {o.followup} rounds in a fresh worker, judged on its own; "
             f"a first pass beyond the band but not significant is extended by "
             f"{o.followup} fresh rounds (judged at alpha / cases timed) before that. "
             f"The interval shown is {100 * o.confidence:g}% (first pass). "
             "Deterministic figures are compared exactly.", ""]
    lines += [f"> note: {md(n)}" for n in result.notes]
    if result.notes:
        lines.append("")
    rows = []
    for c in result.cases:
        verdict = f"**{c.verdict}**" if c.verdict in ("regression", "improvement") else c.verdict
        steps = []
        if c.extended:
            steps.append(f"extended x{c.extension_ratio:.3f} ({c.extension_rounds} rounds)")
        if c.confirmed is not None:
            steps.append(f"{'confirmed' if c.confirmed else 'not confirmed'} "
                         f"x{c.rerun_ratio:.3f} ({c.rerun_rounds} rounds)")
        rerun = "; ".join(steps)
        rows.append([md(c.case_id),
                     "" if c.host_a_ms is None else f"{c.host_a_ms:.4f}",
                     "" if c.host_b_ms is None else f"{c.host_b_ms:.4f}",
                     "" if c.ratio is None else f"{c.ratio:.3f}",
                     "" if c.ci_low is None else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]",
                     verdict, rerun,
                     md("; ".join(c.regressions)),
                     md("; ".join([*c.changes, *([c.reason] if c.reason else [])]))])
    lines.append(tabulate(rows, headers=["case", "host A (ms)", "host B (ms)", "B/A",
                                         f"{100 * o.confidence:g}% CI", "verdict", "follow-up",
                                         "regression", "changes"],
                          tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- self-test


def matmul_chain_onnx(path: Path, *, layers: int, width: int = 128, batch: int = 64,
                      seed: int = 0) -> Path:
    """An ONNX model of ``layers`` x (MatMul width x width, Add, Relu) on a [batch, width]
    input: the work grows linearly with ``layers``, so 21 layers do 5% more than 20."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for k in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        bias = np.zeros(width, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(bias, f"b{k}")]
        nodes += [helper.make_node("MatMul", [x, f"w{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"]),
                  helper.make_node("Relu", [f"a{k}"], [f"r{k}"])]
        x = f"r{k}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


SELF_TEST_KINDS = {"A/A": 0.0, "+5%": 0.05, "+10%": 0.10}


def run_selftest_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker side of ``gate_selftest``: ``comparisons`` rounds of A vs each of A' (a copy of
    A), B5 and B10, each with fresh sessions, judged by :func:`judge_case` as the gate judges
    one case (so an extension or a confirmation is a fresh measurement with fresh sessions
    too)."""
    from harness.measure import choose_loops, interleaved_rounds, synthetic_feeds
    from harness.runtimes import load

    models = {k: Path(v) for k, v in task["models"].items()}
    feeds = synthetic_feeds(models["A"])
    threads = task["threads"]
    opts = GateOptions(**task["options"])

    def compare(other: str, rounds: int) -> PairedTest:
        la, lb = load(models["A"], threads=threads), load(models[other], threads=threads)
        for _ in range(opts.warmup):
            la.timing_call(None, feeds)
            lb.timing_call(None, feeds)
        loops = choose_loops(la.timing_call, feeds)
        out = interleaved_rounds(la.timing_call, feeds, lb.timing_call, feeds,
                                 rounds=rounds, block=opts.block, loops=loops)
        return paired_median_test(out["log_ratios"], threshold=opts.threshold,
                                  confidence=opts.confidence)

    results: dict[str, list[dict[str, Any]]] = {k: [] for k in SELF_TEST_KINDS}
    for _ in range(task["comparisons"]):
        for kind in SELF_TEST_KINDS:
            t = compare(kind, opts.rounds)
            # one case: Holm over one p-value is the p-value itself
            j = judge_case(t, p_first=t.p_value, opts=opts, family=1,
                           measure=_fresh(compare, kind))
            results[kind].append({"ratio": t.ratio, "low": t.low, "high": t.high,
                                  "flagged": t.p_value <= opts.alpha and
                                  t.direction == "slower",
                                  "extended": j.extended, "suspected": j.suspected,
                                  "confirmed": j.verdict == "regression",
                                  "rounds": j.rounds_total})
    la = load(models["A"], threads=threads)
    one_ms = sorted(time_call_ns(la.timing_call, feeds, 21))[10] / 1e6
    return {"results": results, "call_ms": one_ms}


def _fresh(compare: Callable[[str, int], PairedTest], kind: str) -> Measure:
    """A follow-up measurement for the self-test: fresh sessions (it never fails)."""
    def measure(rounds: int, stage: str) -> tuple[PairedTest | None, str]:
        return compare(kind, rounds), ""

    return measure


def time_call_ns(run: Callable[[Any, Any], Any], feeds: Any, n: int) -> list[int]:
    from harness.measure import time_runs

    return time_runs(run, feeds, n)


@dataclass(frozen=True)
class SelfTest:
    """False alarms and detection measured on this machine."""

    options: GateOptions
    comparisons: int                       # per kind
    workers: int
    call_ms: float
    # kind -> n, and fractions: flagged (first pass), extended, suspected (first pass or
    # extension), confirmed (counted: the verdict regression); mean_rounds per comparison
    rates: dict[str, dict[str, float]]
    median_ratio: dict[str, float]
    range_ratio: dict[str, tuple[float, float]]   # smallest and largest B/A of each kind
    seconds: float

    def meets_targets(self) -> bool:
        return (self.rates["A/A"]["confirmed"] <= 0.01
                and self.rates["+5%"]["confirmed"] >= 0.90)


def self_test(options: GateOptions | None = None, *, comparisons: int = 100, workers: int = 4,
              threads: int = 1, workdir: Path,
              progress: Callable[[str], None] | None = None) -> SelfTest:
    """Measure the gate's false-alarm rate (A vs a byte-identical copy of A) and its detection
    of 5% and 10% more work (a MatMul chain of 20 layers vs 21 and 22), ``comparisons`` of
    each, spread over ``workers`` worker processes run one after the other."""
    import numpy as np

    from harness.launcher import run_in_worker

    opts = options or GateOptions()
    models = {"A": matmul_chain_onnx(workdir / "a" / "model.onnx", layers=20),
              "A/A": matmul_chain_onnx(workdir / "a2" / "model.onnx", layers=20),
              "+5%": matmul_chain_onnx(workdir / "b5" / "model.onnx", layers=21),
              "+10%": matmul_chain_onnx(workdir / "b10" / "model.onnx", layers=22)}
    per = [comparisons // workers + (1 if k < comparisons % workers else 0)
           for k in range(workers)]
    merged: dict[str, list[dict[str, Any]]] = {k: [] for k in SELF_TEST_KINDS}
    call_ms: list[float] = []
    t0 = time.monotonic()
    for k, n in enumerate(per):
        if not n:
            continue
        if progress:
            progress(f"self-test worker {k + 1}/{workers}: {n} comparisons of each kind")
        out = run_in_worker({"kind": "gate_selftest", "models": {a: str(p) for a, p in
                                                                   models.items()},
                             "comparisons": n, "options": asdict(opts), "threads": threads},
                            timeout_s=opts.timeout_s * 4, log=workdir / "selftest.log")
        if out.get("status") != "ok":
            raise InputError(f"self-test worker failed: {out.get('status')}: "
                             f"{out.get('reason')}", file=workdir / "selftest.log")
        for kind, rows in out["result"]["results"].items():
            merged[kind] += rows
        call_ms.append(out["result"]["call_ms"])
    rates = {kind: {"n": float(len(rows)),
                    **{what: sum(r[what] for r in rows) / max(1, len(rows))
                       for what in ("flagged", "extended", "suspected", "confirmed")},
                    "mean_rounds": sum(r["rounds"] for r in rows) / max(1, len(rows))}
             for kind, rows in merged.items()}
    med = {kind: float(np.median([r["ratio"] for r in rows])) for kind, rows in merged.items()}
    return SelfTest(options=opts, comparisons=comparisons, workers=workers,
                    call_ms=float(np.median(call_ms)), rates=rates, median_ratio=med,
                    range_ratio={kind: (min(r["ratio"] for r in rows),
                                        max(r["ratio"] for r in rows))
                                 for kind, rows in merged.items() if rows},
                    seconds=time.monotonic() - t0)


def selftest_markdown(st: SelfTest) -> str:
    o = st.options
    follow = (f"a confirming re-run of {o.followup} rounds" if o.confirm
              else "no confirming re-run")
    lines = ["## Gate self-test on this machine", "",
             f"{st.comparisons} comparisons of each kind in {st.workers} worker(s), "
             f"{o.rounds} rounds x ABBA x {o.block} samples, noise band ±{100 * o.threshold:g}%,"
             f" alpha {o.alpha:g}, {follow}"
             + (f", an extended measurement of {o.followup} rounds for an inconclusive first "
                "pass beyond the band" if o.extend else "")
             + f"; model A: 20 x (MatMul 64x128 @ 128x128 + Add + Relu), {st.call_ms:.3f} ms "
             f"per call; {st.seconds:.0f} s in all.", "",
             "| comparison | median B/A | range of B/A | flagged (first pass) | extended | "
             "counted (confirmed) | rounds per comparison |",
             "|---|---|---|---|---|---|---|"]
    for kind in SELF_TEST_KINDS:
        r = st.rates[kind]
        what = "false alarms" if kind == "A/A" else "detected"
        lo, hi = st.range_ratio.get(kind, (math.nan, math.nan))
        lines.append(f"| {kind} ({what}) | {st.median_ratio[kind]:.4f} | {lo:.4f} - {hi:.4f} | "
                     f"{100 * r['flagged']:.1f}% | {100 * r['extended']:.1f}% | "
                     f"{100 * r['confirmed']:.1f}% | {r['mean_rounds']:.1f} |")
    lines += ["", "targets: false alarms <= 1%, detection of +5% >= 90%: "
              + ("**met**" if st.meets_targets() else "**NOT met**")]
    return "\n".join(lines) + "\n"
