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
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.emulator.pacing import Pacer

Feeds = dict[str, np.ndarray]


def time_runs(run: Callable[[Any, Feeds], Any], feeds: Feeds, iterations: int, *,
              loops: int = 1) -> list[int]:
    """``iterations`` samples of ``loops`` back-to-back calls of ``run(None, feeds)``: the
    wall time of each sample in ns (divide by ``loops`` for one call).

    Kept as lean as a bare loop (tests/benchmarks checks the overhead): the loop only stores
    one clock reading per sample into a preallocated list, the end of one sample being the
    start of the next; differences are taken after it. A sample therefore also holds the
    loop's own step, a few tens of ns, which ``loops`` > 1 spreads over several calls (as
    pyperf's and timeit's loops do) for models that run in microseconds.
    """
    stamps = [0] * (iterations + 1)
    clock = time.perf_counter_ns
    stamps[0] = clock()
    if loops == 1:
        for i in range(1, iterations + 1):
            run(None, feeds)
            stamps[i] = clock()
    else:
        inner = range(loops)
        for i in range(1, iterations + 1):
            for _ in inner:
                run(None, feeds)
            stamps[i] = clock()
    return [b - a for a, b in itertools.pairwise(stamps)]


# A sample spans at least this long: the loop's own few tens of ns per sample then stay well
# under 0.1% of it. Calls longer than this are timed one per sample.
MIN_SAMPLE_NS = 200_000
MAX_LOOPS = 1000


