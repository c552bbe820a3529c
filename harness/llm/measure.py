"""A language model measured in a worker: load, prefill and decode phases, then quality.

Runs in the measuring worker (:mod:`harness.worker`) with ONNX Runtime GenAI
(``og.Model`` / ``og.Generator``, :mod:`harness.runtimes.genai`). Order, as for every artifact:

1. **load**: the model directory opened ``LOAD_REPEATS`` times (each one freed before the next),
   one raw sample per load; the first is also the cold start.
2. **warm-up**, then ``iterations`` rounds. Each round runs every timed prompt length (the
   workload's timing inputs ``input_ids_N``), in alternating order from round to round, so a
   drift of the host's speed weighs on every length alike. Per prompt: a generator whose KV
   cache holds exactly the prompt plus the new tokens (``max_length``, not the model's 8k
   context), one ``prefill_N`` sample = ``append_tokens`` of the prompt and the first
   ``generate_next_token`` (the time to first token: the prompt's forward pass and the first
   token chosen), then ``decode_N`` samples, one per further token (each step runs the previous
   token through the model with the KV cache at its length, and chooses the next).
3. **peak memory** (VmHWM) read here, before the quality pass loads evaluation data or a
   reference model.
4. **quality** on the workload's fixed text: perplexity over non-overlapping windows,
   top-1 next-token predictions, and greedy generations of a few chat prompts; compared with
   the fp32 level's (built or taken from the cache, its results cached under
   ``<cache>/reference``) for top-1 agreement and matching generations.

Samples are raw nanoseconds with ``tokens_per_sample``; tokens/s are derived when reading.
"""

from __future__ import annotations

import gc
import itertools
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

LOAD_REPEATS = 3
PROMPT_PREFIX = "input_ids_"


