"""Statistics over raw samples, computed when reading (never stored in the rows).

Only numpy: percentiles, a robust spread for the unstable-row flag, a seeded bootstrap
confidence interval of the ratio of two medians for ``harness compare``, and for ``harness
gate`` a bootstrap test of paired (interleaved) log ratios against a noise band with Holm's
correction over the cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A row is flagged unstable when (p90 - p10) / p50 of its warm samples exceeds this. pyperf
# flags stdev/mean > 10%; on sub-millisecond timings one scheduler hiccup dominates the stdev,
# so the inter-decile range over the median (robust to a few outliers) is used instead, with a
# wider threshold because it spans 80% of the samples rather than one standard deviation.
UNSTABLE_SPREAD = 0.20
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class SampleStats:
    """Summary of one set of latency samples, in milliseconds."""

    n: int
    min_ms: float
    p10_ms: float
    p25_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    stdev_ms: float

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("SampleStats needs at least one sample")

    @property
    def spread(self) -> float:
        """Relative spread (p90 - p10) / p50: the unstable-row criterion."""
        return (self.p90_ms - self.p10_ms) / self.p50_ms if self.p50_ms > 0 else float("inf")

    def unstable(self, *, threshold: float = UNSTABLE_SPREAD) -> bool:
        return self.spread > threshold


def sample_stats(samples_ns: Sequence[float] | np.ndarray) -> SampleStats | None:
    """Percentiles, mean and stdev (ms) of raw nanosecond samples; None when there are none."""
    s = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if s.size == 0:
        return None
    q = np.percentile(s, [0, 10, 25, 50, 75, 90, 99, 100])
    return SampleStats(n=int(s.size), min_ms=float(q[0]), p10_ms=float(q[1]),
                       p25_ms=float(q[2]), p50_ms=float(q[3]), p75_ms=float(q[4]),
                       p90_ms=float(q[5]), p99_ms=float(q[6]), max_ms=float(q[7]),
                       mean_ms=float(s.mean()),
                       stdev_ms=float(s.std(ddof=1)) if s.size > 1 else 0.0)


@dataclass(frozen=True)
class RatioCI:
    """Ratio of medians B / A with a bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError("confidence must be in (0, 1)")


def median_ratio_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                    confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> RatioCI:
    """Percentile-bootstrap CI of median(b) / median(a), resampling each side independently.

    The seed is fixed so the same two runs always give the same interval (a report that changes
    on re-rendering would be useless in release notes).
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("both sides need samples")
    rng = np.random.default_rng(seed)
    ma = np.median(xa[rng.integers(0, xa.size, (resamples, xa.size))], axis=1)
    mb = np.median(xb[rng.integers(0, xb.size, (resamples, xb.size))], axis=1)
    ratios = mb / ma
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioCI(ratio=float(np.median(xb) / np.median(xa)), low=float(low), high=float(high),
                   confidence=confidence)


@dataclass(frozen=True)
class PairedTest:
    """The median of paired log ratios log(B/A) (one per interleaved round), its bootstrap
    confidence interval, and one-sided bootstrap p-values against a noise band of
    ±log(1 + threshold): ``p_slower`` for "median > log(1 + threshold)", ``p_faster`` for
    "median < -log(1 + threshold)"."""

    n: int
    ratio: float          # exp(median log ratio)
    low: float            # exp of the interval's bounds
    high: float
    p_slower: float
    p_faster: float
    confidence: float

    @property
    def p_value(self) -> float:
        """Two-sided: twice the smaller one-sided p-value (capped at 1)."""
        return min(1.0, 2 * min(self.p_slower, self.p_faster))

    @property
    def direction(self) -> str:
        return "slower" if self.p_slower <= self.p_faster else "faster"


def paired_median_test(log_ratios: Sequence[float] | np.ndarray, *, threshold: float,
                       confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> PairedTest:
    """Percentile bootstrap of the median of paired log ratios (seeded: the same rounds always
    give the same answer). The p-value of "slower beyond the threshold" is the share of
    bootstrap medians at or below log(1 + threshold), with the usual +1 correction, so it is
    never 0; likewise for "faster"."""
    x = np.asarray(log_ratios, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no rounds")
    if not 0 <= threshold < 1:
        raise ValueError("threshold must be in [0, 1)")
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, x.size, (resamples, x.size))], axis=1)
    band = float(np.log1p(threshold))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(meds, [tail, 100 - tail])
    p_slower = (1 + int(np.sum(meds <= band))) / (resamples + 1)
    p_faster = (1 + int(np.sum(meds >= -band))) / (resamples + 1)
    return PairedTest(n=int(x.size), ratio=float(np.exp(np.median(x))), low=float(np.exp(low)),
                      high=float(np.exp(high)), p_slower=p_slower, p_faster=p_faster,
                      confidence=confidence)


def holm(p_values: Sequence[float], *, alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with the family-wise error
    rate held at ``alpha`` (any dependence between the tests)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: hypothesis i is rejected at level alpha iff adjusted[i] <= alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, value) points (lower cost and higher value are better): on the front?

    A point is dominated when another is no worse on both and strictly better on one.
    """
    out = []
    for i, (ci, vi) in enumerate(points):
        dominated = any(cj <= ci and vj >= vi and (cj < ci or vj > vi)
                        for j, (cj, vj) in enumerate(points) if j != i)
        out.append(not dominated)
    return out
