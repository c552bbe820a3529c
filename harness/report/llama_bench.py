"""``harness export RUN --format llama-bench``: language-model cases as llama-bench's JSON.

llama.cpp's ``llama-bench -o json`` writes a list of test records; its comparison script
(``scripts/compare-llama-bench.py``) and dashboards read them. Each ok generative case gives:

* one **pp** record per timed prompt length N (``n_prompt`` = N, ``n_gen`` = 0): one sample per
  prefill, ``samples_ts`` = N / seconds. The harness's prefill sample also chooses the first
  token (the time to first token), which llama-bench's pp test does not: a few microseconds
  of sampling on top of the forward pass.
* one **tg** record per prompt length (``n_prompt`` = 0, ``n_gen`` = the decode steps of a
  round, ``n_depth`` = N: llama-bench's ``-d``, the tokens already in the KV cache): one sample
  per round = the sum of that round's decode steps, ``samples_ts`` = steps / seconds.

``avg_ts`` / ``stddev_ts`` are the mean and sample standard deviation of ``samples_ts`` and
``avg_ns`` / ``stddev_ns`` those of ``samples_ns``, as llama-bench computes them. Fields that
describe llama.cpp's own settings are filled with what the harness ran (``backends`` "CPU",
``n_gpu_layers`` 0, the KV-cache type of the graph, ``n_threads`` of the run) and
``build_commit`` names the runtime (``onnxruntime-genai 0.18.0``), so a comparison never mistakes
these rows for llama.cpp's.
"""

from __future__ import annotations

import statistics
from typing import Any

from harness.core.measurement import Measurement
from harness.results import Run


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def _record(base: dict[str, Any], *, n_prompt: int, n_gen: int, n_depth: int,
            samples_ns: list[int], tokens: int) -> dict[str, Any]:
    samples_ts = [tokens / (s / 1e9) for s in samples_ns]
    avg_ns, std_ns = _stats([float(s) for s in samples_ns])
    avg_ts, std_ts = _stats(samples_ts)
    return {**base, "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth,
            "avg_ns": round(avg_ns), "stddev_ns": round(std_ns),
            "avg_ts": avg_ts, "stddev_ts": std_ts,
            "samples_ns": list(samples_ns), "samples_ts": samples_ts}


def records(m: Measurement, *, host: dict[str, Any], test_time: str | None) -> list[dict[str, Any]]:
    """llama-bench records of one generative measurement (none for other cases)."""
    measured = m.measured
    if m.status != "ok" or measured is None or measured.phase("load") is None:
        return []
    extra = measured.extra or {}
    gen_tokens = int(extra.get("gen_tokens") or 0)
    steps = gen_tokens - 1  # the first new token is part of the time to first token
    art = m.artifact
    base = {
        "build_commit": f"{measured.runtime} {measured.runtime_version}",
        "build_number": 0,
        "cpu_info": host.get("cpu_model") or "",
        "gpu_info": "",
        "backends": "CPU",
        "model_filename": art.path if art and art.path else m.case_id,
        "model_type": f"{m.workload} {m.quant} prune-{m.prune}",
        "model_size": art.size_bytes if art else None,
        "model_n_params": art.params if art else None,
        # the whole prompt goes through the graph in one pass (no micro-batches)
        "n_batch": max(extra.get("prompt_tokens") or [1]),
        "n_ubatch": max(extra.get("prompt_tokens") or [1]),
        "n_threads": measured.threads,
        "cpu_mask": "0x0", "cpu_strict": False, "poll": 0,
        "type_k": extra.get("kv_type", "f32"), "type_v": extra.get("kv_type", "f32"),
        "n_gpu_layers": 0, "split_mode": "none", "main_gpu": 0, "no_kv_offload": False,
        "flash_attn": False, "tensor_split": "0.00", "use_mmap": False, "embeddings": False,
        "test_time": test_time or m.started_at or "",
        "edge_harness": {"case_id": m.case_id, "device": m.device_label,
                         "backend": m.backend},
    }
    out: list[dict[str, Any]] = []
    for phase in measured.phases:
        kind, _, n_text = phase.name.partition("_")
        if not n_text.isdigit() or not phase.samples:
            continue
        n = int(n_text)
        samples = [int(s) for s in phase.samples]
        if kind == "prefill":
            out.append(_record(base, n_prompt=n, n_gen=0, n_depth=0, samples_ns=samples,
                               tokens=n))
        elif kind == "decode" and steps > 0:
            rounds = [sum(samples[i:i + steps]) for i in range(0, len(samples), steps)
                      if len(samples[i:i + steps]) == steps]
            if rounds:
                out.append(_record(base, n_prompt=0, n_gen=steps, n_depth=n,
                                   samples_ns=rounds, tokens=steps))
    return out


def llama_bench(run: Run) -> list[dict[str, Any]]:
    """Every ok generative case of ``run`` as llama-bench JSON records (see the module)."""
    host = run.manifest.get("host") or {}
    test_time = run.manifest.get("created_at")
    out: list[dict[str, Any]] = []
    for m in run.measurements:
        out += records(m, host=host, test_time=test_time)
    return out
