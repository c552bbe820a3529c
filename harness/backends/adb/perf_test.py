"""ONNX Runtime's ``onnxruntime_perf_test`` on the phone: its command line and its output.

The output format followed is ONNX Runtime 1.17's ``performance_runner.cc`` (also 1.14-1.19):
``Session creation time cost: 0.0336 s``, ``First inference time cost: 2 ms``, ``Total
inference requests: 100``, ``Average inference time cost: 1.53 ms`` (later releases print
``Average inference time cost total: ...``: read too), ``Peak working set size: N bytes`` and,
with ``-s``, ``Min Latency``, ``Max Latency``, ``P50``/``P90``/``P95``/``P99``/``P999 Latency:
X s``. The runner prints no per-inference times, so a row keeps these statistics as the
phase's ``summary`` and no raw samples (see docs/adb.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_SECONDS = {"s": 1e9, "sec": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}
_PERCENTILES = {"Min": "min_ns", "Max": "max_ns", "P50": "p50_ns", "P90": "p90_ns",
                "P95": "p95_ns", "P99": "p99_ns", "P999": "p999_ns"}


def perf_test_args(model: str, *, iterations: int, threads: int) -> list[str]:
    """Arguments (after the binary) timing ``iterations`` runs of ``model`` on the CPU with
    generated inputs (``-I``; free dimensions are 1) and printing the statistics (``-s``)."""
    args = ["-e", "cpu", "-m", "times", "-r", str(max(1, iterations)), "-I", "-s"]
    if threads > 0:
        args += ["-x", str(threads)]
    return [*args, model]


@dataclass(frozen=True)
class PerfTestResult:
    """What the runner printed, in ns (None: not printed)."""

    summary: dict[str, float] = field(default_factory=dict)   # count, mean_ns, p50_ns...
    load_ns: int | None = None
    first_inference_ns: int | None = None
    peak_memory_bytes: int | None = None


class PerfTestOutputError(ValueError):
    """The output has no average inference time: the runner did not finish a run."""


def parse_perf_test(text: str) -> PerfTestResult:
    """The figures of ``onnxruntime_perf_test`` output; raises PerfTestOutputError when the
    average inference time is missing."""
    def time_ns(label: str) -> float | None:
        m = re.search(rf"^\s*{label}\s*(?::|is)\s*{_NUM}\s*(s|sec|ms|us|ns)\b", text,
                      re.MULTILINE)
        return None if m is None else float(m.group(1)) * _SECONDS[m.group(2)]

    summary: dict[str, float] = {}
    mean = time_ns(r"Average inference time cost(?: total)?")
    if mean is None:
        raise PerfTestOutputError("no 'Average inference time cost' line in the runner's "
                                  "output")
    summary["mean_ns"] = mean
    count = re.search(rf"^\s*Total inference requests:\s*{_NUM}", text, re.MULTILINE)
    if count:
        summary["count"] = float(count.group(1))
    for label, key in _PERCENTILES.items():
        v = time_ns(rf"{label} Latency")
        if v is not None:
            summary[key] = v
    load, first = time_ns("Session creation time cost"), time_ns("First inference time cost")
    peak = re.search(rf"^\s*Peak working set size:\s*{_NUM}\s*bytes", text, re.MULTILINE)
    return PerfTestResult(
        summary=summary, load_ns=None if load is None else int(load),
        first_inference_ns=None if first is None else int(first),
        peak_memory_bytes=None if peak is None else int(float(peak.group(1))))
