"""What the sweep learns about an artifact without running it: its facts (size, parameters,
sparsity, quantizer metadata) and the emulator's prediction on a device profile.

Runs inside a worker process (the ``describe`` task of :mod:`harness.worker`), never in the
orchestrator: inspecting a PyTorch artifact unpickles it and emulating a large graph takes
memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.measurement import ArtifactFacts, Prediction, Provenance
from harness.core.types import ArtifactRef


def artifact_facts(path: Path, *, ref: ArtifactRef) -> ArtifactFacts:
    """Size, content hash, parameters, sparsity and quantizer metadata of an artifact."""
    from harness.artifacts.formats import FORMATS
    from harness.cache import artifact_sha256, artifact_size_bytes

    fmt = FORMATS.get(ref.format)
    stats = fmt.inspect(path)
    sparsity = stats.sparsity
    # What the quantizer recorded, e.g. the nodes a mixed-precision level kept in float.
    extra: dict[str, Any] = fmt.quant_metadata(path)
    return ArtifactFacts(
        key=ref.key, sha256=artifact_sha256(path), format=fmt.name, path=str(path),
        runtime=fmt.runtime, size_bytes=artifact_size_bytes(path), params=stats.params,
        zero_params=stats.zero_params, sparsity=None if sparsity is None else round(sparsity, 6),
        sparsity_pattern=stats.sparsity_pattern, is_2_4=stats.is_2_4, extra=extra)


def emulator_graph(path: Path) -> tuple[Path, bool]:
    """The ONNX graph the emulator costs for an artifact, and whether it is a twin (a PyTorch
    artifact is predicted from its ONNX twin: the same recipe applied with onnxruntime's
    tools; its format says where that lies)."""
    from harness.artifacts.formats import format_of

    graph = format_of(path).emulator_graph(path)
    return graph, graph != path


def predict_devices(path: Path, devices: Sequence[str], *, sustained_s: float,
                    period_ms: float | None, breakdown_dir: Path | None, artifact_key: str,
                    input_shapes: Mapping[str, Sequence[int]] | None = None,
                    label: str = "") -> dict[str, dict[str, Any]]:
    """:func:`predict_on` for each device, reading and shape-inferring the graph once.

    A GenAI decoder (``genai`` format) is predicted as generation instead: prefill and decode
    from its graph's architecture (:mod:`harness.llm.predict`)."""
    from harness.artifacts.formats import format_of

    if format_of(path).name == "genai":
        from harness.llm.predict import predict_genai

        return {d: predict_genai(path, d, sustained_s=sustained_s, artifact_key=artifact_key,
                                 input_shapes=input_shapes or {}) for d in devices}
    graph: Any = None
    try:
        from harness.emulator import load_graph

        onnx_path, _ = emulator_graph(path)
        graph = load_graph(onnx_path, input_shapes=_known_inputs(onnx_path, input_shapes or {}))
    except Exception:  # predict_on reports the error for each device
        graph = None
    return {d: predict_on(path, d, sustained_s=sustained_s, period_ms=period_ms,
                          breakdown_dir=breakdown_dir, artifact_key=artifact_key,
                          input_shapes=input_shapes, graph=graph, label=label)
            for d in devices}


