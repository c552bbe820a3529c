"""``harness calibrate``: fit the NPU parameters on published latencies and report the error.

Targets are the AI Hub NPU rows of runtimes TFLITE and QNN_DLC in
``harness/calibration/data/published_latency.csv`` (the calibration README there calls them
the trustworthy ones), median over releases (the newest release where releases disagree more
than 2x: see harness.calibration.published). Reference architectures are built in PyTorch at the
published input sizes (:mod:`harness.calibration.refmodels`) and costed by the emulator with the
NPU forced, as AI Hub runs them. The fit (:mod:`harness.emulator.fit`) is shared by all fitted
devices; the report gives the in-sample error and, more honestly, the leave-one-device-out
error (fit on the other devices, predict this one), which is what a device without
measurements can expect, and the leave-one-model-out error (fit without any row of this
model, predict its rows), which is what a model outside the reference set can expect: the
parameters are meant to be physics, and this is the test that they are not fitted to the
models. Published GPU and CPU rows are then costed as a check (not fitted: there are too few
of them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from harness.emulator.fit import (
    FIT_UNIT,
    PARAMETERS,
    Observation,
    apply_parameters,
    evaluate,
    fit,
    fitted_figures,
    independent_targets,
)
from harness.errors import InputError
from harness.fsutil import atomic_write_text
from harness.profiles import FITTED_OVERLAY, default_devices_dir, list_profiles, load_profile

# AI Hub precision -> what-if precision of the float reference model. 16-bit activations run
# at the fp16 rate with 8-bit weight bytes (w8a16); "mixed_int16" keeps a share of the layers
# (AI Hub: 10%) at 16 bits, costed here as the rest of the model.
PRECISION_MAP = {"float": "fp16", "w8a8": "int8", "w8a8_mixed_int16": "int8",
                 "w8a16": "w8a16", "w8a16_mixed_int16": "w8a16", "w4a16": "int4"}


@dataclass(frozen=True)
class CalibrationReport:
    parameters: dict[str, float]
    in_sample: list[dict[str, Any]]
    leave_one_device_out: list[dict[str, Any]]
    skipped: list[str]
    rank_agreement: dict[str, float]
    # Published rows of other units, costed but not fitted (see unit_checks).
    unit_checks: list[dict[str, Any]] = field(default_factory=list)
    # Each reference model's rows predicted by a fit made without that model.
    leave_one_model_out: list[dict[str, Any]] = field(default_factory=list)
    # distinct (model, precision) pairs the fit rests on (emulator.fit.independent_targets)
    independent_targets: int = 0

    def validations(self) -> dict[str, list[dict[str, Any]]]:
        """The three views of the error, by name, in the order they are reported."""
        return {"in sample": self.in_sample, "leave one device out": self.leave_one_device_out,
                "leave one model out": self.leave_one_model_out}

    def overall(self) -> dict[str, dict[str, float]]:
        """Per validation: median and worst |error| % and the number of rows."""
        out = {}
        for name, rows in self.validations().items():
            if rows:
                errs = [abs(r["error_pct"]) for r in rows]
                out[name] = {"median_abs_pct": median(errs), "worst_abs_pct": max(errs),
                             "rows": len(errs)}
        return out

    def summary_by(self, key: str, rows: list[dict[str, Any]]) -> dict[str, float]:
        groups: dict[str, list[float]] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(abs(r["error_pct"]))
        return {k: median(v) for k, v in sorted(groups.items())}

    def by_model_and_device(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per (model, device): the median predicted/published ratio over its rows (every
        runtime and precision) and their count, furthest from 1 first (a ratio of 2 or 0.5
        is a model predicted 2x off on that phone)."""
        groups: dict[tuple[str, str], list[float]] = {}
        for r in rows:
            groups.setdefault((r["model"], r["device"]), []).append(1 + r["error_pct"] / 100)
        out = [{"model": m, "device": d, "median_ratio": median(v), "rows": len(v)}
               for (m, d), v in groups.items()]
        return sorted(out, key=lambda g: -abs(math.log(g["median_ratio"])))

    def to_json(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "in_sample": self.in_sample,
                "leave_one_device_out": self.leave_one_device_out,
                "leave_one_model_out": self.leave_one_model_out, "skipped": self.skipped,
                "overall": self.overall(), "summary": {
                    by: {name: self.summary_by(by, rows)
                         for name, rows in self.validations().items() if rows}
                    for by in ("device", "model", "precision")},
                "rank_agreement": self.rank_agreement, "unit_checks": self.unit_checks,
                "independent_targets": self.independent_targets,
                "by_model_and_device": {name: self.by_model_and_device(rows)
                                        for name, rows in self.validations().items() if rows}}


