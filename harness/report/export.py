"""Exports of a run for dashboards that already exist.

* ``gab-smaller`` / ``gab-bigger``: github-action-benchmark's ``customSmallerIsBetter`` and
  ``customBiggerIsBetter`` tools, a JSON list of ``{name, unit, value, range?, extra?}``.
* ``pytest-benchmark``: the JSON that ``pytest --benchmark-json`` writes (``machine_info``,
  ``commit_info``, ``benchmarks[].stats``, times in seconds), one benchmark per case with its
  raw warm samples as the rounds, so ``pytest-benchmark compare`` and tools built on that format
  read it. Statistics follow pytest-benchmark's own definitions (its quartile methods, Tukey
  fences, stdev outliers).
* ``llama-bench``: language-model cases as llama.cpp's ``llama-bench -o json`` records
  (:mod:`harness.report.llama_bench`).
"""

from __future__ import annotations

import bisect
import json
import platform
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from harness.core.measurement import Measurement
from harness.errors import InputError
from harness.registry import Registry
from harness.results import Run

PYTEST_BENCHMARK_FORMAT = "5.1.0"   # the writer version the file claims (fields of 4.x-5.x)


def _ok(run: Run) -> list[Measurement]:
    return [m for m in run.measurements if m.status == "ok"]


def gab_smaller(run: Run) -> list[dict[str, Any]]:
    """customSmallerIsBetter entries: host p50, predicted device latency, size, device memory.

    Entry names are the series names dashboards track, so they stay as they were ("device
    footprint" is the predicted device memory).
    """
    import numpy as np

    out: list[dict[str, Any]] = []
    for m in _ok(run):
        cid = m.case_id
        samples = np.asarray(m.samples_ns(), float) / 1e6
        if samples.size:
            p10, p50, p90 = np.percentile(samples, [10, 50, 90])
            out.append({"name": f"{cid} host p50 latency", "unit": "ms",
                        "value": round(float(p50), 6),
                        "range": f"p10..p90 {p10:.4f}..{p90:.4f}",
                        "extra": f"{samples.size} warm samples; run {run.path.name}"})
        pred = m.predicted
        if pred.latency_ms is not None:
            out.append({"name": f"{cid} predicted device latency", "unit": "ms",
                        "value": round(pred.latency_ms, 6), "extra": "emulator prediction"})
        if pred.sustained_latency_ms is not None:
            out.append({"name": f"{cid} predicted sustained latency", "unit": "ms",
                        "value": round(pred.sustained_latency_ms, 6)})
        if pred.energy_mj is not None:
            out.append({"name": f"{cid} predicted energy", "unit": "mJ/inference",
                        "value": round(pred.energy_mj, 6)})
        if m.artifact and m.artifact.size_bytes is not None:
            out.append({"name": f"{cid} artifact size", "unit": "KB",
                        "value": round(m.artifact.size_bytes / 1024, 3)})
        if pred.peak_memory_mb is not None:
            out.append({"name": f"{cid} device footprint", "unit": "MB",
                        "value": round(pred.peak_memory_mb, 3)})
    return out


def gab_bigger(run: Run) -> list[dict[str, Any]]:
    """customBiggerIsBetter entries: quality where higher is better, and fidelity."""
    out: list[dict[str, Any]] = []
    for m in _ok(run):
        q = m.quality
        if q is not None and q.higher_is_better is not False:
            out.append({"name": f"{m.case_id} {q.metric}", "unit": q.metric,
                        "value": float(q.value), "extra": f"{q.n_examples} examples"})
        fid = m.fidelity
        if fid is None or fid.error is not None:
            continue
        for key, unit in (("cosine", "cosine"), ("top1_agreement", "fraction"),
                          ("sqnr_db", "dB")):
            v = getattr(fid, key)
            if v is not None:
                out.append({"name": f"{m.case_id} fidelity {key}", "unit": unit,
                            "value": float(v)})
    return out