def predict_on(path: Path, device: str, *, sustained_s: float, period_ms: float | None,
               breakdown_dir: Path | None, artifact_key: str,
               input_shapes: Mapping[str, Sequence[int]] | None = None,
               graph: Any = None, label: str = "") -> dict[str, Any]:
    """The emulator's prediction of ``path`` on profile ``device``, as row parts.

    ``graph`` is the artifact's emulator graph already loaded at ``input_shapes`` (else it is
    read here).

    ``input_shapes`` are the shapes the host timed (the workload's timing inputs): the
    emulator costs exactly those, so a dynamic dimension is never silently costed as 1.

    Returns ``{"prediction", "trace", "provenance"}``; a graph the emulator cannot read gives a
    prediction with an ``error`` (the case still gets its host figures).
    """
    from harness import __version__
    from harness.profiles import load_profile

    profile = load_profile(device)
    provenance: dict[str, Any] = {**profile.provenance(), "artifact_key": artifact_key,
                                  "harness_version": __version__}
    try:
        from harness.emulator import EMULATOR_VERSION, emulate, simulate

        provenance["emulator_version"] = EMULATOR_VERSION
        onnx_path, twin = emulator_graph(path)
        if graph is None:
            from harness.emulator import load_graph

            graph = load_graph(onnx_path,
                               input_shapes=_known_inputs(onnx_path, input_shapes or {}))
        em = emulate(graph, profile)
        trace = simulate(em.latency, profile, duration_s=sustained_s, period_ms=period_ms,
                         max_points=300)
        summary = em.summary()
        from harness.emulator.pacing import PaceSpec
        from harness.profiles import calibration_fidelity

        # the error to expect, carried with the prediction it qualifies
        fidelity = calibration_fidelity(profile)
        if fidelity is not None:
            summary["calibration"] = fidelity
            band = _range(fidelity, summary)
            if band is not None:
                summary["latency_range_ms"] = [band[0] * em.latency_ms, band[1] * em.latency_ms]

        # what a paced host run (--pace) follows: latency and energy per clock, the thermals
        summary["pace_spec"] = PaceSpec.from_prediction(em.latency, profile).to_json()
        summary["input_shapes"] = {k: list(v) for k, v in (input_shapes or {}).items()}
        # the burst latency with the graph forced onto each unit (nodes it cannot take fall
        # back, as on the phone): what a phone runner bound to one unit (ORT's CPU provider)
        # is compared with, rather than the emulator's own choice of unit
        from harness.emulator.costmodel import predict_latency

        summary["latency_ms_by_unit"] = {
            u.name: predict_latency(graph, profile, unit=u.name).latency_ms
            for u in profile.units}
        if twin:
            summary["onnx_twin"] = True
        summary.update({
            "burst_latency_ms": trace.burst_latency_ms,
            "sustained_latency_ms": trace.sustained_latency_ms,
            "sustained_s": sustained_s,
            "sustained_clock_fraction": trace.clock_fraction[-1],
            "sustained_temp_c": trace.temp_c[-1],
            "sustained_power_w": trace.power_w[-1],
        })
        if breakdown_dir is not None:
            # named by the case it describes (workload/quant/prune-P/device, as in the case id)
            # and the artifact, so a later run's file never replaces another case's
            name = _file_name(f"{label}/{device}" if label else device, artifact_key)
            breakdown_dir.mkdir(parents=True, exist_ok=True)
            from harness.fsutil import atomic_write_text

            atomic_write_text(breakdown_dir / name, json.dumps(em.breakdown()))
            summary["breakdown_file"] = f"{breakdown_dir.name}/{name}"
        trace_row: dict[str, Any] | None = trace.to_row()
        # Rows are strict JSON: a figure the emulator computed as NaN or infinite (from a
        # profile at the edge of its ranges) is an error here, naming the field, not a row
        # the writer refuses later.
        _require_finite(summary, f"prediction on {device}")
        _require_finite(trace_row, f"sustained trace on {device}")
        pred = Prediction.from_row(summary)
    except Exception as exc:  # a model the emulator cannot read still gets host figures
        pred = Prediction(error=f"{type(exc).__name__}: {exc}")
        trace_row = None
    prov = Provenance.from_row({k: v for k, v in provenance.items()
                                if k in Provenance.__dataclass_fields__})
    return {"prediction": pred.to_row(), "trace": trace_row, "provenance": prov.to_row()}


def _require_finite(value: Any, where: str) -> None:
    """Raise a ValueError naming the first NaN or infinite number in ``value`` (nested)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}: the emulator produced a non-finite figure "
                         "(check the device profile's figures)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _require_finite(v, f"{where}: {k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _require_finite(v, f"{where}[{i}]")


def _known_inputs(graph: Path, shapes: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """The timing inputs' shapes for the graph's own inputs (a quantized graph may have lost
    an input the float model had, e.g. an unused mask)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    names = {i.name for i in model.graph.input}
    return {k: list(v) for k, v in shapes.items() if k in names}


def _range(fidelity: Mapping[str, Any], summary: Mapping[str, Any]) -> tuple[float, float] | None:
    """Multipliers giving the prediction's 80% range from the calibration's leave-one-model-out
    ratios (on that device at that precision where the fit had enough rows of it, else at that
    precision, else overall), for predictions made mainly on the fitted unit; None elsewhere
    (the CPU and GPU figures are not fitted: no honest range)."""
    if summary.get("unit") != fidelity.get("unit"):
        return None
    precision = str(summary.get("precision"))

    def band(table: Any) -> Mapping[str, Any] | None:
        q = table.get(precision) if isinstance(table, Mapping) else None
        return q if isinstance(q, Mapping) and "ratio_p10" in q else None

    by_device = fidelity.get("by_device")
    q = (band(by_device.get(str(summary.get("device")))) if isinstance(by_device, Mapping)
         else None) or band(fidelity.get("by_precision")) or fidelity
    lo, hi = q.get("ratio_p10"), q.get("ratio_p90")
    if not isinstance(lo, int | float) or not isinstance(hi, int | float) or lo <= 0 or hi <= 0:
        return None
    # predicted/published ratios r: the device's latency is about predicted / r
    return 1.0 / float(hi), 1.0 / float(lo)


def _file_name(case: str, artifact_key: str) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", case).strip("_")[:80]
    return f"{slug}-{artifact_key[:12]}.json"