def observations(*, cache_dir: Path, progress: Callable[[str], None] | None = None
                 ) -> tuple[list[Observation], list[str]]:
    """The published NPU targets as emulator observations, and what was left out and why."""
    from harness.calibration.published import calibration_targets
    from harness.calibration.refmodels import REFERENCE_MODELS
    from harness.emulator import load_graph

    obs: list[Observation] = []
    skipped: list[str] = []
    graphs: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    for t in calibration_targets():
        label = f"{t.model} / {t.profile} / {t.runtime} / {t.precision}"
        if t.precision not in PRECISION_MAP:
            skipped.append(f"{label}: precision {t.precision} is not modelled")
            continue
        if t.model not in REFERENCE_MODELS:
            skipped.append(f"{label}: no reference architecture")
            continue
        if t.model not in graphs:
            if progress:
                progress(f"building reference model {t.model} ...")
            graphs[t.model] = load_graph(REFERENCE_MODELS[t.model].build_onnx(cache_dir))
        if t.profile not in profiles:
            # The hand-written figures: a fit must not start from (and so depend on) the last.
            profiles[t.profile] = load_profile(t.profile, fitted=False)
        prof = profiles[t.profile]
        if not any(u.name == FIT_UNIT for u in prof.units):
            skipped.append(f"{label}: profile has no {FIT_UNIT} unit")
            continue
        obs.append(Observation(label=label, model=t.model, graph=graphs[t.model], profile=prof,
                               precision=PRECISION_MAP[t.precision], observed_ms=t.value))
    if not obs:
        raise InputError("no calibration targets could be used")
    return obs, skipped


def run_calibration(*, cache_dir: Path, progress: Callable[[str], None] | None = None
                    ) -> CalibrationReport:
    """Fit on every target, check with the full emulator, and cross-validate by device and
    by model."""
    from harness.emulator.fit import rank_agreement

    obs, skipped = observations(cache_dir=cache_dir, progress=progress)
    if progress:
        progress(f"fitting {len(PARAMETERS) + 1} parameters on {len(obs)} published latencies "
                 f"({independent_targets(obs)} independent: distinct model and precision) ...")
    result = fit(obs)
    in_sample = evaluate(obs, result.parameters)
    lodo: list[dict[str, Any]] = []
    devices = sorted({o.profile.name for o in obs})
    for dev in devices:
        train = [o for o in obs if o.profile.name != dev]
        test = [o for o in obs if o.profile.name == dev]
        if not train:
            continue
        if progress:
            progress(f"leave-one-device-out: predicting {dev} from the others ...")
        lodo += evaluate(test, fit(train).parameters)
    lomo: list[dict[str, Any]] = []
    for model in sorted({o.model for o in obs}):
        train = [o for o in obs if o.model != model]
        test = [o for o in obs if o.model == model]
        if not train:
            continue
        if progress:
            progress(f"leave-one-model-out: predicting {model} from the others ...")
        lomo += evaluate(test, fit(train).parameters)
    return CalibrationReport(parameters=result.parameters, in_sample=in_sample,
                             leave_one_device_out=lodo, leave_one_model_out=lomo,
                             skipped=skipped, independent_targets=independent_targets(obs),
                             rank_agreement=rank_agreement(in_sample),
                             unit_checks=unit_checks(cache_dir=cache_dir,
                                                     parameters=result.parameters,
                                                     progress=progress))


