"""TensorFlow Lite's ``benchmark_model`` on the phone: its command line and its output.

The output followed is that of ``tensorflow/lite/tools/benchmark`` (TF 2.x; lines may carry an
``INFO: `` prefix, or a logcat prefix when read from ``adb logcat``; long lines are wrapped
here at ``\\``)::

    INFO: Initialized session in 3.337ms.
    INFO: count=9 first=81913 curr=55502 min=55502 max=81913 avg=58984.7 std=8115
    INFO: count=50 first=56576 curr=56299 min=54669 max=60236 avg=56265.8 std=982 \
          p5=54901 median=56210 p95=58013
    INFO: Inference timings in us: Init: 3337, First inference: 81913, Warmup (avg): \
          58984.7, Inference (avg): 56265.8
    INFO: Peak memory footprint (MB): init=4.92969 overall=138.809

The ``count=`` lines are the warm-up runs, then the timed runs (µs; ``p5``/``median``/``p95``
only in recent releases): the last one is kept. The memory line is the process's peak RSS
(``max_rss_kb / 1024``); ``Overall peak memory footprint (MB) via periodic monitoring: X`` is
preferred when present; the older ``Memory footprint delta from the start of the tool`` is a
delta, not a peak, and is not taken as one. Like ``onnxruntime_perf_test`` it prints no
per-inference times: the row keeps these statistics as the phase's ``summary``.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.backends.adb.perf_test import PerfTestOutputError, PerfTestResult

PERF_TEST = "onnxruntime_perf_test"
BENCHMARK_MODEL = "benchmark_model"
# runner kind -> the artifact format it runs
RUNNER_FORMATS = {PERF_TEST: "onnx", BENCHMARK_MODEL: "tflite"}

_NUM = r"(-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_STATS = {"count": "count", "avg": "mean_ns", "min": "min_ns", "max": "max_ns",
          "std": "std_ns", "p5": "p5_ns", "median": "p50_ns", "p95": "p95_ns"}


def runner_kind(runner: Path, given: str | None = None) -> str:
    """The runner's kind: ``given`` (``--runner-kind``), else from its file name
    (``benchmark_model`` in it: TFLite's; anything else: ONNX Runtime's perf test)."""
    if given is not None:
        return given
    return BENCHMARK_MODEL if BENCHMARK_MODEL in runner.name.lower() else PERF_TEST


def benchmark_model_args(model: str, *, iterations: int, threads: int) -> list[str]:
    """Arguments timing exactly ``iterations`` runs of ``model`` (``--min_secs=0``: the
    tool's default would keep running for a second), after one warm-up run."""
    args = [f"--graph={model}", f"--num_runs={max(1, iterations)}", "--min_secs=0",
            "--warmup_runs=1", "--warmup_min_secs=0"]
    if threads > 0:
        args.append(f"--num_threads={threads}")
    return args


def parse_benchmark_model(text: str) -> PerfTestResult:
    """The figures of ``benchmark_model`` output (ns, bytes); PerfTestOutputError when it
    has no inference average (the tool failed: ``Benchmarking failed.``...)."""
    timings = re.search(
        rf"Inference timings in us:\s*Init:\s*{_NUM},\s*First inference:\s*{_NUM},"
        rf"\s*Warmup \(avg\):\s*{_NUM},\s*Inference \(avg\):\s*{_NUM}", text)
    stats = [dict(re.findall(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)={_NUM}",
                             line))
             for line in text.splitlines() if re.search(r"\bcount=\d+\s+first=", line)]
    summary: dict[str, float] = {}
    if stats:
        for key, value in stats[-1].items():     # the last: the timed runs
            if key in _STATS:
                v = float(value)
                summary[_STATS[key]] = v if key == "count" else v * 1e3
    if timings is not None:
        summary["mean_ns"] = float(timings.group(4)) * 1e3
    if "mean_ns" not in summary:
        tail = " | ".join(text.strip().splitlines()[-2:])
        raise PerfTestOutputError(f"no 'Inference timings in us' line in benchmark_model's "
                                  f"output ({tail[-200:]})")
    load_us = first_us = None
    if timings is not None:
        load_us, first_us = float(timings.group(1)), float(timings.group(2))
    else:
        init = re.search(rf"Initialized session in\s*{_NUM}\s*ms", text)
        load_us = None if init is None else float(init.group(1)) * 1e3
    peak = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*{_NUM}",
                     text) or re.search(rf"Peak memory footprint \(MB\):.*?overall=\s*{_NUM}",
                                        text)
    return PerfTestResult(
        summary=summary, load_ns=None if load_us is None else int(load_us * 1e3),
        first_inference_ns=None if first_us is None else int(first_us * 1e3),
        peak_memory_bytes=None if peak is None else int(float(peak.group(1)) * 2**20))