def _prompts(feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Timed prompts by length from the timing inputs (``input_ids_N`` [1, N])."""
    out = {}
    for name, arr in feeds.items():
        if name.startswith(PROMPT_PREFIX):
            ids = np.asarray(arr, dtype=np.int32).reshape(-1)
            out[int(ids.size)] = ids
    if not out:
        raise ValueError(f"a generative workload's timing inputs need {PROMPT_PREFIX}N arrays "
                         f"(prompt token ids, [1, N]); got {sorted(feeds)}")
    return dict(sorted(out.items()))


def new_tokens(feeds: dict[str, np.ndarray]) -> int:
    """Tokens decoded after each prompt: the length of the timing input ``new_tokens``."""
    if "new_tokens" not in feeds or np.asarray(feeds["new_tokens"]).ndim != 2:
        raise ValueError("a generative workload's timing inputs need 'new_tokens' [1, M] "
                         "(M = tokens decoded after each prompt)")
    m = int(np.asarray(feeds["new_tokens"]).shape[1])
    if m < 2:
        raise ValueError(f"new_tokens must ask for at least 2 tokens (the first is part of "
                         f"the time to first token), got {m}")
    return m


def time_generation(model: Any, ids: np.ndarray, gen_tokens: int) -> tuple[int, list[int]]:
    """(prefill ns incl. the first token, decode ns per further token) of one generation."""
    from harness.runtimes.genai import generator

    gen = generator(model, max_length=int(ids.size) + gen_tokens)
    clock = time.perf_counter_ns
    t0 = clock()
    gen.append_tokens(ids)
    gen.generate_next_token()
    t1 = clock()
    stamps = [t1]
    for _ in range(gen_tokens - 1):
        gen.generate_next_token()
        stamps.append(clock())
    return t1 - t0, [b - a for a, b in itertools.pairwise(stamps)]


def kv_cache_mb(facts: Any, positions: int) -> float:
    """KV-cache bytes of a decoder graph (its :class:`GraphFacts`) for ``positions``
    positions, in MiB: 2 * layers * kv_heads * head_dim * positions * element size (the
    graph's cache type)."""
    from harness.emulator.generation import kv_cache_bytes

    return kv_cache_bytes(facts.config, positions,
                          bytes_per_elem=facts.kv_bytes_per_elem) / 2 ** 20


def measure_generation(artifact: Path, feeds: dict[str, np.ndarray], *, warmup: int,
                       iterations: int, threads: int) -> dict[str, Any]:
    """The measured block of a result row for a GenAI artifact (see the module docstring),
    plus the loaded model (``"model"``) for the quality pass."""
    import onnxruntime_genai as og

    from harness.artifacts.formats import GENAI
    from harness.measure import current_rss_mb, peak_rss_mb
    from harness.runtimes.genai import open_model

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    prompts = _prompts(feeds)
    gen_tokens = new_tokens(feeds)
    rss_before = current_rss_mb()
    load_ns: list[int] = []
    model: Any = None
    for _ in range(LOAD_REPEATS):
        model = None
        gc.collect()  # the previous model is freed before the next load: one model in memory
        t0 = time.perf_counter_ns()
        model = open_model(artifact, threads=threads)
        load_ns.append(time.perf_counter_ns() - t0)
    t1 = time.perf_counter_ns()
    first_prefill, _ = time_generation(model, next(iter(prompts.values())), 2)
    first_ns = time.perf_counter_ns() - t1
    del first_prefill

    for _ in range(warmup):
        for ids in prompts.values():
            time_generation(model, ids, gen_tokens)
    prefill: dict[int, list[int]] = {n: [] for n in prompts}
    decode: dict[int, list[int]] = {n: [] for n in prompts}
    for r in range(iterations):
        order = list(prompts) if r % 2 == 0 else list(reversed(prompts))
        for n in order:
            pre, dec = time_generation(model, prompts[n], gen_tokens)
            prefill[n].append(pre)
            decode[n] += dec
    peak = peak_rss_mb()  # before the quality pass: evaluation would inflate it

    phases: list[dict[str, Any]] = [{"name": "load", "unit": "ns", "samples": load_ns}]
    for n in prompts:
        phases.append({"name": f"prefill_{n}", "unit": "ns", "samples": prefill[n],
                       "tokens_per_sample": n})
        phases.append({"name": f"decode_{n}", "unit": "ns", "samples": decode[n],
                       "tokens_per_sample": 1})
    graph = GENAI.emulator_graph(artifact)
    from harness.emulator.generation import graph_facts

    # the KV cache's size is read from the graph; a graph the emulator cannot read costs the
    # row that figure, not its timings
    try:
        facts: Any = graph_facts(graph)
        kv_note = None
    except Exception as exc:
        facts, kv_note = None, f"the KV cache's size was not read from the graph: {exc}"
    kv_type = "unknown" if facts is None else \
        {4.0: "f32", 2.0: "f16", 1.0: "q8_0"}.get(facts.kv_bytes_per_elem, "other")
    return {
        "model": model,
        "measured": {
            "where": "host", "runtime": "onnxruntime-genai", "runtime_version": og.__version__,
            "providers": ["cpu"], "threads": threads, "warmup_runs": warmup,
            "phases": phases,
            "cold_start": {"load_ns": load_ns[0], "first_inference_ns": first_ns},
            "peak_memory_mb": round(peak, 3),
            "memory_before_load_mb": round(rss_before, 3),
            "pace": None,
            "extra": {
                "prompt_tokens": list(prompts), "gen_tokens": gen_tokens,
                "rounds": iterations,
                "max_length": {str(n): n + gen_tokens for n in prompts},
                "kv_cache_mb": None if facts is None else
                {str(n): round(kv_cache_mb(facts, n + gen_tokens), 6) for n in prompts},
                "order": "prompt lengths alternate order every round",
                "kv_type": kv_type,
                **({"note": kv_note} if kv_note else {}),
            },
        },
    }


# ------------------------------------------------------------------------------------ quality


def _chat(prompt: str) -> str:
    # SmolLM2-Instruct's chat template (ChatML), one user turn, the assistant's turn opened
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def score_text(model: Any, ids: np.ndarray, *, window: int) -> dict[str, Any]:
    """Negative log-likelihood and top-1 predictions over ``ids`` in non-overlapping windows
    of ``window`` tokens (each window starts with an empty cache: every level sees the same
    contexts). Returns ``{"nll": summed nats, "n": predicted tokens, "top1": int array}``."""
    from harness.runtimes.genai import logits

    nll, n, top1 = 0.0, 0, []
    for start in range(0, int(ids.size) - 1, window):
        chunk = ids[start:start + window]
        if chunk.size < 2:
            break
        lg = logits(model, chunk).astype(np.float64)[:-1]
        target = chunk[1:]
        m = lg.max(axis=1, keepdims=True)
        logz = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
        nll += float((logz - lg[np.arange(target.size), target]).sum())
        n += int(target.size)
        top1.append(lg.argmax(axis=1))
    return {"nll": nll, "n": n, "top1": np.concatenate(top1).astype(np.int32)}


def greedy(model: Any, tokenizer: Any, prompts: tuple[str, ...], tokens: int) -> list[list[int]]:
    """Greedy continuations (token ids) of chat-formatted ``prompts``, ``tokens`` each (fewer
    when the model ends its turn)."""
    from harness.runtimes.genai import generator

    out = []
    for prompt in prompts:
        ids = np.asarray(tokenizer.encode(_chat(prompt)), dtype=np.int32)
        gen = generator(model, max_length=int(ids.size) + tokens)
        gen.append_tokens(ids)
        got: list[int] = []
        while not gen.is_done() and len(got) < tokens:
            gen.generate_next_token()
            got.append(int(gen.get_next_tokens()[0]))
        out.append(got)
    return out


class _Tokenizer:
    """The artifact's ``tokenizer.json`` through the ``tokenizers`` library (every level of a
    workload carries the same file; ONNX Runtime GenAI's own tokenizer reads fewer kinds)."""

    def __init__(self, artifact: Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(artifact.parent / "tokenizer.json"))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)


def text_outputs(model: Any, workload: Any, artifact: Path) -> dict[str, Any]:
    """Everything quality is computed from: text scores and greedy generations."""
    tokenizer = _Tokenizer(artifact)
    ids = np.asarray(tokenizer.encode(workload.eval_text()), dtype=np.int32)
    scored = score_text(model, ids, window=workload.window_tokens)
    scored["greedy"] = greedy(model, tokenizer, workload.greedy_prompts, workload.greedy_tokens)
    return scored


def _reference(workload: Any, artifact: Path, own: dict[str, Any], *,
               cache_dir: Path, threads: int) -> tuple[dict[str, Any], str]:
    """The fp32 dense level's text outputs (cached), and its artifact's sha256."""
    import json

    from harness.build import build_artifact
    from harness.cache import artifact_sha256, key_of
    from harness.fsutil import atomic_path
    from harness.runtimes.genai import open_model
    from harness.variants import PruneSpec, QuantSpec

    ref_artifact = build_artifact(workload, quant=QuantSpec("genai-fp32"),
                                  prune=PruneSpec("magnitude", 0.0), cache_dir=cache_dir)
    ref_sha = artifact_sha256(ref_artifact)
    key = key_of({"reference": ref_sha, "workload": workload.fingerprint(),
                  "python": platform.python_version(), "kind": "genai-text"})
    path = cache_dir / "reference" / f"{workload.name}-{key[:24]}.npz"
    if path.is_file():
        with np.load(path) as npz:
            return {"top1": npz["top1"], "greedy": json.loads(str(npz["greedy"]))}, ref_sha
    if artifact_sha256(artifact) == ref_sha:
        ref = own
    else:
        ref_model = open_model(ref_artifact, threads=threads)
        ref = text_outputs(ref_model, workload, ref_artifact)
        del ref_model
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, top1=ref["top1"], greedy=np.array(json.dumps(ref["greedy"])))
    return ref, ref_sha


