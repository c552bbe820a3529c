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
    Precision None is q4_k_m for a config, and the model's own stored precision for an ONNX
    decoder (``.onnx`` with GroupQueryAttention: architecture, bits per weight and KV-cache type
    read from the graph, :func:`~harness.emulator.generation.graph_facts`) or a GGUF file
    (architecture from its metadata, every tensor's type and bytes from its tensor table,
    :func:`~harness.emulator.gguf_model.gguf_facts`). Sustained decode is after ``duration_s``
    (default 600 s)."""
    from harness.emulator.generation import graph_facts, load_config, load_fit, predict
    from harness.emulator.gguf_model import gguf_facts, is_gguf
    from harness.errors import HarnessError
    from harness.profiles import load_profile

    profiles = [load_profile(d) for d in devices]
    facts: dict[Path, Any] = {}
    for c in configs:
        if c.suffix == ".gguf" or is_gguf(c):   # a .gguf that is not GGUF: gguf_facts says so
            facts[c] = gguf_facts(c)
        elif c.suffix == ".onnx":
            facts[c] = graph_facts(c)
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
                    # the KV cache's type is in an ONNX graph; a GGUF file leaves it to the
                    # runtime (llama.cpp: fp16, predict's default)
                    extra = {"stored_weight_bytes": graph.stored_weight_bytes}
                    if hasattr(graph, "kv_bytes_per_elem"):
                        extra["kv_bytes_per_elem"] = graph.kv_bytes_per_elem
                try:
                    r = predict(cfg, prof, unit=u,
                                precision_name=graph.precision if own and graph else name,
                                prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                                context=context, duration_s=duration_s or 600.0, fit=fit,
                                **extra)
                except HarnessError as exc:
                    out.append({**entry, "error": str(exc)})
                    continue
                # Without --precision a graph or GGUF file is costed at its stored weights (its
                # precision keeps the file type's name, q4_1 say): say which, as a what-if at
                # that precision gives other bytes.
                out.append({**r.to_dict(), "model": str(path),
                            **({"weights": "as stored"} if own else {})})
    return out


def emulate_table(results: list[dict[str, Any]], *, width: int | None = None,
                  wide: bool = False) -> str:
    """The terminal table of :func:`emulate_models`' results, then a line for every entry that
    could not be emulated and a warning for every model costed at assumed dimensions."""
    from harness.report.term import Column, sig, table

    ranged = any("latency_range_ms" in r for r in results)
    sustained = any("sustained_latency_ms" in r for r in results)
    assumed = {Path(r["model"]).name: r["assumed_dims"] for r in results
               if r.get("assumed_dims")}
    # Given up when the terminal is narrow, highest first: power, energy, the 80% range, the
    # sustained figure, then the model name wraps, then memory goes.
    cols = [Column("model", wrap=True, priority=2), Column("device"), Column("precision"),
            Column("unit"), Column("latency (ms)", "right"),
            *([Column("80% range (ms)", "right", priority=4)] if ranged else []),
            *([Column("sustained (ms)", "right", priority=3)] if sustained else []),
            Column("memory (MB)", "right", priority=1), Column("fits"),
            Column("energy (mJ)", "right", priority=5), Column("power (W)", "right", priority=6),
            *([Column("assumed")] if assumed else [])]
    rows: list[list[str | None]] = []
    errors = []
    for r in results:
        head = [Path(r["model"]).name, r["device"], r["precision"]]
        if "error" in r:
            rows.append([*head, "error", *[None] * (len(cols) - 4)])
            errors.append(f"error: {head[0]} on {r['device']} ({r['precision']}): {r['error']}")
            continue
        band = r.get("latency_range_ms")
        rows.append([*head, r["unit"], sig(r["latency_ms"]),
                     *([f"{sig(band[0])}-{sig(band[1])}" if band else None] if ranged else []),
                     *([sig(r["sustained_latency_ms"])] if sustained else []),
                     sig(r["peak_memory_mb"]), "yes" if r["fits"] else "NO",
                     sig(r["energy_mj"]), sig(r["avg_power_w"]),
                     *(["dims!" if r.get("assumed_dims") else ""] if assumed else [])])
    # A dynamic dimension costed as an assumed value can be far off: say so by the table.
    errors += [f"warning: {model}: dynamic dimensions costed at assumed values "
               f"({'; '.join(dims)}); give the real shape with --shape NAME=D1,D2,..."
               for model, dims in assumed.items()]
    return "\n".join([table(cols, rows, width=width, wide=wide), *_lines(errors, width)])


def _lines(texts: list[str], width: int | None) -> list[str]:
    """Messages under a table, wrapped to the terminal (continuation lines indented)."""
    import textwrap

    from harness.report.term import terminal_width

    return [textwrap.fill(t, terminal_width(width), subsequent_indent="  ",
                          break_on_hyphens=False) for t in texts]


def detail_table(result: dict[str, Any], *, width: int | None = None,
                 wide: bool = False) -> str:
    """One entry's per-node breakdown (``--detail``), slowest node first. Fused nodes (Q/DQ,
    views) take no time on a device and are left out; JSON keeps them."""
    from harness.report.term import Column, fixed, sig, table

    shown = sorted((n for n in result["nodes"] if n["unit"]), key=lambda n: -n["time_ms"])
    # Given up when the terminal is narrow: the fallback text wraps, then the node name, then
    # the bound goes.
    cols = [Column("node", wrap=True, priority=2), Column("op"), Column("unit"),
            Column("precision"), Column("time (ms)", "right"), Column("share %", "right"),
            Column("bound", priority=1), Column("fallback / lost speed", wrap=True, priority=3)]
    return table(cols, [[n["node"], n["op"], n["unit"], n["run_precision"], sig(n["time_ms"]),
                         fixed(100 * n["share"], 1), n["bound"], n["fallback"] or ""]
                        for n in shown], width=width, wide=wide)


def generation_table(results: list[dict[str, Any]], *, after_s: float,
                     width: int | None = None, wide: bool = False) -> str:
    """The terminal table of :func:`emulate_generation`'s results (``after_s``: the sustained
    decode's time), then a line for every entry that could not be emulated."""
    from harness.report.term import Column, sig, table

    cols = [Column("model", wrap=True, priority=2), Column("device"), Column("precision"),
            Column("unit"), Column("prefill (tok/s)", "right", priority=3),
            Column("TTFT (ms)", "right"), Column("decode (tok/s)", "right"),
            Column(f"after {after_s:g} s (tok/s)", "right", priority=4),
            Column("KV cache (MB)", "right", priority=5), Column("memory (MB)", "right",
                                                                 priority=1),
            Column("fits"), Column("energy (mJ/tok)", "right", priority=6)]
    rows: list[list[str | None]] = []
    errors = []
    for r in results:
        # a file's stored weights, told apart from a what-if at the precision of the same name
        prec = r["precision"] + (" (file)" if r.get("weights") == "as stored" else "")
        head = [Path(r["model"]).name, r["device"], prec, r["unit"]]
        if "error" in r:
            rows.append([*head[:3], "error", *[None] * (len(cols) - 4)])
            errors.append(f"error: {head[0]} on {r['device']} ({r['precision']}): {r['error']}")
            continue
        rows.append([*head, sig(r["prefill_tokens_per_s"]), sig(r["ttft_ms"]),
                     sig(r["decode_tokens_per_s"]), sig(r["sustained_decode_tokens_per_s"]),
                     sig(r["kv_cache_mb"]), sig(r["peak_memory_mb"]),
                     "yes" if r["fits"] else "NO", sig(r["energy_mj_per_token"])])
    return "\n".join([table(cols, rows, width=width, wide=wide), *_lines(errors, width)])
