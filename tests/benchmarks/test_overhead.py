"""Benchmark: the harness timing loop against a bare ``session.run`` loop.

Run with ``nox -s benchmarks``; check_overhead.py then fails if the harness loop costs more
than 0.25% over the bare loop on the digits CNN (calls of ~12 µs, timed as the harness times
them: several calls per sample, :func:`harness.measure.choose_loops`). In the normal test run
(benchmarks disabled) it runs one round, which still checks that both loops work.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.measure import choose_loops, time_runs

ITERATIONS = 500
# 500 rounds of ~20 ms. Each round runs both loops back to back, in alternating order: run as two
# separate benchmarks, whichever ran second came out ~0.5% faster on a shared 2-core VM
# (drift), as much as half the limit.
ROUNDS = 500
WARMUP_ROUNDS = 5


@pytest.fixture(scope="module")
def session_and_feeds(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    # The digits CNN's architecture: the smallest (so most overhead-sensitive) workload the
    # harness ships. Weights do not change the timing, so it is not trained here.
    import torch

    from harness.compress.torch_export import export_onnx
    from harness.workloads.digits import _build_model

    torch.manual_seed(0)
    path = Path(tmp_path_factory.mktemp("bench")) / "digits.onnx"
    export_onnx(_build_model().eval(), {"input": np.ones((1, 1, 8, 8), np.float32)}, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feeds = {"input": np.ones((1, 1, 8, 8), np.float32)}
    sess.run(None, feeds)
    return sess, feeds


def _bare(sess: ort.InferenceSession, feeds: dict, calls: int) -> None:
    run = sess.run
    for _ in range(calls):
        run(None, feeds)


@pytest.mark.benchmark(group="timing-loop")
def test_timing_loop_overhead(benchmark, session_and_feeds) -> None:
    """One round = the bare loop and ``time_runs``, each timed; the minimum of each side over
    the rounds goes to ``extra_info`` for check_overhead.py."""
    sess, feeds = session_and_feeds
    per_sample = choose_loops(sess.run, feeds)   # as measure_artifact times this model
    samples_n = max(1, ITERATIONS // per_sample)
    calls = samples_n * per_sample
    loops = {"bare": lambda: _bare(sess, feeds, calls),
             "harness": lambda: time_runs(sess.run, feeds, samples_n, loops=per_sample)}
    times_s: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops)

    def one_round() -> None:
        order.reverse()
        for name in order:
            start = time.perf_counter()
            loops[name]()
            times_s[name].append(time.perf_counter() - start)

    for _ in range(WARMUP_ROUNDS):
        one_round()
    for samples in times_s.values():
        samples.clear()
    benchmark.pedantic(one_round, rounds=ROUNDS)
    samples = time_runs(sess.run, feeds, 3)
    assert len(samples) == 3 and min(samples) > 0
    bare_min, harness_min = min(times_s["bare"]), min(times_s["harness"])
    assert bare_min > 0 and harness_min > 0
    benchmark.extra_info.update(
        rounds=len(times_s["bare"]), calls_per_sample=per_sample, calls=calls,
        bare_min_ms=bare_min * 1e3,
        harness_min_ms=harness_min * 1e3,
        overhead_pct=100.0 * (harness_min - bare_min) / bare_min)
