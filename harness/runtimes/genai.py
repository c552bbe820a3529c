"""ONNX Runtime GenAI (``onnxruntime-genai``): decoder models built by its model builder.

An artifact of this runtime is a directory (``genai_config.json``, ``model.onnx`` and its
external data, the tokenizer files); :func:`load` opens it on the CPU provider. The generic
``run(feeds)`` of :class:`~harness.runtimes.Loaded` takes ``{"input_ids": int array [1, N]}``
and returns the logits of every position (one fresh generator per call), which is what a
perplexity or a top-1 comparison needs; the timing of prefill and decode is done by
:mod:`harness.llm.measure`, which drives ``og.Generator`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime_genai as og  # imported only to run a GenAI artifact

from harness.runtimes import Feeds, Loaded


def open_model(artifact: Path, *, threads: int) -> Any:
    """An ``og.Model`` of the artifact directory on the CPU, ``threads`` intra-op threads
    (0 = the runtime's default)."""
    cfg = og.Config(str(artifact.parent if artifact.is_file() else artifact))
    cfg.clear_providers()  # the CPU provider: what the builder's "-e cpu" graphs target
    if threads:
        # session options of the decoder, as genai_config.json would carry them
        cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    return og.Model(cfg)


def generator(model: Any, *, max_length: int) -> Any:
    """A greedy generator whose KV cache holds ``max_length`` positions (the run's prompt plus
    its new tokens, not the model's 8k context: the cache buffer is allocated at this size)."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length, do_sample=False)
    return og.Generator(model, params)


def logits(model: Any, ids: np.ndarray) -> np.ndarray:
    """Logits [N, vocab] of every position of the token sequence ``ids`` (one prefill)."""
    flat = np.asarray(ids, dtype=np.int32).reshape(-1)
    gen = generator(model, max_length=int(flat.size) + 1)
    gen.append_tokens(flat)
    out = np.asarray(gen.get_output("logits"), dtype=np.float32)
    return out.reshape(-1, out.shape[-1])[-flat.size:]


def load(artifact: Path, *, threads: int) -> Loaded:
    """The artifact as an ``og.Model`` on the CPU; ``run`` gives every position's logits."""
    model = open_model(artifact, threads=threads)

    def run(feeds: Feeds) -> list[np.ndarray]:
        if "input_ids" not in feeds:
            raise ValueError(f"a GenAI decoder takes {{'input_ids': [1, N] ints}}, got "
                             f"{sorted(feeds)}")
        return [logits(model, feeds["input_ids"])[None]]

    def timing_call(_: Any, feeds: Feeds) -> Any:
        return run(feeds)

    return Loaded(runtime="onnxruntime-genai", version=og.__version__, providers=["cpu"],
                  run=run, timing_call=timing_call)
