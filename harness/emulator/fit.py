"""Fitting the NPU's efficiency factors to published on-device latencies.

The parameters are physics, not per-model fudge: the share of peak the NPU reaches per op class
(conv, depthwise, matmul, elementwise, other), its per-node dispatch cost, its fp16 rate as a
share of its int8 rate, and the share of peak DRAM bandwidth kernels reach. They are shared by
every device fitted together (one NPU family), so what they learn carries over to devices
without measurements; each device keeps its own peaks and bandwidth from its profile.

Each observation is costed once with the emulator (``unit="npu"``: nodes the NPU cannot take
fall back to the CPU at fixed cost, as on the phone), which yields per-node work and bytes; the
fit then evaluates the roofline over those arrays, which is fast enough for least squares on
log errors. :func:`evaluate` re-checks the result with the full emulator afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.emulator.costmodel import predict_latency
from harness.emulator.graph import Graph
from harness.errors import InputError
from harness.profiles import OP_CLASSES, DeviceProfile, Figure

FIT_UNIT = "npu"
# name, lower, upper, start
PARAMETERS: tuple[tuple[str, float, float, float], ...] = (
    *((f"efficiency.{c}", 1e-3, 1.0, 0.3) for c in OP_CLASSES),
    ("dispatch_us", 0.1, 2000.0, 20.0),
    ("fp16_share_of_int8", 0.05, 1.0, 0.5),
    ("bandwidth_efficiency", 0.05, 1.0, 0.6),
    # Handing a tensor between the CPU and the NPU (inputs in, outputs back, around CPU
    # fallbacks): a fixed cost per crossing, the same at every precision, so small models'
    # int8/fp16 ratio pins it down.
    ("handoff_us", 0.1, 2000.0, 100.0),
)


@dataclass(frozen=True)
class Observation:
    """A published latency: a model graph on a device at a precision."""

    label: str              # e.g. "resnet50 / snapdragon8gen3 / TFLITE / w8a8"
    model: str
    graph: Graph
    profile: DeviceProfile
    precision: str          # what-if precision the model is costed at (fp16, int8, int4)
    observed_ms: float


@dataclass(frozen=True)
class _Arrays:
    work: np.ndarray        # ops per NPU node
    nbytes: np.ndarray
    cls: np.ndarray         # op class index
    fixed_ms: float         # CPU fallbacks and transfer bytes: not fitted
    handoffs: float         # CPU<->NPU crossings, each costing the fitted handoff_us
    peak_int8_gops: float
    bandwidth_gb_s: float
    precision: str


# Local memory sizes tried for the NPU (MiB; 0 = none): the DRAM traffic it saves is a step
# function, so it is searched on a grid while the smooth parameters are fitted for each value.
ONCHIP_MB_GRID = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)


def _with_onchip(profile: DeviceProfile, onchip_mb: float) -> DeviceProfile:
    units = tuple(replace(u, onchip_mb=Figure(value=onchip_mb, basis="fitted",
                                              source="fitted (in memory)"))
                  if u.name == FIT_UNIT else u for u in profile.units)
    return replace(profile, units=units)


def _with_handoff(profile: DeviceProfile, handoff_us: float) -> DeviceProfile:
    units = tuple(replace(u, handoff_us=Figure(value=handoff_us, basis="fitted",
                                               source="fitted (in memory)"))
                  if u.name == FIT_UNIT else u for u in profile.units)
    return replace(profile, units=units)


def _arrays(obs: Observation, onchip_mb: float = 0.0) -> _Arrays:
    profile = _with_onchip(obs.profile, onchip_mb)
    npu = profile.unit(FIT_UNIT)
    lat = predict_latency(obs.graph, profile, unit=FIT_UNIT, precision=obs.precision)
    on_npu = [n for n in lat.nodes if n.unit == FIT_UNIT and n.bound != "fused"]
    fixed = sum(n.time_ms for n in lat.nodes if n.unit not in (None, FIT_UNIT))
    fixed += sum(n.transfer_ms for n in on_npu) + lat.output_transfer_ms
    # With the NPU forced, placement does not depend on the hand-off cost, so the fixed time
    # is linear in it: cost it once more without hand-offs and count the crossings.
    handoff_ms = npu.handoff_us.value / 1e3
    if handoff_ms > 0:
        free = predict_latency(obs.graph, _with_handoff(profile, 0.0), unit=FIT_UNIT,
                               precision=obs.precision)
        crossings = (lat.latency_ms - free.latency_ms) / handoff_ms
        fixed -= lat.latency_ms - free.latency_ms
    else:
        crossings = 0.0
    int8 = npu.peak_gops.get("int8") or npu.peak_gops.get("fp16")
    assert int8 is not None
    return _Arrays(
        work=np.array([n.work_gops * 1e9 for n in on_npu]),
        nbytes=np.array([n.bytes_mb * 2**20 for n in on_npu]),
        cls=np.array([OP_CLASSES.index(n.op_class) for n in on_npu], dtype=int),
        fixed_ms=fixed, handoffs=crossings, peak_int8_gops=int8.value,
        bandwidth_gb_s=obs.profile.memory.bandwidth_gb_s.value,
        precision=max((n.run_precision for n in on_npu), key=["int4", "int8", "fp16",
                                                                "fp32"].index,
                      default=obs.precision))


def _predict(a: _Arrays, theta: np.ndarray) -> float:
    n = len(OP_CLASSES)
    eff = theta[:n][a.cls]
    dispatch_ms, fp16_share, bw_eff = theta[n] / 1e3, theta[n + 1], theta[n + 2]
    handoff_ms = theta[n + 3] / 1e3
    peak = a.peak_int8_gops * (fp16_share if a.precision in ("fp16", "fp32") else 1.0)
    compute = a.work / (peak * eff * 1e6)
    memory = a.nbytes / (a.bandwidth_gb_s * bw_eff * 1e6)
    return float(np.maximum(compute, memory).sum() + dispatch_ms * len(a.work) + a.fixed_ms
                 + handoff_ms * a.handoffs)


def independent_targets(observations: Sequence[Observation]) -> int:
    """Distinct (model, precision) pairs among ``observations``.

    The parameters are shared by every device and the devices differ only in their peaks and
    bandwidth, so the same model at the same precision on another phone mostly re-measures
    the same efficiencies: the guard against overfitting counts these pairs, not rows.
    """
    return len({(o.model, o.precision) for o in observations})


@dataclass(frozen=True)
class FitResult:
    parameters: dict[str, float]
    rows: tuple[dict[str, Any], ...]   # label, model, device, observed_ms, predicted_ms, error

    @property
    def median_abs_pct_error(self) -> float:
        return float(np.median([abs(r["error_pct"]) for r in self.rows]))


def fit(observations: Sequence[Observation], *,
        onchip_grid: Sequence[float] = ONCHIP_MB_GRID) -> FitResult:
    """Least squares on log(predicted / observed) over all observations.

    The NPU's local memory size is chosen from ``onchip_grid`` (the best fit wins). Refuses
    (InputError) to fit more free parameters than there are independent targets (see
    :func:`independent_targets`): such a fit would reproduce its data and predict nothing.
    """
    from scipy.optimize import least_squares

    free = len(PARAMETERS) + 1          # + the local memory size chosen on the grid
    independent = independent_targets(observations)
    if free >= independent:
        raise InputError(
            f"{free} free parameters but only {independent} independent targets (distinct "
            "model and precision): add published rows of more models or precisions",
            field="observations")

    observed = np.array([o.observed_ms for o in observations])
    lo = np.log([p[1] for p in PARAMETERS])
    hi = np.log([p[2] for p in PARAMETERS])
    start = np.log([p[3] for p in PARAMETERS])
    best: tuple[float, float, np.ndarray, list[_Arrays]] | None = None
    for onchip in onchip_grid:
        arrays = [_arrays(o, onchip) for o in observations]

        def residuals(log_theta: np.ndarray, arrays: list[_Arrays] = arrays) -> np.ndarray:
            theta = np.exp(log_theta)
            return np.log([_predict(a, theta) for a in arrays]) - np.log(observed)

        # Soft-L1 keeps a few anomalous published rows from dragging every parameter.
        sol = least_squares(residuals, start, bounds=(lo, hi), loss="soft_l1", f_scale=0.3)
        if best is None or sol.cost < best[0]:
            best = (float(sol.cost), onchip, np.exp(sol.x), arrays)
    assert best is not None
    _, onchip, theta, arrays = best
    params = {p[0]: float(v) for p, v in zip(PARAMETERS, theta, strict=True)}
    params["onchip_mb"] = onchip
    rows = tuple(_row(o, _predict(a, theta)) for o, a in zip(observations, arrays, strict=True))
    return FitResult(parameters=params, rows=rows)


def _row(o: Observation, predicted_ms: float) -> dict[str, Any]:
    return {"label": o.label, "model": o.model, "device": o.profile.name,
            "precision": o.precision, "observed_ms": o.observed_ms,
            "predicted_ms": predicted_ms,
            "error_pct": 100.0 * (predicted_ms - o.observed_ms) / o.observed_ms}


def fitted_figures(params: dict[str, float], *, source: str) -> dict[str, Any]:
    """The fitted parameters as profile figure tables (for the overlay), by field path."""
    def figure(value: float, what: str) -> dict[str, Any]:
        return {"value": float(f"{value:.4g}"), "basis": "fitted",
                "source": f"fitted: {what}; {source}"}

    out: dict[str, Any] = {
        "units.npu.efficiency": figure(params["efficiency.conv"],
                                       "NPU share of peak on dense convolutions"),
        "units.npu.dispatch_us": figure(params["dispatch_us"], "NPU cost per node (us)"),
        "units.npu.handoff_us": figure(params["handoff_us"],
                                       "cost of a tensor crossing between CPU and NPU (us)"),
        "memory.bandwidth_efficiency": figure(params["bandwidth_efficiency"],
                                              "share of peak DRAM bandwidth reached"),
        "units.npu.onchip_mb": figure(params["onchip_mb"],
                                      "NPU local memory that keeps activations off DRAM (MiB, "
                                      f"best of the grid {list(ONCHIP_MB_GRID)})"),
    }
    for c in OP_CLASSES:
        out[f"units.npu.op_efficiency.{c}"] = figure(params[f"efficiency.{c}"],
                                                     f"NPU share of peak on {c} ops")
    return out


def apply_parameters(profile: DeviceProfile, params: dict[str, float]) -> DeviceProfile:
    """``profile`` with the fitted NPU parameters in place (for checking a fit)."""
    def fig(v: float) -> Figure:
        return Figure(value=v, basis="fitted", source="fitted (in memory)")

    units = []
    for u in profile.units:
        if u.name == FIT_UNIT:
            peaks = dict(u.peak_gops)
            if "int8" in peaks and "fp16" in peaks:
                peaks["fp16"] = fig(peaks["int8"].value * params["fp16_share_of_int8"])
            u = replace(u, efficiency=fig(params["efficiency.conv"]),
                        onchip_mb=fig(params.get("onchip_mb", 0.0)),
                        dispatch_us=fig(params["dispatch_us"]),
                        handoff_us=fig(params.get("handoff_us", u.handoff_us.value)),
                        op_efficiency={c: fig(params[f"efficiency.{c}"]) for c in OP_CLASSES},
                        peak_gops=peaks)
        units.append(u)
    memory = replace(profile.memory, bandwidth_efficiency=fig(params["bandwidth_efficiency"]))
    return replace(profile, units=tuple(units), memory=memory)


def evaluate(observations: Sequence[Observation], params: dict[str, float], *,
             unit: str = FIT_UNIT) -> list[dict[str, Any]]:
    """Errors of the full emulator with ``params`` applied (the honest check of a fit)."""
    out = []
    for o in observations:
        prof = apply_parameters(o.profile, params)
        lat = predict_latency(o.graph, prof, unit=unit, precision=o.precision)
        out.append(_row(o, lat.latency_ms))
    return out


def rank_agreement(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per (device, precision): Kendall's tau between predicted and observed model order."""
    from scipy.stats import kendalltau

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['device']} / {r['precision']}", []).append(r)
    out = {}
    for key, group in sorted(groups.items()):
        if len(group) < 3:
            continue
        tau = kendalltau([g["observed_ms"] for g in group], [g["predicted_ms"] for g in group])
        out[key] = float(tau.statistic) if not math.isnan(tau.statistic) else 0.0
    return out

