"""Device predictions for a GenAI decoder artifact, from its ONNX graph.

The describe task (:func:`harness.predict.predict_devices`) sends ``genai`` artifacts here
instead of the per-node graph emulator: a decoder's latency is not one forward pass but a
prefill and a decode loop. The graph gives the architecture and the stored bits per weight
(:func:`harness.emulator.generation.graph_facts`); the timing inputs' shapes give the run
(``input_ids_N`` prompts, ``new_tokens`` [1, M]); :func:`harness.emulator.generation.predict`
does the rest, once per prompt length.

The prediction row keeps the generic fields readers know (``latency_ms`` = one decoded token at
the shortest prompt, ``sustained_latency_ms`` the same after the sustained run,
``peak_memory_mb``/``app_cap_mb``/``fits`` at the longest prompt, ``energy_mj`` per token)
and adds, per prompt length N, ``ttft_ms_N``, ``prefill_tokens_per_s_N``,
``decode_tokens_per_s_N``, ``sustained_decode_tokens_per_s_N``, ``kv_cache_mb_N``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# the unit the host run corresponds to: ONNX Runtime GenAI's CPU provider
UNIT = "cpu"


def run_shape(input_shapes: Mapping[str, Sequence[int]]) -> tuple[list[int], int]:
    """(prompt lengths, new tokens) of the timed run, from the timing inputs' shapes."""
    prompts = sorted(int(s[-1]) for k, s in input_shapes.items() if k.startswith("input_ids_"))
    new = input_shapes.get("new_tokens")
    if not prompts or not new:
        raise ValueError("a generative workload's timing inputs must give input_ids_N and "
                         f"new_tokens shapes; got {sorted(input_shapes)}")
    return prompts, int(new[-1])


def predict_genai(path: Path, device: str, *, sustained_s: float, artifact_key: str,
                  input_shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Row parts (``prediction``, ``trace``, ``provenance``) of a GenAI artifact on
    ``device``; an error in the prediction is kept in it (the case keeps its host figures)."""
    from harness import __version__
    from harness.core.measurement import Prediction, Provenance
    from harness.emulator import EMULATOR_VERSION
    from harness.profiles import load_profile

    profile = load_profile(device)
    provenance = {**profile.provenance(), "artifact_key": artifact_key,
                  "harness_version": __version__, "emulator_version": EMULATOR_VERSION}
    try:
        summary = generation_summary(path, profile, input_shapes=input_shapes,
                                     sustained_s=sustained_s)
        pred = Prediction.from_row(summary)
    except Exception as exc:
        pred = Prediction(error=f"{type(exc).__name__}: {exc}")
    prov = Provenance.from_row({k: v for k, v in provenance.items()
                                if k in Provenance.__dataclass_fields__})
    return {"prediction": pred.to_row(), "trace": None, "provenance": prov.to_row()}


def generation_summary(path: Path, profile: Any, *, input_shapes: Mapping[str, Sequence[int]],
                       sustained_s: float) -> dict[str, Any]:
    """The prediction row of a GenAI artifact (see the module docstring)."""
    from harness.artifacts.formats import GENAI
    from harness.emulator.generation import graph_facts, load_fit_fidelity, predict

    prompts, new = run_shape(input_shapes)
    facts = graph_facts(GENAI.emulator_graph(path))
    per: dict[int, Any] = {}
    for n in prompts:
        per[n] = predict(facts.config, profile, unit=UNIT, precision_name=facts.precision,
                         prompt_tokens=n, gen_tokens=new, context=n + new,
                         duration_s=sustained_s, kv_bytes_per_elem=facts.kv_bytes_per_elem,
                         stored_weight_bytes=facts.stored_weight_bytes)
    short, long = per[prompts[0]], per[prompts[-1]]
    out: dict[str, Any] = {
        "kind": "generation", "unit": UNIT, "precision": facts.precision.name,
        "prompt_tokens": prompts, "gen_tokens": new,
        "params": short.params, "weights_mb": short.weight_mb,
        "bits_per_weight": short.bits_per_weight,
        "linear_bits_per_weight": facts.precision.linear_bpw,
        "compute_precision": short.compute_precision,
        "latency_ms": short.decode_ms_per_token,
        "sustained_latency_ms": short.sustained_decode_ms_per_token,
        "sustained_s": sustained_s,
        "sustained_clock_fraction": short.sustained_clock_fraction,
        "peak_memory_mb": long.peak_memory_mb, "app_cap_mb": long.app_cap_mb,
        "fits": long.fits, "energy_mj": short.energy_mj_per_token,
        "energy_mj_per_token": short.energy_mj_per_token,
        "decode_overhead_ms": short.decode_overhead_ms,
        "runtime_overhead_mb": profile.memory.runtime_overhead_mb.value,
        # how far to trust these figures: the generation fit's errors (docs/llm.md)
        "calibration": {"kind": "generation", **load_fit_fidelity()},
    }
    for n, p in per.items():
        out.update({f"ttft_ms_{n}": p.ttft_ms, f"prefill_tokens_per_s_{n}": p.prefill_tokens_per_s,
                    f"decode_tokens_per_s_{n}": p.decode_tokens_per_s,
                    f"sustained_decode_tokens_per_s_{n}": p.sustained_decode_tokens_per_s,
                    f"kv_cache_mb_{n}": p.kv_cache_mb, f"peak_memory_mb_{n}": p.peak_memory_mb})
    return out