def quality_and_fidelity(model: Any, workload: Any, artifact: Path, *, cache_dir: Path | None,
                         threads: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(quality row, fidelity row) of the loaded model: perplexity on the workload's text,
    top-1 agreement and greedy-generation match against the fp32 level."""
    own = text_outputs(model, workload, artifact)
    ppl = math.exp(own["nll"] / own["n"])
    extra: dict[str, float] = {"nll_per_token": own["nll"] / own["n"]}
    fidelity: dict[str, Any] | None = None
    if cache_dir is not None:
        try:
            ref, ref_sha = _reference(workload, artifact, own, cache_dir=cache_dir,
                                      threads=threads)
            agree = float(np.mean(own["top1"] == ref["top1"]))
            same = [a == b for a, b in zip(own["greedy"], ref["greedy"], strict=True)]
            prefix = [_common_prefix(a, b) for a, b in
                      zip(own["greedy"], ref["greedy"], strict=True)]
            extra.update({"top1_agreement_fp32": agree,
                          "greedy_match_fp32": float(np.mean(same)),
                          "greedy_prefix_tokens_fp32": float(np.mean(prefix))})
            fidelity = {"cosine": None, "top1_agreement": agree, "sqnr_db": None,
                        "identical": bool(all(same) and agree == 1.0),
                        "reference_sha256": ref_sha}
        except Exception as exc:  # a missing comparison must not cost the case its figures
            fidelity = {"error": f"{type(exc).__name__}: {exc}"}
    quality = {"metric": "perplexity", "value": ppl, "n_examples": own["n"],
               "higher_is_better": False, "extra": extra}
    return quality, fidelity


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure_task(workload: Any, task: dict[str, Any]) -> dict[str, Any]:
    """The worker's ``measure`` task for a generative workload: timing, then quality."""
    with np.load(task["inputs"]) as npz:
        feeds = {k: npz[k] for k in npz.files}
    artifact = Path(task["artifact"])
    out = measure_generation(artifact, feeds, warmup=int(task["warmup"]),
                             iterations=int(task["iterations"]), threads=int(task["threads"]))
    if task.get("pace"):
        out["measured"]["extra"]["note"] = ("--pace is not applied to generative workloads: "
                                            "the decode steps run unpadded")
    if getattr(workload, "reference_note", None):
        out["measured"]["extra"]["reference"] = workload.reference_note
    if task.get("timing_only"):  # a later pass of the sweep: its quality is the first pass's
        return {"measured": out["measured"], "quality": None, "fidelity": None}
    cache_dir = Path(task["cache_dir"]) if task.get("cache_dir") else None
    quality, fidelity = quality_and_fidelity(out["model"], workload, artifact,
                                             cache_dir=cache_dir, threads=int(task["threads"]))
    return {"measured": out["measured"], "quality": quality, "fidelity": fidelity}
