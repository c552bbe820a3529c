"""Exports of a run for dashboards that already exist.

* ``gab-smaller`` / ``gab-bigger``: github-action-benchmark's ``customSmallerIsBetter`` and
  ``customBiggerIsBetter`` tools, a JSON list of ``{name, unit, value, range?, extra?}``.
* ``pytest-benchmark``: the JSON that ``pytest --benchmark-json`` writes (``machine_info``,
  ``commit_info``, ``benchmarks[].stats``, times in seconds), one benchmark per case with its
  raw warm samples as the rounds, so ``pytest-benchmark compare`` and tools built on that format
  read it. Statistics follow pytest-benchmark's own definitions (its quartile methods, Tukey
  fences, stdev outliers).
"""

from __future__ import annotations

import bisect
import json
import platform
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import InputError
from harness.results import Run

PYTEST_BENCHMARK_FORMAT = "5.1.0"   # the writer version the file claims (fields of 4.x-5.x)


def _ok_rows(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.rows if r.get("status") == "ok"]


def gab_smaller(run: Run) -> list[dict[str, Any]]:
    """customSmallerIsBetter entries: host p50, predicted device latency, size, footprint."""
    import numpy as np

    out: list[dict[str, Any]] = []
    for r in _ok_rows(run):
        cid = r["case_id"]
        samples = np.asarray((r.get("host") or {}).get("warm_latency_ns") or [], float) / 1e6
        if samples.size:
            p10, p50, p90 = np.percentile(samples, [10, 50, 90])
            out.append({"name": f"{cid} host p50 latency", "unit": "ms",
                        "value": round(float(p50), 6),
                        "range": f"p10..p90 {p10:.4f}..{p90:.4f}",
                        "extra": f"{samples.size} warm samples; run {run.path.name}"})
        pred = r.get("device_prediction") or {}
        if isinstance(pred.get("latency_ms"), int | float):
            out.append({"name": f"{cid} predicted device latency", "unit": "ms",
                        "value": round(float(pred["latency_ms"]), 6),
                        "extra": "emulator prediction"})
        if isinstance(pred.get("sustained_latency_ms"), int | float):
            out.append({"name": f"{cid} predicted sustained latency", "unit": "ms",
                        "value": round(float(pred["sustained_latency_ms"]), 6)})
        if isinstance(pred.get("energy_mj"), int | float):
            out.append({"name": f"{cid} predicted energy", "unit": "mJ/inference",
                        "value": round(float(pred["energy_mj"]), 6)})
        art = r.get("artifact") or {}
        if art.get("size_bytes") is not None:
            out.append({"name": f"{cid} artifact size", "unit": "KB",
                        "value": round(art["size_bytes"] / 1024, 3)})
        if isinstance(pred.get("footprint_mb"), int | float):
            out.append({"name": f"{cid} device footprint", "unit": "MB",
                        "value": round(float(pred["footprint_mb"]), 3)})
    return out


def gab_bigger(run: Run) -> list[dict[str, Any]]:
    """customBiggerIsBetter entries: quality where higher is better, and fidelity."""
    out: list[dict[str, Any]] = []
    for r in _ok_rows(run):
        q = r.get("quality") or {}
        if isinstance(q.get("value"), int | float) and q.get("higher_is_better") is not False:
            out.append({"name": f"{r['case_id']} {q['metric']}", "unit": q["metric"],
                        "value": float(q["value"]),
                        "extra": f"{q.get('n_examples')} examples"})
        for key, unit in (("cosine", "cosine"), ("top1_agreement", "fraction"),
                          ("sqnr_db", "dB")):
            v = (r.get("fidelity") or {}).get(key)
            if isinstance(v, int | float):
                out.append({"name": f"{r['case_id']} fidelity {key}", "unit": unit,
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


def pytest_benchmark(run: Run) -> dict[str, Any]:
    """A pytest-benchmark JSON document: one benchmark per ok case, raw warm samples as rounds."""
    m = run.manifest
    host = m.get("host") or {}
    git = m.get("git") or {}
    measure = m.get("measure") or {}
    benchmarks = []
    for r in _ok_rows(run):
        samples = (r.get("host") or {}).get("warm_latency_ns") or []
        if not samples:
            continue
        pred = r.get("device_prediction") or {}
        quality = r.get("quality") or {}
        benchmarks.append({
            "group": f"{r['workload']} on {r['device']}",
            "name": f"{r['workload']}[{r['quant']}-prune{r['prune']}-{r['device']}]",
            "fullname": r["case_id"],
            "params": {"quant": r["quant"], "prune": str(r["prune"]), "device": r["device"]},
            "param": f"{r['quant']}-prune{r['prune']}-{r['device']}",
            "extra_info": {k: v for k, v in {
                "predicted_device_latency_ms": pred.get("latency_ms"),
                "device_footprint_mb": pred.get("footprint_mb"),
                "fits": pred.get("fits"),
                "size_bytes": (r.get("artifact") or {}).get("size_bytes"),
                "quality_metric": quality.get("metric"),
                "quality": quality.get("value")}.items() if v is not None},
            "options": {"disable_gc": False, "timer": "perf_counter_ns (edge-harness worker)",
                        "min_rounds": len(samples), "max_time": None, "min_time": None,
                        "precision": None, "confidence": None,
                        "warmup": bool((r.get("host") or {}).get("warmup_runs"))},
            "stats": pytest_benchmark_stats([s / 1e9 for s in samples]),
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
        "commit_info": {"id": git.get("sha") or "unversioned", "time": m.get("created_at"),
                        "author_time": None, "dirty": bool(git.get("dirty")),
                        "project": "edge-harness", "branch": "(unknown)"},
        "benchmarks": benchmarks,
        "datetime": m.get("created_at"),
        "version": PYTEST_BENCHMARK_FORMAT,
        "edge_harness": {"run_id": m.get("run_id", run.path.name),
                         "threads": measure.get("threads")},
    }


EXPORTERS: dict[str, Callable[[Run], Any]] = {
    "gab-smaller": gab_smaller,
    "gab-bigger": gab_bigger,
    "pytest-benchmark": pytest_benchmark,
}


def export(run: Run, fmt: str) -> str:
    """The run in one of :data:`EXPORTERS`' formats, as JSON text."""
    if fmt not in EXPORTERS:
        raise InputError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}",
                         field="--format")
    return json.dumps(EXPORTERS[fmt](run), indent=1) + "\n"