# Where the published data has rows of other units, and which runtimes count. CPU rows come
# only from ONNX Runtime (quantized), which the calibration README calls often anomalous.
CHECK_UNITS = {"GPU": ("TFLITE", "QNN_DLC"), "CPU": ("TFLITE", "QNN_DLC", "ONNX")}
# ONNX Runtime's CPU provider has no kernels with 16-bit activations: a w8a16 QDQ model runs
# dequantized, in fp32.
_CPU_PRECISION = {"w8a16": "fp32", "w8a16_mixed_int16": "fp32", "w8a16_mixed_fp16": "fp32"}


def unit_checks(*, cache_dir: Path, parameters: dict[str, float] | None = None,
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Published GPU and CPU latencies against the profiles with that unit forced.

    The profiles are the shipped ones, or with ``parameters`` the hand-written ones with those
    fitted parameters applied (what ``--write`` would ship: the fit also sets the share of DRAM
    bandwidth every unit reaches).

    A check, not a fit: the data holds 3 GPU rows (one model) and 6 CPU rows (anomalous ONNX
    runs), too few to fit the GPU and CPU efficiencies, which stay assumed. ``float`` on a GPU
    is costed at fp16 (as on the NPU) and, since the source does not say which precision the
    GPU delegate ran, also at fp32 (``predicted_fp32_ms``).
    """
    from harness.calibration.published import calibration_targets
    from harness.calibration.refmodels import REFERENCE_MODELS
    from harness.emulator import load_graph
    from harness.emulator.costmodel import predict_latency

    rows: list[dict[str, Any]] = []
    graphs: dict[str, Any] = {}
    for compute_unit, runtimes in CHECK_UNITS.items():
        for t in calibration_targets(runtimes=runtimes, compute_unit=compute_unit):
            unit = compute_unit.lower()
            prof = (load_profile(t.profile) if parameters is None
                    else apply_parameters(load_profile(t.profile, fitted=False), parameters))
            if t.model not in REFERENCE_MODELS or not any(u.name == unit for u in prof.units):
                continue
            if progress:
                progress(f"checking {t.model} on {t.profile} {compute_unit} ...")
            if t.model not in graphs:
                graphs[t.model] = load_graph(REFERENCE_MODELS[t.model].build_onnx(cache_dir))
            graph = graphs[t.model]
            precision = (_CPU_PRECISION.get(t.precision, t.emulated_precision)
                         if compute_unit == "CPU" else t.emulated_precision)
            predicted = predict_latency(graph, prof, unit=unit, precision=precision).latency_ms
            row = {"label": f"{t.model} / {t.profile} / {t.runtime} / {t.precision} / "
                            f"{compute_unit}",
                   "model": t.model, "device": t.profile, "runtime": t.runtime,
                   "precision": t.precision, "compute_unit": compute_unit,
                   "emulated_precision": precision, "observed_ms": t.value,
                   "predicted_ms": predicted,
                   "error_pct": 100.0 * (predicted - t.value) / t.value}
            if t.precision == "float" and precision != "fp32":
                row["predicted_fp32_ms"] = predict_latency(graph, prof, unit=unit,
                                                           precision="fp32").latency_ms
            rows.append(row)
    return rows


def _ratio_quantiles(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    ratios = sorted(1.0 + r["error_pct"] / 100.0 for r in rows)
    if len(ratios) < 5:
        return None
    import numpy as np

    lo, hi = np.percentile(ratios, [10, 90])
    return float(lo), float(hi)


# Rows a device-and-precision group needs before its own spread is trusted over the
# precision's: 10th/90th percentiles of fewer rows are mostly noise.
_BAND_MIN_ROWS = 8


def _ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The [fidelity] lines giving the spread of predicted/published ratios, overall, per
    precision and per device and precision (the interval a prediction carries: how wrong it
    was on models left out, on that phone at that precision where there are enough rows)."""
    out = []
    overall = _ratio_quantiles(rows)
    if overall:
        out += [f"ratio_p10 = {overall[0]:.4f}", f"ratio_p90 = {overall[1]:.4f}"]
    by: dict[str, list[dict[str, Any]]] = {}
    by_device: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        prec = str(r.get("emulated_precision") or r["precision"])
        by.setdefault(prec, []).append(r)
        by_device.setdefault((str(r["device"]), prec), []).append(r)
    groups = [(f"by_precision.{prec}", group) for prec, group in sorted(by.items())]
    groups += [(f"by_device.{dev}.{prec}", group)
               for (dev, prec), group in sorted(by_device.items())
               if len(group) >= _BAND_MIN_ROWS]
    for key, group in groups:
        q = _ratio_quantiles(group)
        if q:
            out.append(f"[fidelity.{key}]")
            out += [f"ratio_p10 = {q[0]:.4f}", f"ratio_p90 = {q[1]:.4f}",
                    f"rows = {len(group)}"]
    return out


def write_overlay(report: CalibrationReport, *, devices_dir: Path | None = None) -> Path:
    """Write the fitted figures for every profile with an NPU into the generated overlay."""
    d = devices_dir or default_devices_dir()
    fitted_on = sorted({r["device"] for r in report.in_sample})
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    err_in = median(abs(r["error_pct"]) for r in report.in_sample)
    err_cv = (median(abs(r["error_pct"]) for r in report.leave_one_device_out)
              if report.leave_one_device_out else float("nan"))
    err_mo = (median(abs(r["error_pct"]) for r in report.leave_one_model_out)
              if report.leave_one_model_out else float("nan"))
    base = (f"harness calibrate ({stamp}) on {len(report.in_sample)} AI Hub NPU latencies "
            f"(harness/calibration/data/published_latency.csv, runtimes TFLITE and QNN_DLC, median "
            f"over releases or the newest where they disagree over 2x) of "
            f"{', '.join(fitted_on)}; median |error| {err_in:.1f}% in "
            f"sample, {err_cv:.1f}% leave-one-device-out, {err_mo:.1f}% leave-one-model-out")
    lines = ["# Generated by `harness calibrate --write`: do not edit by hand.",
             "# Fitted figures merged over the hand-written profiles in devices/*.toml.",
             "schema_version = 1", "",
             "# How wrong the fitted NPU figures are on the published latencies: shown with every",
             "# prediction they make (the error to expect, not a promise).",
             "[fidelity]", f"date = {json.dumps(stamp)}", f'unit = "{FIT_UNIT}"',
             f"targets = {len(report.in_sample)}",
             f"in_sample_median_pct = {err_in:.1f}",
             f"leave_one_device_out_median_pct = {err_cv:.1f}",
             f"leave_one_model_out_median_pct = {err_mo:.1f}",
             f"devices = {json.dumps(fitted_on)}",
             "# predicted / published over the leave-one-model-out rows: a prediction's 80%",
             "# range is [latency / ratio_p90, latency / ratio_p10]",
             *_ratio_lines(report.leave_one_model_out), ""]
    for name in list_profiles(d):
        prof = load_profile(d / f"{name}.toml")
        npu = next((u for u in prof.units if u.name == FIT_UNIT), None)
        if npu is None:
            continue
        note = "" if name in fitted_on else (
            f"; {name} has no published latencies: these values are transferred from the "
            "fitted devices, an assumption that holds best for the same NPU family")
        figures = fitted_figures(report.parameters, source=base + note)
        if "int8" in npu.peak_gops and "fp16" in npu.peak_gops:
            share = report.parameters["fp16_share_of_int8"]
            figures["units.npu.peak_gops.fp16"] = {
                "value": float(f"{npu.peak_gops['int8'].value * share:.4g}"), "basis": "fitted",
                "source": f"fitted: int8 peak {npu.peak_gops['int8'].value:g} GOPS x fitted "
                          f"fp16 share of the int8 rate {share:.3g}; {base}{note}"}
        for path, fig in figures.items():
            lines.append(f"[profiles.{name}.{path}]")
            lines.append(f"value = {fig['value']!r}")
            lines.append(f"basis = {json.dumps(fig['basis'])}")
            lines.append(f"source = {json.dumps(fig['source'])}")
            lines.append("")
    out = d / FITTED_OVERLAY
    # atomic: profiles are read from this file by every later run
    atomic_write_text(out, "\n".join(lines))
    return out


# --------------------------------------------------------------------------- from a run

# the unit a phone row ran on, from the ONNX Runtime provider the adb runner used
_PROVIDER_UNIT = {"CPUExecutionProvider": "cpu", "NnapiExecutionProvider": "npu",
                  "QNNExecutionProvider": "npu"}


@dataclass
class RunFit:
    """``harness calibrate --from-run``: one device's predictions against its phone rows.

    ``scale`` multiplies ``unit``'s efficiency so that the median ratio of predicted to
    measured latency becomes 1. The after-errors assume latency inversely proportional to
    that efficiency (compute-bound cases; dispatch and memory time do not scale), so they
    are the fit's own estimate, not a re-emulation.
    """

    device: str
    unit: str
    efficiency: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)   # every pair, fitted or not
    scale: float | None = None

    def errors(self, *, after: bool) -> dict[str, float]:
        fitted = [r for r in self.rows if r["fitted"]]
        if not fitted:
            return {}
        errs = [r["after_pct" if after else "error_pct"] for r in fitted]
        return {"median_pct": median(errs), "median_abs_pct": median(abs(e) for e in errs)}

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "unit": self.unit, "efficiency": self.efficiency,
                "scale": self.scale, "fitted_efficiency": None
                if self.scale is None or self.efficiency is None
                else self.efficiency * self.scale,
                "before": self.errors(after=False), "after": self.errors(after=True),
                "rows": self.rows}


