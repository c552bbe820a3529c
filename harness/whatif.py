"""What-if emulation of ONNX models on device profiles: the library behind ``harness emulate``.

Other tools call :func:`emulate_models` directly; it returns plain JSON-ready dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def emulate_models(models: list[Path], *, devices: list[str], precisions: list[str | None],
                   unit: str = "auto", detail: bool = False, duration_s: float | None = None,
                   iterations: int | None = None, period_ms: float | None = None,
                   input_shapes: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
    """One result per (model, device, precision): the what-if API behind ``harness emulate``.

    Bad input (an unknown device, an unreadable model) raises before any result; a unit a
    device does not have gives that combination an ``error`` entry.
    """
    from harness.emulator import emulate, load_graph, simulate
    from harness.errors import HarnessError
    from harness.profiles import load_profile

    profiles = [load_profile(d) for d in devices]
    graphs = [load_graph(m, input_shapes=input_shapes) for m in models]
    out: list[dict[str, Any]] = []
    for model, graph in zip(models, graphs, strict=True):
        stored = _dominant_precision(graph)
        for prof in profiles:
            for prec in precisions:
                entry: dict[str, Any] = {"model": str(model), "device": prof.name,
                                         "precision": prec or stored}
                try:
                    em = emulate(graph, prof, unit=unit, precision=prec)
                except HarnessError as exc:
                    out.append({**entry, "error": str(exc)})
                    continue
                entry.update({
                    "unit": em.latency.main_unit, "latency_ms": em.latency_ms,
                    "peak_memory_mb": em.peak_memory_mb, "fits": em.fits,
                    "app_cap_mb": em.memory.app_cap_mb, "energy_mj": em.latency.energy_mj,
                    "avg_power_w": em.latency.avg_power_w, "work_gops": em.latency.work_gops,
                    "unit_ms": dict(em.latency.unit_ms),
                    "fallback_nodes": len(em.latency.fallbacks),
                    "assumed_dims": list(em.latency.fixed_dims),
                    "notes": list(em.notes)})
                band = _band(prof, entry)
                if band is not None:   # how wrong such a prediction was on models left out
                    entry["latency_range_ms"] = [band[0] * em.latency_ms,
                                                 band[1] * em.latency_ms]
                if duration_s is not None or iterations is not None:
                    trace = simulate(em.latency, prof, duration_s=duration_s,
                                     iterations=iterations, period_ms=period_ms)
                    entry.update({"sustained_latency_ms": trace.sustained_latency_ms,
                                  "sustained_clock_fraction": trace.clock_fraction[-1],
                                  "sustained_temp_c": trace.temp_c[-1],
                                  "sustained_power_w": trace.power_w[-1]})
                    if detail:
                        entry["trace"] = trace.to_row()
                if detail:
                    entry["nodes"] = em.breakdown()
                    entry["fallbacks"] = list(em.latency.fallbacks)
                out.append(entry)
    return out


def _band(profile: Any, entry: dict[str, Any]) -> tuple[float, float] | None:
    """The 80% range multipliers of a prediction from the profile's calibration (None where
    the fit does not cover the unit)."""
    from harness.predict import _range
    from harness.profiles import calibration_fidelity

    fid = calibration_fidelity(profile)
    return None if fid is None else _range(fid, entry)


def _dominant_precision(graph: Any) -> str:
    work: dict[str, int] = {}
    for n in graph.nodes:
        if not n.fused:
            work[n.precision] = work.get(n.precision, 0) + n.work_ops
    return max(work, key=lambda p: work[p]) if work else "fp32"


def emulate_generation(configs: list[Path], *, devices: list[str], precisions: list[str | None],
                       unit: str = "auto", prompt_tokens: int = 128, gen_tokens: int = 128,
                       context: int | None = None,
                       duration_s: float | None = None) -> list[dict[str, Any]]:
    """One result per (config.json, device, precision): text generation from the architecture
    (:mod:`harness.emulator.generation`). ``unit`` auto is the CPU (every profile has one;
    llama.cpp's default); a unit the device lacks gives that combination an ``error`` entry.
    Precision None is q4_k_m for a config, and the graph's own stored precision for an ONNX
    decoder (``.onnx`` with GroupQueryAttention: architecture, bits per weight and KV-cache type
    read from the graph, :func:`~harness.emulator.generation.graph_facts`). Sustained decode is
    after ``duration_s`` (default 600 s)."""
    from harness.emulator.generation import graph_facts, load_config, load_fit, predict
    from harness.errors import HarnessError
    from harness.profiles import load_profile

    profiles = [load_profile(d) for d in devices]
    facts = {c: graph_facts(c) for c in configs if c.suffix == ".onnx"}
    models = [facts[c].config if c in facts else load_config(c) for c in configs]
    fit = load_fit()
    out: list[dict[str, Any]] = []
    for path, cfg in zip(configs, models, strict=True):
        for prof in profiles:
            for prec in precisions:
                graph = facts.get(path)
                own = graph is not None and prec is None
                name = prec or (graph.precision.name if graph is not None else "q4_k_m")
                u = "cpu" if unit == "auto" else unit
                entry: dict[str, Any] = {"model": str(path), "device": prof.name,
                                         "precision": name, "unit": u}
                extra: dict[str, Any] = {}
                if own and graph is not None:
                    extra = {"kv_bytes_per_elem": graph.kv_bytes_per_elem,
                             "stored_weight_bytes": graph.stored_weight_bytes}
                try:
                    r = predict(cfg, prof, unit=u,
                                precision_name=graph.precision if own and graph else name,
                                prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                                context=context, duration_s=duration_s or 600.0, fit=fit,
                                **extra)
                except HarnessError as exc:
                    out.append({**entry, "error": str(exc)})
                    continue
                out.append({**r.to_dict(), "model": str(path)})
    return out
