"""Benchmark: the harness timing loop against a bare ``session.run`` loop.

Run with ``nox -s benchmarks``; check_overhead.py then fails if the harness loop costs more
than 1% over the bare loop. In the normal test run (benchmarks disabled) each runs once, which
still checks that both loops work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.measure import time_runs

ITERATIONS = 500


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


def _bare(sess: ort.InferenceSession, feeds: dict) -> None:
    run = sess.run
    for _ in range(ITERATIONS):
        run(None, feeds)


@pytest.mark.benchmark(group="timing-loop")
def test_bare_session_run_loop(benchmark, session_and_feeds) -> None:
    sess, feeds = session_and_feeds
    benchmark.pedantic(_bare, args=(sess, feeds), rounds=60, warmup_rounds=3)


@pytest.mark.benchmark(group="timing-loop")
def test_harness_timing_loop(benchmark, session_and_feeds) -> None:
    sess, feeds = session_and_feeds
    samples = benchmark.pedantic(time_runs, args=(sess.run, feeds, ITERATIONS), rounds=60,
                                 warmup_rounds=3)
    assert len(samples) == ITERATIONS and min(samples) > 0
