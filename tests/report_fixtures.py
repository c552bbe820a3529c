"""Small, honest run fixtures for the report tests.

Rows follow the results format (docs/results-format.md): raw warm samples are drawn from a
seeded log-normal around a chosen median (so statistics have something real to chew on), and
the optional fields other issues add (device_trace, power, fidelity, named levels) are filled in
where a test asks for them. Nothing here pretends to be a measurement: the values are chosen so
that the expected outputs can be computed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness import results
from harness.core.measurement import Measurement, upgrade_row_v1


def samples_ns(median_ms: float, *, sigma: float = 0.02, n: int = 200, seed: int = 0
               ) -> list[int]:
    """Log-normal samples (ns) whose population median is ``median_ms``."""
    rng = np.random.default_rng(seed)
    return [int(v) for v in median_ms * 1e6 * np.exp(rng.normal(0.0, sigma, n))]


def thermal_trace(base_ms: float, *, n: int = 40, dt_s: float = 1.0, ambient_c: float = 25.0,
                  rise_c: float = 30.0, tau_s: float = 10.0, throttle_c: float = 45.0,
                  slope_per_c: float = 0.02) -> dict[str, list[float]]:
    """A lumped-model-shaped trace: temperature rises to ambient + rise, clock drops above the
    throttle point, latency = base / clock."""
    t = np.arange(n) * dt_s
    temp = ambient_c + rise_c * (1 - np.exp(-t / tau_s))
    clock = np.clip(1 - slope_per_c * np.maximum(temp - throttle_c, 0), 0.3, 1.0)
    return {"time_s": t.tolist(), "latency_ms": (base_ms / clock).tolist(),
            "temp_c": temp.tolist(), "clock_fraction": clock.tolist()}


def row(workload: str, quant: str, prune: str, device: str, *, status: str = "ok",
        median_ms: float | None = 1.0, sigma: float = 0.02, seed: int = 0,
        device_ms: float | None = 2.0, footprint_mb: float | None = 100.0,
        app_cap_mb: float = 1000.0, size_bytes: int = 100_000,
        quality: float | None = 0.95, metric: str = "top1_accuracy",
        higher_is_better: bool = True, **extra: Any) -> dict[str, Any]:
    """One result row in the version 1 layout (read through the v1 -> v2 upgrade, as every
    run written before the backend seam is); ``extra`` adds or overrides top-level fields."""
    r: dict[str, Any] = {
        "schema_version": 1,
        "case_id": f"{workload}/{quant}/prune-{prune}/{device}", "workload": workload,
        "quant": quant, "precision": "int8" if "int8" in quant else "fp32", "prune": prune,
        "prune_method": "magnitude", "device": device, "backend": "emulated",
        "status": status, "reason": "" if status == "ok" else f"fixture says {status}",
        "started_at": "2026-11-22T08:00:00+00:00", "duration_s": 1.0,
        "artifact": {"path": "/nonexistent/model.onnx", "sha256": "0" * 64,
                     "size_bytes": size_bytes, "params": 1000, "zero_params": 0,
                     "sparsity": 0.0},
        "device_prediction": None, "host": None, "quality": None,
    }
    if device_ms is not None or footprint_mb is not None:
        r["device_prediction"] = {"latency_ms": device_ms, "footprint_mb": footprint_mb,
                                  "app_cap_mb": app_cap_mb,
                                  "fits": None if footprint_mb is None
                                  else footprint_mb <= app_cap_mb}
    if median_ms is not None and status == "ok":
        r["host"] = {"runtime": "onnxruntime", "threads": 1,
                     "cold_start": {"session_create_ns": 4_000_000,
                                    "first_inference_ns": 500_000},
                     "warmup_runs": 20, "peak_rss_mb": 60.0,
                     "warm_latency_ns": samples_ns(median_ms, sigma=sigma, seed=seed)}
    if quality is not None and status == "ok":
        r["quality"] = {"metric": metric, "value": quality, "n_examples": 450,
                        "higher_is_better": higher_is_better}
    for key, value in extra.items():
        if key in ("device_prediction",) and isinstance(value, dict):
            r[key] = {**(r[key] or {}), **value}
        else:
            r[key] = value
    return r


def make_run(results_dir: Path, rows: list[dict[str, Any]], *, label: str = "fixture",
             devices: list[str] | None = None, host: dict[str, Any] | None = None) -> Path:
    """A run directory written through the real results writer."""
    run_dir = results.create_run(results_dir, label=label, manifest={
        "created_at": "2026-11-22T08:00:00+00:00", "suite": {"name": "fixture"},
        "devices": devices or sorted({r["device"] for r in rows}), "backends": ["emulated"],
        "measure": {"warmup": 20, "iterations": 200, "threads": 1},
        "host": host or {"hostname": "fixture", "cpu_model": "Fixture CPU", "logical_cpus": 2,
                         "machine": "x86_64", "python": "3.11.7",
                         "platform": "Linux-6-x86_64"},
        "git": {"sha": "f" * 40, "dirty": False}})
    for r in rows:
        results.append_row(run_dir, r)
    return run_dir


def rich_rows() -> list[dict[str, Any]]:
    """Two devices, two workloads, issue-3/4 fields on some rows, every status."""
    rows = []
    levels = [("fp32", "0", 1.0, 4.0, 0.95, 400_000), ("int8-static", "0", 0.6, 1.0, 0.94,
                                                       110_000),
              ("fp16", "2:4", 0.8, 2.0, 0.95, 200_000),
              ("int4", "channel-l1-25", 0.5, 0.8, 0.90, 60_000),
              ("int8-dynamic", "30", 0.9, 3.0, 0.93, 120_000)]
    for dev, scale, cap in (("phone", 1.0, 1000.0), ("board", 3.0, 1000.0)):
        for i, (q, p, host_ms, dev_ms, qual, size) in enumerate(levels):
            extra: dict[str, Any] = {}
            if dev == "phone":
                extra["device_prediction"] = {"sustained_latency_ms": dev_ms * 1.4,
                                              "avg_power_w": 2.0, "energy_mj": dev_ms * 2.0,
                                              "battery_wh": 15.0}
                extra["device_trace"] = thermal_trace(dev_ms)
            if q != "fp32":
                extra["fidelity"] = {"cosine": 0.999 - 0.001 * i, "top1_agreement": 0.98,
                                     "sqnr_db": 30.0 - i}
            rows.append(row("vision", q, p, dev, median_ms=host_ms, seed=i,
                            device_ms=dev_ms * scale, quality=qual, size_bytes=size,
                            app_cap_mb=cap, footprint_mb=100.0 + size / 1e4, **extra))
        rows.append(row("vision", "int8-static", "50", dev, status="oom", median_ms=None,
                        device_ms=0.9 * scale, footprint_mb=5000.0, quality=None))
        rows.append(row("vision", "int8-static", "90", dev, status="unsupported",
                        median_ms=None, device_ms=None, footprint_mb=None, quality=None))
        # a workload without a quality metric (a user's ONNX file), one noisy row
        rows.append(row("mine", "fp32", "0", dev, median_ms=2.0, sigma=0.4, seed=9,
                        device_ms=5.0 * scale, quality=None))
    return rows


def measurement(r: dict[str, Any]) -> Measurement:
    """The Measurement a reader gets for a fixture row (v1 layout, upgraded)."""
    return Measurement.from_row(upgrade_row_v1(r))
