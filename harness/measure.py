"""The timing loop and the in-worker measurement of one artifact.

Runs inside a fresh worker process (see :mod:`harness.worker`): only numpy, the artifact's
runtime (:mod:`harness.runtimes`) and the workload's evaluation code are imported here, so the
host peak memory is the runtime's, not the harness's. Raw samples are kept in nanoseconds;
statistics are computed when reading.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


def time_runs(run: Callable[[Any, Feeds], Any], feeds: Feeds, iterations: int) -> list[int]:
    """Call ``run(None, feeds)`` ``iterations`` times; wall time of each call in ns.

    Kept as lean as a bare loop (tests/benchmarks checks it adds under 1%): the loop only
    stores one clock reading per iteration into a preallocated list, the end of one sample
    being the start of the next; differences are taken after it. A sample therefore also holds
    the loop's own step, a few tens of ns.
    """
    stamps = [0] * (iterations + 1)
    clock = time.perf_counter_ns
    stamps[0] = clock()
    for i in range(1, iterations + 1):
        run(None, feeds)
        stamps[i] = clock()
    return [b - a for a, b in itertools.pairwise(stamps)]


def paced_runs(run: Callable[[Any, Feeds], Any], feeds: Feeds, iterations: int,
               target_ns: int) -> tuple[list[int], int]:
    """Like :func:`time_runs`, but each inference is padded to ``target_ns`` of wall time.

    For app developers who want to feel the device: the loop sleeps (then spins for the last
    stretch, as sleep overshoots by up to a millisecond) until the predicted device latency has
    passed. Returns the raw host inference times and how many of them already exceeded the
    target, i.e. where the host is slower than the device and pacing cannot slow it down.
    """
    samples = [0] * iterations
    overruns = 0
    clock = time.perf_counter_ns
    for i in range(iterations):
        t0 = clock()
        run(None, feeds)
        t1 = clock()
        samples[i] = t1 - t0
        deadline = t0 + target_ns
        if t1 > deadline:
            overruns += 1
            continue
        remaining = deadline - t1
        if remaining > 2_000_000:
            time.sleep((remaining - 1_000_000) / 1e9)
        while clock() < deadline:
            pass
    return samples, overruns


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def current_rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / (1024.0 * 1024.0)


def measure_artifact(
    artifact: Path,
    feeds: Feeds,
    *,
    warmup: int,
    iterations: int,
    threads: int,
    pace_ms: float | None = None,
) -> dict[str, Any]:
    """Cold start, warm-up, then ``iterations`` timed runs of ``artifact`` in its runtime.

    With ``pace_ms`` each timed run is padded to that wall time (see :func:`paced_runs`).
    Returns ``{"loaded": Loaded, "measured": {...}}``: the measured block of a result row
    (:class:`harness.core.measurement.Measured`), one ``forward`` phase of raw ns samples.
    """
    from harness.runtimes import runtime_loader

    load = runtime_loader(artifact)  # imports the runtime library: not part of cold start
    rss_before = current_rss_mb()
    t0 = time.perf_counter_ns()
    loaded = load(artifact, threads=threads)
    t1 = time.perf_counter_ns()
    loaded.timing_call(None, feeds)
    t2 = time.perf_counter_ns()
    for _ in range(warmup):
        loaded.timing_call(None, feeds)
    pace: dict[str, Any] | None = None
    if pace_ms:
        samples, overruns = paced_runs(loaded.timing_call, feeds, iterations,
                                       round(pace_ms * 1e6))
        pace = {"target_ms": pace_ms, "overruns": overruns}
    else:
        samples = time_runs(loaded.timing_call, feeds, iterations)
    peak = peak_rss_mb()
    return {
        "loaded": loaded,
        "measured": {
            "where": "host",
            "runtime": loaded.runtime,
            "runtime_version": loaded.version,
            "providers": loaded.providers,
            "threads": threads,
            "warmup_runs": warmup,
            "phases": [{"name": "forward", "unit": "ns", "samples": samples}],
            "cold_start": {"load_ns": t1 - t0, "first_inference_ns": t2 - t1},
            "peak_memory_mb": round(peak, 3),
            "memory_before_load_mb": round(rss_before, 3),
            "pace": pace,
        },
    }