def fit_from_run(run_dir: Path) -> list[RunFit]:
    """One single-scale fit per device of the run's phone (``adb``) rows against the
    emulated rows of the same cells; InputError when the run has no such pairs."""
    import math

    from harness.report.frame import cell_id, device_pairs
    from harness.results import load_run

    run = load_run(run_dir)
    pairs = device_pairs(run)
    if not pairs:
        raise InputError("no cell of this run has both an ok adb row and an emulated row with "
                         "a prediction: run `harness bench --backend emulated --backend adb "
                         "...` first", file=run_dir, field="--from-run")
    ran_on = {}
    for m in run.measurements:
        if m.backend == "adb" and m.measured is not None:
            units = {_PROVIDER_UNIT.get(p) for p in m.measured.providers}
            ran_on[cell_id(m)] = units.pop() if len(units) == 1 else None
    fits: dict[str, RunFit] = {}
    for p in pairs:
        unit = ran_on.get(p.cell_id) or "cpu"
        fit_ = fits.get(p.device)
        if fit_ is None:
            prof = load_profile(p.device)
            u = next((x for x in prof.units if x.name == unit), None)
            eff = getattr(getattr(u, "efficiency", None), "value", None)
            fit_ = fits[p.device] = RunFit(device=p.device, unit=unit,
                                           efficiency=float(eff) if eff is not None else None)
        fit_.rows.append({"case": p.cell_id, "predicted_on": p.unit, "ran_on": unit,
                          "predicted_ms": p.predicted_ms, "measured_ms": p.measured_ms,
                          "error_pct": p.error_pct, "fitted": p.unit == fit_.unit})
    for f in fits.values():
        ratios = [r["predicted_ms"] / r["measured_ms"] for r in f.rows if r["fitted"]]
        if ratios:
            f.scale = math.exp(median(math.log(x) for x in ratios))
        for r in f.rows:
            r["after_pct"] = (100.0 * (r["predicted_ms"] / f.scale - r["measured_ms"])
                              / r["measured_ms"] if f.scale and r["fitted"] else None)
    return list(fits.values())