def pytest_benchmark_stats(data_s: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for raw samples in seconds (its definitions)."""
    data = sorted(data_s)
    n = len(data)
    if n == 0:
        raise ValueError("no samples")
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0

    def quartile(lower: bool) -> float:
        if n == 1:
            return data[0]
        if n % 2:  # method 3 (odd n), as pytest-benchmark computes it
            k, q = n // 4, n % 4
            if lower:
                return (0.25 * data[k - 1] + 0.75 * data[k]) if q == 1 else \
                    (0.75 * data[k] + 0.25 * data[k + 1])
            return (0.75 * data[3 * k] + 0.25 * data[3 * k + 1]) if q == 1 else \
                (0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2])
        return statistics.median(data[: n // 2] if lower else data[n // 2:])

    q1, q3 = quartile(True), quartile(False)
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(v < lo_fence or v > hi_fence for v in data)
    sd_out = sum(v < mean - stddev or v > mean + stddev for v in data)
    total = sum(data)
    return {"min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": n,
            "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
            "iqr_outliers": iqr_out, "stddev_outliers": sd_out,
            "outliers": f"{sd_out};{iqr_out}",
            "ld15iqr": data[0] if n == 1 else data[bisect.bisect_left(data, lo_fence)],
            "hd15iqr": data[0] if n == 1 else data[bisect.bisect_right(data, hi_fence) - 1],
            "ops": n / total if total else 0, "total": total, "iterations": 1,
            "data": list(data_s)}


def _calls_per_sample(m: Measurement) -> int:
    phase = m.measured.phase() if m.measured else None
    return phase.calls_per_sample if phase else 1


def pytest_benchmark(run: Run) -> dict[str, Any]:
    """A pytest-benchmark JSON document: one benchmark per ok case, raw warm samples as rounds."""
    manifest = run.manifest
    host = manifest.get("host") or {}
    git = manifest.get("git") or {}
    measure = manifest.get("measure") or {}
    benchmarks = []
    for m in _ok(run):
        samples = m.samples_ns()
        if not samples:
            continue
        pred = m.predicted
        param = f"{m.quant}-prune{m.prune}-{m.device_label}"
        benchmarks.append({
            "group": f"{m.workload} on {m.device_label}",
            "name": f"{m.workload}[{param}]",
            "fullname": m.case_id,
            "params": {"quant": m.quant, "prune": m.prune, "device": m.device_label},
            "param": param,
            "extra_info": {k: v for k, v in {
                "predicted_device_latency_ms": pred.latency_ms,
                "device_footprint_mb": pred.peak_memory_mb,   # the series name dashboards use
                "fits": pred.fits,
                "size_bytes": m.artifact.size_bytes if m.artifact else None,
                "quality_metric": m.quality.metric if m.quality else None,
                "quality": m.quality_value}.items() if v is not None},
            "options": {"disable_gc": False, "timer": "perf_counter_ns (edge-harness worker)",
                        "min_rounds": len(samples), "max_time": None, "min_time": None,
                        "precision": None, "confidence": None,
                        "warmup": bool(m.measured and m.measured.warmup_runs)},
            "stats": {**pytest_benchmark_stats([s / 1e9 for s in samples]),
                      "iterations": _calls_per_sample(m)},
        })
    return {
        "machine_info": {"node": host.get("hostname"), "processor": host.get("cpu_model"),
                         "machine": host.get("machine"),
                         "python_implementation": platform.python_implementation(),
                         "python_version": host.get("python"),
                         "system": (host.get("platform") or "").split("-")[0],
                         "release": host.get("platform"),
                         "cpu": {"brand_raw": host.get("cpu_model"),
                                 "count": host.get("logical_cpus")}},
        "commit_info": {"id": git.get("sha") or "unversioned", "time": manifest.get("created_at"),
                        "author_time": None, "dirty": bool(git.get("dirty")),
                        "project": "edge-harness", "branch": "(unknown)"},
        "benchmarks": benchmarks,
        "datetime": manifest.get("created_at"),
        "version": PYTEST_BENCHMARK_FORMAT,
        "edge_harness": {"run_id": manifest.get("run_id", run.path.name),
                         "threads": measure.get("threads")},
    }


EXPORTERS: Registry[Callable[[Run], Any]] = Registry("export format")
EXPORTERS.register("gab-smaller", gab_smaller)
EXPORTERS.register("gab-bigger", gab_bigger)
EXPORTERS.register("pytest-benchmark", pytest_benchmark)
# language-model cases as llama.cpp's llama-bench JSON (pp/tg records)
EXPORTERS.register("llama-bench", "harness.report.llama_bench:llama_bench")


def export(run: Run, fmt: str) -> str:
    """The run in one of :data:`EXPORTERS`' formats, as JSON text."""
    try:
        writer = EXPORTERS.get(fmt)
    except InputError as exc:
        raise InputError(str(exc), field="--format") from None
    return json.dumps(writer(run), indent=1) + "\n"