def choose_loops(run: Callable[[Any, Feeds], Any], feeds: Feeds) -> int:
    """Calls per sample so that a sample lasts at least :data:`MIN_SAMPLE_NS` (pyperf's
    calibration): the median of 5 single calls, after the warm-up."""
    one = sorted(time_runs(run, feeds, 5))[2]
    return max(1, min(MAX_LOOPS, -(-MIN_SAMPLE_NS // max(one, 1))))


def timed_samples(run: Callable[[Any, Feeds], Any], feeds: Feeds, *, iterations: int,
                  loops: int, min_time_s: float, max_samples: int) -> list[int]:
    """At least ``iterations`` samples, and more (in chunks of ``iterations``) until the
    samples span ``min_time_s`` of measured time or ``max_samples`` are taken
    (``benchmark_model --min_secs``): a 12 µs model gets enough samples for its percentiles.
    """
    samples = time_runs(run, feeds, iterations, loops=loops)
    budget_ns = min_time_s * 1e9
    while sum(samples) < budget_ns and len(samples) < max_samples:
        samples += time_runs(run, feeds, min(iterations, max_samples - len(samples)),
                             loops=loops)
    return samples


def paced_runs(run: Callable[[Any, Feeds], Any], feeds: Feeds, iterations: int,
               pacer: Pacer) -> tuple[list[int], dict[str, Any]]:
    """Like :func:`time_runs`, but each inference is padded to the device's latency at that
    moment, which the ``pacer``'s thermal model gives and advances with the real run's work
    and idle time (:mod:`harness.emulator.pacing`): a long paced run slows as the device heats.

    For app developers who want to feel the device: the loop sleeps (then spins for the last
    stretch, as sleep overshoots by up to a millisecond) until the target has passed. Returns
    the raw host inference times and the paced run's series: per-inference target, emulated
    temperature and clock fraction, and how many inferences already exceeded their target
    (where the host is slower than the device and pacing cannot slow it down).
    """
    samples = [0] * iterations
    targets: list[float] = []
    temps: list[float] = []
    fractions: list[float] = []
    overruns = 0
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(iterations):
        target_ms, fraction = pacer.target()
        run(None, feeds)
        t1 = clock()
        samples[i] = t1 - t0
        deadline = t0 + round(target_ms * 1e6)
        if t1 > deadline:
            overruns += 1
        else:
            remaining = deadline - t1
            if remaining > 2_000_000:
                time.sleep((remaining - 1_000_000) / 1e9)
            while clock() < deadline:
                pass
        t2 = clock()
        pacer.advance(busy_ms=target_ms, elapsed_ms=(t2 - t0) / 1e6, clock_fraction=fraction)
        targets.append(round(target_ms, 6))
        temps.append(round(pacer.temp_c, 3))
        fractions.append(round(fraction, 4))
        t0 = t2
    return samples, {"target_ms": targets, "temp_c": temps, "clock_fraction": fractions,
                     "overruns": overruns}


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
    pace: dict[str, Any] | None = None,
    min_time_s: float = 0.0,
    max_samples: int = 10_000,
) -> dict[str, Any]:
    """Cold start, warm-up, then at least ``iterations`` timed samples of ``artifact`` in its
    runtime, more until they span ``min_time_s`` (see :func:`timed_samples`); a sample is
    several calls when one call is shorter than :data:`MIN_SAMPLE_NS`.

    With ``pace`` (a :class:`harness.emulator.pacing.PaceSpec` as JSON) each timed run is one
    call padded to the device's latency at that moment of its emulated heating (see
    :func:`paced_runs`), for ``iterations`` runs or ``min_time_s``, whichever is longer.
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
    paced: dict[str, Any] | None = None
    loops = 1
    if pace:
        from harness.emulator.pacing import Pacer, PaceSpec

        pacer = Pacer(PaceSpec.from_json(pace))
        samples, paced = paced_runs(loaded.timing_call, feeds, iterations, pacer)
        while sum(samples) < min_time_s * 1e9 and len(samples) < max_samples:
            more, series = paced_runs(loaded.timing_call, feeds, iterations, pacer)
            samples += more
            for key in ("target_ms", "temp_c", "clock_fraction"):
                paced[key] += series[key]
            paced["overruns"] += series["overruns"]
    else:
        loops = choose_loops(loaded.timing_call, feeds)
        samples = timed_samples(loaded.timing_call, feeds, iterations=iterations, loops=loops,
                                min_time_s=min_time_s, max_samples=max_samples)
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
            "phases": [{"name": "forward", "unit": "ns", "samples": samples,
                        "calls_per_sample": loops}],
            "cold_start": {"load_ns": t1 - t0, "first_inference_ns": t2 - t1},
            "peak_memory_mb": round(peak, 3),
            "memory_before_load_mb": round(rss_before, 3),
            "pace": paced,
        },
    }


def synthetic_feeds(artifact: Path, *, shapes: dict[str, list[int]] | None = None,
                    seed: int = 0) -> Feeds:
    """Seeded inputs for an ONNX artifact, from its graph inputs: standard normal floats,
    zeros for integers and booleans. A dynamic dimension takes its size from ``shapes`` (the
    shapes the run timed, ``prediction.input_shapes``), else 1. For re-timing (``harness
    gate``): both sides of a comparison get inputs made the same way."""
    import onnx
    from onnx import helper

    model = onnx.load(str(artifact), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        t = inp.type.tensor_type
        given = (shapes or {}).get(inp.name)
        dims = list(given) if given else [d.dim_value if d.HasField("dim_value") and
                                          d.dim_value > 0 else 1 for d in t.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[inp.name] = np.zeros(dims, dtype=dtype)
    return feeds


def interleaved_rounds(run_a: Callable[[Any, Feeds], Any], feeds_a: Feeds,
                       run_b: Callable[[Any, Feeds], Any], feeds_b: Feeds, *, rounds: int,
                       block: int, loops: int) -> dict[str, Any]:
    """Time A and B in alternating blocks of ``block`` samples (``loops`` calls each), in
    rounds ordered ABBA, BAAB, ABBA, ...: within a round each side's blocks sit symmetrically
    around its middle, so a drift linear over the round (a neighbour's load rising, the CPU's
    clock moving) weighs on both sides alike and cancels in the ratio.

    Returns per round the log of median(B samples) / median(A samples), and every sample (ns
    per sample of ``loops`` calls) of each side.
    """
    log_ratios: list[float] = []
    all_a: list[int] = []
    all_b: list[int] = []
    for r in range(rounds):
        got: dict[str, list[int]] = {"A": [], "B": []}
        for side in ("ABBA" if r % 2 == 0 else "BAAB"):
            if side == "A":
                got["A"] += time_runs(run_a, feeds_a, block, loops=loops)
            else:
                got["B"] += time_runs(run_b, feeds_b, block, loops=loops)
        log_ratios.append(float(np.log(np.median(got["B"]) / np.median(got["A"]))))
        all_a += got["A"]
        all_b += got["B"]
    return {"log_ratios": log_ratios, "samples_a": all_a, "samples_b": all_b}
