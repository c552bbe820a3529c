"""Text generation on a device, from a model's architecture alone: no weights are read.

From a Hugging Face ``config.json`` of a llama-style decoder (llama, qwen2, mistral, glm: RMSNorm,
gated MLP, grouped-query attention) this module computes

* **parameters** per tensor (:func:`tensor_shapes`, :func:`parameter_count`);
* **weight bytes** at a precision (:data:`PRECISIONS`): plain types at their bits per weight, and
  llama.cpp's GGUF types tensor by tensor, following ``llama_tensor_get_type`` (which tensors of
  a ``*_K_M`` mix get more bits, the output/tied embedding at Q6_K, fallbacks for rows that are
  not a multiple of the 256-weight super-block);
* **KV cache** bytes ``2 * layers * kv_heads * head_dim * context * bytes_per_elem``;
* **work**: prefill of N tokens = ``2 * P_layers * N`` (the matmuls of every layer, P_layers =
  the parameters of the decoder layers) ``+ 2 * layers * N^2 * heads * head_dim`` (QK^T and
  A.V, ``4 * layers * N^2 * d`` halved by the causal mask) ``+ 2 * vocab * hidden`` (logits of
  the last token only); decode of one token at position t = ``2 * P_layers + 4 * layers * t *
  heads * head_dim + 2 * vocab * hidden``;
* **bytes read per decoded token**: every weight of the decoder layers and the output matrix at
  its stored precision (the embedding table is only gathered, one row) + the KV cache up to the
  position.

and predicts them on a :class:`~harness.profiles.DeviceProfile` unit (:func:`predict`):

* prefill time = prefill work / (unit peak at the compute precision x ``prefill_eff[unit]``);
  TTFT = that time (load-free: the weights are already in memory);
* decode time per token = bytes read / (peak DRAM bandwidth x ``decode_bw_eff[unit]``)
  + ``decode_overhead_ms[unit]``;
* peak memory = weights + KV cache at the context + activations of one prefill chunk + the
  profile's runtime overhead, against the app memory cap (fits);
* energy per token = (idle + the unit's active power) x decode time + DRAM bytes x pJ/byte;
* sustained decode after ``duration_s`` of continuous generation: the lumped thermal model
  (:class:`~harness.emulator.thermal.ThermalModel`, :class:`~harness.emulator.thermal.PowerAtClock`
  with the unit's active power), where the clock fraction slows the per-token overhead (compute)
  and not the DRAM time, as for graphs in :mod:`harness.emulator.sustained`.

The three efficiencies per unit are fitted on the published rows of
``harness/calibration/data/llm_published.csv`` by :mod:`harness.calibration.llm` and stored with
their errors in ``devices/fitted/llm.toml`` (docs/llm.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.profiles import ComputeUnit, DeviceProfile

MB = 2 ** 20  # MiB, as everywhere in the emulator

# ----------------------------------------------------------------------------- architecture

_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "vocab_size")


@dataclass(frozen=True)
class LlmConfig:
    """The figures of a decoder-only transformer that set its size, work and memory."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    max_positions: int | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, name: str = "model",
                  file: Path | str | None = None) -> LlmConfig:
        missing = [k for k in _REQUIRED if not isinstance(doc.get(k), int) or doc[k] < 1]
        if missing:
            raise InputError(f"not a decoder config: needs positive integers {missing}",
                             file=file)
        heads = doc["num_attention_heads"]
        kv = doc.get("num_key_value_heads") or heads
        head_dim = doc.get("head_dim") or doc["hidden_size"] // heads
        if not isinstance(kv, int) or heads % kv:
            raise InputError(f"num_key_value_heads {kv!r} must divide num_attention_heads "
                             f"{heads}", file=file)
        return cls(name=name, hidden=doc["hidden_size"], layers=doc["num_hidden_layers"],
                   heads=heads, kv_heads=kv, head_dim=int(head_dim),
                   intermediate=doc["intermediate_size"], vocab=doc["vocab_size"],
                   tied=bool(doc.get("tie_word_embeddings", False)),
                   qkv_bias=bool(doc.get("attention_bias", False)),
                   max_positions=doc.get("max_position_embeddings"))

    @property
    def gqa(self) -> int:
        """Query heads per KV head (llama.cpp's ``n_gqa``)."""
        return self.heads // self.kv_heads


def read_json_config(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` if it is a decoder config (has hidden_size and
    num_hidden_layers), else None. Detection by content, not by file name."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1)
            if head not in (b"{", b" ", b"\n", b"\r", b"\t"):
                return None
            fh.seek(0)
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(doc, dict) and "hidden_size" in doc and "num_hidden_layers" in doc:
        return doc
    return None


def load_config(path: Path | str) -> LlmConfig:
    p = Path(path)
    doc = read_json_config(p)
    if doc is None:
        raise InputError("not a Hugging Face decoder config.json (a JSON object with "
                         "hidden_size and num_hidden_layers)", file=p)
    return LlmConfig.from_dict(doc, name=p.stem if p.stem != "config" else p.parent.name,
                               file=p)


# Tensor kinds, named as in GGUF files (llama.cpp decides their types by these names).
TOKEN_EMBD, OUTPUT = "token_embd", "output"
ATTN_Q, ATTN_K, ATTN_V, ATTN_OUT = "attn_q", "attn_k", "attn_v", "attn_output"
FFN_GATE, FFN_UP, FFN_DOWN = "ffn_gate", "ffn_up", "ffn_down"
NORM, BIAS = "norm", "bias"   # 1-D: never quantized (kept in f32 by llama.cpp)


@dataclass(frozen=True)
class Tensor:
    kind: str
    layer: int | None     # None for the embedding, output and final norm
    rows: int             # output features
    cols: int             # input features: the dimension quantization blocks run along

    @property
    def params(self) -> int:
        return self.rows * self.cols


def _layer_tensors(cfg: LlmConfig, i: int) -> list[Tensor]:
    """The weight tensors of decoder layer ``i`` (every layer has the same shapes)."""
    h, q, kv = cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out = [Tensor(NORM, i, 1, h), Tensor(ATTN_Q, i, q, h), Tensor(ATTN_K, i, kv, h),
           Tensor(ATTN_V, i, kv, h), Tensor(ATTN_OUT, i, h, q), Tensor(NORM, i, 1, h),
           Tensor(FFN_GATE, i, cfg.intermediate, h), Tensor(FFN_UP, i, cfg.intermediate, h),
           Tensor(FFN_DOWN, i, h, cfg.intermediate)]
    if cfg.qkv_bias:
        out.append(Tensor(BIAS, i, 1, q + 2 * kv))
    return out


def _outer_tensors(cfg: LlmConfig) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors before the layers (the embedding) and after them (the final norm, and the
    output matrix only when not tied)."""
    after = [Tensor(NORM, None, 1, cfg.hidden)]
    if not cfg.tied:
        after.append(Tensor(OUTPUT, None, cfg.vocab, cfg.hidden))
    return [Tensor(TOKEN_EMBD, None, cfg.vocab, cfg.hidden)], after


def tensor_shapes(cfg: LlmConfig) -> list[Tensor]:
    """Every weight tensor of the model (the output matrix only when not tied)."""
    before, after = _outer_tensors(cfg)
    out = list(before)
    for i in range(cfg.layers):
        out += _layer_tensors(cfg, i)
    return out + after


def parameter_count(cfg: LlmConfig) -> int:
    """The parameters of :func:`tensor_shapes`, counted without listing every layer's tensors:
    a damaged file's metadata may claim billions of layers (gguf_facts checks the count
    against the file's tensors with this)."""
    before, after = _outer_tensors(cfg)
    return sum(t.params for t in before + after) + layer_parameters(cfg)


def layer_parameters(cfg: LlmConfig) -> int:
    """Parameters of the decoder layers (what every token multiplies through)."""
    return cfg.layers * sum(t.params for t in _layer_tensors(cfg, 0))


# ----------------------------------------------------------------------------- precisions

# GGML block types: bits per weight including their scales, from the block structs of
# ggml-common.h (bytes per block / weights per block x 8):
#   q4_0: fp16 d + 32 x 4 bit = 18 B / 32 = 4.5        q4_1: d, m fp16 + 16 B = 20 B / 32 = 5.0
#   q5_0: d + 4 B high bits + 16 B = 22 B / 32 = 5.5   q5_1: d, m + 4 + 16 = 24 B / 32 = 6.0
#   q8_0: fp16 d + 32 B = 34 B / 32 = 8.5              iq4_nl: fp16 d + 16 B = 18 B / 32 = 4.5
#   K-quants, 256-weight super-blocks:
#   q2_K: 16 B 4-bit scales/mins + 64 B quants + d, dmin fp16 = 84 B / 256 = 2.625
#   q3_K: 32 B high-bit mask + 64 B quants + 12 B 6-bit scales + fp16 d = 110 B / 256 = 3.4375
#   q4_K: d, dmin + 12 B scales + 128 B quants = 144 B / 256 = 4.5
#   q5_K: d, dmin + 12 B scales + 32 B high bits + 128 B = 176 B / 256 = 5.5
#   q6_K: 128 B low 4 bits + 64 B high 2 bits + 16 B int8 scales + fp16 d = 210 B / 256 = 6.5625
GGML_BPW = {"f32": 32.0, "f16": 16.0, "q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0,
            "q8_0": 8.5, "iq4_nl": 4.5, "q2_K": 2.625, "q3_K": 3.4375, "q4_K": 4.5,
            "q5_K": 5.5, "q6_K": 6.5625}
GGML_BLOCK = {"q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "iq4_nl": 32,
              "q2_K": 256, "q3_K": 256, "q4_K": 256, "q5_K": 256, "q6_K": 256}
# llama.cpp's tensor_type_fallback: a K-quant on rows that are not a multiple of 256 weights
# (GLM-4's 13696-wide ffn_down, say) is stored as the 32-block type below.
_GGML_FALLBACK = {"q2_K": "iq4_nl", "q3_K": "iq4_nl", "q4_K": "q5_0", "q5_K": "q5_1",
                  "q6_K": "q8_0"}
# File type -> default tensor type (llama_model_quantize_impl).
_GGUF_DEFAULT = {"q2_k": "q2_K", "q3_k_m": "q3_K", "q4_0": "q4_0", "q4_1": "q4_1",
                 "q4_k_m": "q4_K", "q5_k_m": "q5_K", "q6_k": "q6_K", "q8_0": "q8_0",
                 "f16": "f16"}


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_tensor_type(ftype: str, t: Tensor, cfg: LlmConfig) -> str:
    """The GGML type llama.cpp's ``llama-quantize`` gives tensor ``t`` for file type ``ftype``.

    Follows ``llama_tensor_get_type`` (src/llama-quant.cpp) for the dense, non-Falcon, non-MoE,
    non-70B case and no importance matrix; 1-D tensors stay f32. Checked against the sizes
    ``llama-quantize --help`` prints for Llama-3-8B (tests/test_generation.py)."""
    if t.kind in (NORM, BIAS):
        return "f32"
    default = _GGUF_DEFAULT[ftype]
    if default == "f16":
        return "f16"
    new = default
    n = cfg.layers
    if t.kind == OUTPUT or (cfg.tied and t.kind == TOKEN_EMBD):
        # The output matrix (or the tied embedding, which is the output) gets Q6_K unless the
        # file is Q8_0; rows not a multiple of the block size get Q8_0.
        if t.cols % GGML_BLOCK.get(new, 32):
            new = "q8_0"
        elif new != "q8_0":
            new = "q6_K"
        # then the same row-length check as every tensor: Q6_K's 256-wide blocks do not fit
        # SmolLM2's 576 columns, so its tied embedding is stored Q8_0 (as the wheel's file is)
    elif t.kind == ATTN_V:
        i = t.layer or 0
        if ftype == "q2_k":
            new = "q4_K" if cfg.gqa >= 4 else "q3_K"
        elif ftype == "q3_k_m":
            new = "q5_K" if i < 2 else "q4_K"
        elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n):
            new = "q6_K"
    elif t.kind == FFN_DOWN:
        i = t.layer or 0
        if ftype == "q2_k":
            new = "q3_K"
        elif ftype == "q3_k_m":
            new = "q5_K" if i < n // 16 else "q4_K"
        elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n):
            new = "q6_K"
    elif t.kind == ATTN_OUT:
        if ftype == "q2_k":
            new = "q3_K"
        elif ftype == "q3_k_m":
            new = "q4_K"
    if new in GGML_BLOCK and t.cols % GGML_BLOCK[new]:
        new = _GGML_FALLBACK.get(new, "f16")
    return new


@dataclass(frozen=True)
class Precision:
    """How a precision stores weights and at which rate its matmuls run.

    ``compute``: the peak (a key of a unit's ``peak_gops``) prefill runs at; ``None`` means
    int8 on a CPU (llama.cpp quantizes activations to 8 bits for its quantized dot products)
    and fp16 on GPUs and NPUs (their kernels dequantize the weights to fp16)."""

    name: str
    linear_bpw: float | None     # bits per weight of the layers' matrices; None: GGUF rules
    embed_bpw: float | None      # of the embedding table and output matrix
    compute: str | None
    note: str
    # of norms and biases where a file says (GGUF keeps them f32); None: 32 at fp32, else 16
    vector_bpw: float | None = None


# Group-wise 4-bit: 4 bits + one fp16 scale per group of 32 = 4.5 bits per weight (ExecuTorch's
# 8da4w and SpinQuant use group size 32; QNN's w4a16 block quantization is taken to be alike).
# Embedding and classifier in int8 as ExecuTorch's published Llama 3.2 recipes keep them
# ("int8 classifier & embeddings", llm_published.csv); per-row fp32 scales add 32/hidden bits,
# under 0.02 bpw, left out.
PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 32, 32, "fp32", "32-bit float weights and arithmetic"),
    "fp16": Precision("fp16", 16, 16, "fp16", "16-bit float weights and arithmetic"),
    "bf16": Precision("bf16", 16, 16, "fp16", "bfloat16 weights; run at the unit's fp16 rate"),
    "int8": Precision("int8", 8, 8, "int8", "8-bit weights and activations (per-channel "
                      "scales, < 0.02 bpw, left out)"),
    "w8a16": Precision("w8a16", 8, 8, "fp16", "8-bit weights, 16-bit activations"),
    "w4a16": Precision("w4a16", 4.5, 8, "fp16", "4-bit weights, group 32, fp16 scales: 4.5 "
                       "bpw; int8 embedding/classifier; 16-bit activations"),
    "w4a8": Precision("w4a8", 4.5, 8, "int8", "4-bit weights, group 32, fp16 scales: 4.5 bpw; "
                      "int8 embedding/classifier; int8 dynamic activations (ExecuTorch 8da4w)"),
    "int4": Precision("int4", 4.5, 8, "int4", "4-bit weights (4.5 bpw with scales) at the "
                      "unit's int4 rate, as `--precision int4` for graphs"),
    **{f: Precision(f, None, None, None if f != "f16" else "fp16",
                    f"llama.cpp GGUF {f.upper()}: GGML types per tensor as llama-quantize "
                    "assigns them") for f in _GGUF_DEFAULT},
}
GGUF_TYPES = tuple(_GGUF_DEFAULT)


def precision(name: str) -> Precision:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(f"unknown LLM precision {name!r}; one of {', '.join(PRECISIONS)}",
                         field="--precision") from None


def tensor_bits(cfg: LlmConfig, prec: Precision, t: Tensor) -> float:
    """Bits per weight of tensor ``t`` stored at ``prec``."""
    if prec.linear_bpw is None:
        return GGML_BPW[gguf_tensor_type(prec.name, t, cfg)]
    if t.kind in (NORM, BIAS):
        if prec.vector_bpw is not None:
            return prec.vector_bpw
        return 32.0 if prec.name == "fp32" else 16.0
    if t.kind in (TOKEN_EMBD, OUTPUT):
        assert prec.embed_bpw is not None
        return prec.embed_bpw
    return prec.linear_bpw


def weight_bytes(cfg: LlmConfig, prec: Precision | str) -> float:
    """Bytes of all weights stored at ``prec`` (what a file or memory holds)."""
    p = precision(prec) if isinstance(prec, str) else prec
    return sum(t.params * tensor_bits(cfg, p, t) for t in tensor_shapes(cfg)) / 8


def bits_per_weight(cfg: LlmConfig, prec: Precision | str) -> float:
    """Effective bits per weight over the whole model (as llama.cpp prints ``BPW``)."""
    return weight_bytes(cfg, prec) * 8 / parameter_count(cfg)


def decode_weight_bytes(cfg: LlmConfig, prec: Precision | str) -> float:
    """Weight bytes read per decoded token: every layer matrix and the output matrix (the tied
    embedding when tied); of the embedding table only one row, which is neglected."""
    p = precision(prec) if isinstance(prec, str) else prec
    total = 0.0
    for t in tensor_shapes(cfg):
        if t.kind == TOKEN_EMBD and not cfg.tied:
            continue
        total += t.params * tensor_bits(cfg, p, t) / 8
    return total


def kv_cache_bytes(cfg: LlmConfig, context: int, *, bytes_per_elem: float = 2.0) -> float:
    """K and V of every layer for ``context`` positions: 2 * layers * kv_heads * head_dim *
    context * bytes_per_elem (fp16 by default, llama.cpp's and most runtimes' default)."""
    return 2 * cfg.layers * cfg.kv_heads * cfg.head_dim * context * bytes_per_elem


def prefill_flops(cfg: LlmConfig, n: int) -> float:
    """2 * P_layers * n + 2 * layers * n^2 * heads * head_dim + 2 * vocab * hidden."""
    attn = 2.0 * cfg.layers * n * n * cfg.heads * cfg.head_dim
    return 2.0 * layer_parameters(cfg) * n + attn + 2.0 * cfg.vocab * cfg.hidden


def decode_flops(cfg: LlmConfig, position: float) -> float:
    """One token at ``position``: 2 * P_layers + 4 * layers * position * heads * head_dim +
    2 * vocab * hidden."""
    attn = 4.0 * cfg.layers * position * cfg.heads * cfg.head_dim
    return 2.0 * layer_parameters(cfg) + attn + 2.0 * cfg.vocab * cfg.hidden


def activation_bytes(cfg: LlmConfig, prompt: int, context: int, *, chunk: int = 512) -> float:
    """Live activations of one prefill chunk (min(prompt, 512) tokens, llama.cpp's default
    micro-batch): hidden states, q/k/v and the MLP's gate/up outputs in fp32, the attention
    scores of one layer (chunk x heads x context, fp32) and the logits of one token."""
    c = max(1, min(prompt, chunk))
    states = c * (4 * cfg.hidden + 2 * cfg.intermediate) * 4
    scores = c * cfg.heads * context * 4
    return states + scores + cfg.vocab * 4


# ----------------------------------------------------------------------------- prediction


@dataclass(frozen=True)
class UnitFit:
    """Fitted efficiencies of one unit kind for generation (devices/fitted/llm.toml)."""

    decode_bw_eff: float       # share of peak DRAM bandwidth while decoding
    decode_overhead_ms: float  # fixed cost per decoded token (kernel launches, sampling)
    prefill_eff: float         # share of the unit's peak at the compute precision in prefill
    source: str = ""


def fitted_path() -> Path:
    from harness.profiles import default_devices_dir

    return default_devices_dir() / "fitted" / "llm.toml"


def load_fit_fidelity(path: Path | None = None) -> dict[str, Any]:
    """The fit's recorded errors (the ``[fidelity]`` table of devices/fitted/llm.toml)."""
    from harness.datafiles import read_toml

    p = path or fitted_path()
    fid = read_toml(p, kind="fitted LLM parameters").get("fidelity")
    return dict(fid) if isinstance(fid, dict) else {}


def load_fit(path: Path | None = None) -> dict[str, UnitFit]:
    """Per unit kind (cpu/gpu/npu), the fitted generation efficiencies."""
    from harness.datafiles import read_toml

    p = path or fitted_path()
    doc = read_toml(p, kind="fitted LLM parameters")
    out = {}
    for unit, raw in doc.get("units", {}).items():
        try:
            out[unit] = UnitFit(decode_bw_eff=float(raw["decode_bw_eff"]["value"]),
                                decode_overhead_ms=float(raw["decode_overhead_ms"]["value"]),
                                prefill_eff=float(raw["prefill_eff"]["value"]),
                                source=str(raw["decode_bw_eff"].get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"units.{unit}: expected decode_bw_eff, decode_overhead_ms and "
                             f"prefill_eff tables with a value ({exc})", file=p) from None
    return out


# Compute precisions tried, in order, when a unit has no peak for the one asked for.
_COMPUTE_FALLBACK = {"int4": ("int4", "int8", "fp16", "fp32"), "int8": ("int8", "fp16", "fp32"),
                     "fp16": ("fp16", "fp32", "int8"), "fp32": ("fp32", "fp16")}


def compute_precision(prec: Precision, unit: ComputeUnit) -> str:
    """The key of ``unit.peak_gops`` prefill runs at for ``prec``."""
    want = prec.compute or ("int8" if unit.kind == "cpu" else "fp16")
    for key in _COMPUTE_FALLBACK[want]:
        if key in unit.peak_gops:
            return key
    raise InputError(f"unit {unit.name} has no peak for {want} or a fallback", field="--unit")


@dataclass(frozen=True)
class GenerationPrediction:
    model: str
    device: str
    unit: str
    precision: str
    prompt_tokens: int
    gen_tokens: int
    context: int
    params: int
    weight_mb: float
    bits_per_weight: float
    kv_cache_mb: float
    peak_memory_mb: float
    app_cap_mb: float
    fits: bool
    compute_precision: str
    prefill_ms: float
    decode_ms_per_token: float
    decode_memory_ms: float
    decode_overhead_ms: float
    energy_mj_per_token: float
    sustained_decode_ms_per_token: float
    sustained_clock_fraction: float
    sustained_temp_c: float
    duration_s: float

    @property
    def ttft_ms(self) -> float:
        return self.prefill_ms

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_ms * 1e3

    @property
    def decode_tokens_per_s(self) -> float:
        return 1e3 / self.decode_ms_per_token

    @property
    def sustained_decode_tokens_per_s(self) -> float:
        return 1e3 / self.sustained_decode_ms_per_token

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "device": self.device, "unit": self.unit,
            "precision": self.precision, "prompt_tokens": self.prompt_tokens,
            "gen_tokens": self.gen_tokens, "context": self.context, "params": self.params,
            "weight_mb": self.weight_mb, "bits_per_weight": self.bits_per_weight,
            "compute_precision": self.compute_precision,
            "prefill_tokens_per_s": self.prefill_tokens_per_s, "ttft_ms": self.ttft_ms,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "sustained_decode_tokens_per_s": self.sustained_decode_tokens_per_s,
            "sustained_clock_fraction": self.sustained_clock_fraction,
            "sustained_temp_c": self.sustained_temp_c, "sustained_after_s": self.duration_s,
            "kv_cache_mb": self.kv_cache_mb, "peak_memory_mb": self.peak_memory_mb,
            "app_cap_mb": self.app_cap_mb, "fits": self.fits,
            "energy_mj_per_token": self.energy_mj_per_token,
        }


def prefill_ms(cfg: LlmConfig, unit: ComputeUnit, prec: Precision, n: int,
               fit: UnitFit) -> float:
    peak = unit.peak_gops[compute_precision(prec, unit)].value
    return prefill_flops(cfg, n) / (peak * 1e9 * fit.prefill_eff) * 1e3


def decode_memory_ms(cfg: LlmConfig, profile: DeviceProfile, prec: Precision, position: float,
                     fit: UnitFit, *, kv_bytes_per_elem: float = 2.0) -> float:
    """DRAM time of one token: bytes read / (peak bandwidth x fitted efficiency)."""
    read = decode_weight_bytes(cfg, prec) + kv_cache_bytes(
        cfg, max(0, round(position)), bytes_per_elem=kv_bytes_per_elem)
    return read / (profile.memory.bandwidth_gb_s.value * 1e9 * fit.decode_bw_eff) * 1e3


def predict(cfg: LlmConfig, profile: DeviceProfile, *, unit: str = "cpu",
            precision_name: str | Precision = "q4_k_m", prompt_tokens: int = 128,
            gen_tokens: int = 128, context: int | None = None, duration_s: float = 600.0,
            fit: dict[str, UnitFit] | None = None, kv_bytes_per_elem: float = 2.0,
            stored_weight_bytes: float | None = None) -> GenerationPrediction:
    """Prefill, decode, memory, energy and sustained decode of ``cfg`` on ``profile``'s unit.

    ``precision_name`` is a name of :data:`PRECISIONS` or a :class:`Precision` (a graph's, from
    :func:`graph_facts`); ``kv_bytes_per_elem`` the KV cache's element size (2: fp16, the
    runtimes' default; 4 for ONNX Runtime GenAI's CPU graphs); ``stored_weight_bytes`` the
    weights as stored when known (a graph's initializers) instead of computed from ``cfg``."""
    if prompt_tokens < 1 or gen_tokens < 1:
        raise InputError("prompt and generated tokens must be >= 1", field="--prompt-tokens")
    ctx = context if context is not None else prompt_tokens + gen_tokens
    if ctx < prompt_tokens + gen_tokens:
        raise InputError(f"context {ctx} is shorter than prompt + generated tokens "
                         f"({prompt_tokens + gen_tokens})", field="--context")
    prec = precision_name if isinstance(precision_name, Precision) else precision(precision_name)
    cu = profile.unit(unit)
    fits_by_kind = fit if fit is not None else load_fit()
    if cu.kind not in fits_by_kind:
        raise InputError(f"no fitted generation parameters for {cu.kind} units", field="--unit")
    uf = fits_by_kind[cu.kind]

    pre_ms = prefill_ms(cfg, cu, prec, prompt_tokens, uf)
    position = prompt_tokens + gen_tokens / 2          # mean position over the generation
    mem_ms = decode_memory_ms(cfg, profile, prec, position, uf,
                              kv_bytes_per_elem=kv_bytes_per_elem)
    tok_ms = mem_ms + uf.decode_overhead_ms

    weights = stored_weight_bytes if stored_weight_bytes is not None else weight_bytes(cfg, prec)
    kv = kv_cache_bytes(cfg, ctx, bytes_per_elem=kv_bytes_per_elem)
    peak_mb = (weights + kv + activation_bytes(cfg, prompt_tokens, ctx)) / MB \
        + profile.memory.runtime_overhead_mb.value
    cap = profile.memory.app_cap_mb.value

    idle_w = profile.power.idle_w.value
    active_w = cu.active_power_w.value
    read = decode_weight_bytes(cfg, prec) + kv_cache_bytes(cfg, round(position),
                                                           bytes_per_elem=kv_bytes_per_elem)
    dram_mj = read * profile.memory.dram_pj_per_byte.value * 1e-9
    energy = (idle_w + active_w) * tok_ms + dram_mj

    sus_ms, sus_f, sus_t = _sustained(profile, active_w, mem_ms, uf.decode_overhead_ms,
                                      duration_s)
    return GenerationPrediction(
        model=cfg.name, device=profile.name, unit=unit, precision=prec.name,
        prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, context=ctx,
        params=parameter_count(cfg), weight_mb=weights / MB,
        bits_per_weight=bits_per_weight(cfg, prec), kv_cache_mb=kv / MB,
        peak_memory_mb=peak_mb, app_cap_mb=cap, fits=peak_mb <= cap,
        compute_precision=compute_precision(prec, cu), prefill_ms=pre_ms,
        decode_ms_per_token=tok_ms, decode_memory_ms=mem_ms,
        decode_overhead_ms=uf.decode_overhead_ms, energy_mj_per_token=energy,
        sustained_decode_ms_per_token=sus_ms, sustained_clock_fraction=sus_f,
        sustained_temp_c=sus_t, duration_s=duration_s)


def _sustained(profile: DeviceProfile, active_w: float, memory_ms: float, overhead_ms: float,
               duration_s: float, *, step_s: float = 1.0) -> tuple[float, float, float]:
    """(ms per token, clock fraction, temperature) after ``duration_s`` of back-to-back decode.

    The unit is taken to draw its full active power while decoding (cores stalled on DRAM still
    burn most of it), scaled as f^3 by :class:`PowerAtClock`; the clock fraction slows only the
    per-token overhead, DRAM time does not scale (as for graphs)."""
    from harness.emulator.thermal import PowerAtClock, ThermalModel

    if not (0 < duration_s < math.inf):
        raise InputError(f"expected a finite duration > 0, got {duration_s!r}",
                         field="--duration")
    thermal = ThermalModel.from_profile(profile)
    power = PowerAtClock(idle_w=profile.power.idle_w.value, active_w=active_w)
    temp, now, f = thermal.ambient_c, 0.0, 1.0
    while now < duration_s:
        dt = min(step_s, duration_s - now)
        f = thermal.clock_fraction(temp)
        temp = thermal.step(temp, power(f), dt)
        now += dt
    f = thermal.clock_fraction(temp)
    return memory_ms + overhead_ms / f, f, temp


# ----------------------------------------------------------------------------- ONNX graphs

# bytes per element of the ONNX tensor types a decoder graph stores weights and caches in
_ONNX_ITEMSIZE = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 10: 2, 11: 8, 16: 2, 21: 1, 22: 1}


@dataclass(frozen=True)
class GraphFacts:
    """What a decoder ONNX graph (ONNX Runtime GenAI's builder: GroupQueryAttention with a KV
    cache, MatMul or MatMulNBits projections) says about generation: its architecture, the
    precision its weights are stored at (bits per weight measured on the stored tensors, scales
    and zero points included), the bytes all its initializers take, and the KV cache's element
    size (the graph's ``past_key_values`` type)."""

    config: LlmConfig
    precision: Precision
    stored_weight_bytes: float
    kv_bytes_per_elem: float
    weight_bits: int | None      # MatMulNBits bits (None: float matmuls)
    block_size: int | None
    accuracy_level: int | None


def is_decoder_graph(path: Path | str) -> bool:
    """Whether ``path`` is an ONNX decoder with a KV cache (a GroupQueryAttention node), as
    ONNX Runtime GenAI's builder writes them; reads no weights."""
    p = Path(path)
    if p.suffix != ".onnx" or not p.is_file():
        return False
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception:  # not a readable ONNX file: the graph emulator reports it
        return False
    return any(n.op_type == "GroupQueryAttention" for n in model.graph.node)


def _init_bytes(init: Any) -> int:
    n = 1
    for d in init.dims:
        n *= int(d)
    return n * _ONNX_ITEMSIZE.get(int(init.data_type), 4)


def _kv_heads_of_inputs(model: Any) -> int:
    """KV heads from the first KV cache input's shape (batch, KV heads, positions, head size),
    0 when that dimension is not a number."""
    for i in model.graph.input:
        if i.name.startswith("past_key_values") and i.name.endswith(".key"):
            dims = i.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return 0


def graph_facts(path: Path | str) -> GraphFacts:
    """:class:`GraphFacts` of a decoder graph; reads no weights (external data stays on disk).

    The architecture comes from the graph itself: layers = attention nodes (GroupQueryAttention,
    or MultiHeadAttention where the builder spells grouped-query attention out with
    ``repeat_kv``, as in its fp16 CPU graph), heads from their attributes, KV heads from
    GroupQueryAttention's or else the KV cache inputs' shape (``past_key_values.N.key``: batch,
    KV heads, positions, head size) or the K projection, hidden size and vocabulary from the
    output projection (``lm_head``), head size from the Q (or fused QKV) projection, the MLP
    width from ``gate_proj``.
    Raises an :class:`InputError` naming what is missing for a graph that is not such a decoder.
    """
    import re

    import onnx
    from onnx import helper

    p = Path(path)
    model = onnx.load(str(p), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    attention = [n for n in model.graph.node
                 if n.op_type in ("GroupQueryAttention", "MultiHeadAttention")]
    if not attention:
        raise InputError("not a decoder graph with a KV cache: no GroupQueryAttention or "
                         "MultiHeadAttention node (expected an ONNX Runtime GenAI model builder "
                         "graph)", file=p)
    attrs = {a.name: helper.get_attribute_value(a) for a in attention[0].attribute}
    heads = int(attrs["num_heads"])
    kv_heads = int(attrs.get("kv_num_heads", 0)) or _kv_heads_of_inputs(model)

    # (K, N, stored bytes incl. scales / zero points, nbits attrs) of every projection
    linear: dict[str, tuple[int, int, int, dict[str, int]]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            a = {x.name: int(helper.get_attribute_value(x)) for x in node.attribute}
            stored = sum(_init_bytes(inits[i]) for i in node.input[1:] if i in inits)
            linear[node.name] = (a["K"], a["N"], stored, a)
        elif node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in inits:
            w = inits[node.input[1]]
            if len(w.dims) == 2:
                linear[node.name] = (int(w.dims[0]), int(w.dims[1]), _init_bytes(w), {})

    def find(pattern: str) -> list[tuple[int, int, int, dict[str, int]]]:
        return [v for k, v in linear.items() if re.search(pattern, k)]

    head = find(r"lm_head")
    qkv = find(r"layers\.0/attn/qkv_proj")
    q = find(r"layers\.0/attn/q_proj")
    gate = find(r"layers\.0/mlp/gate_proj")
    missing = [name for name, got in (("lm_head", head), ("layers.0 qkv_proj or q_proj",
                                      qkv or q), ("layers.0 mlp/gate_proj", gate)) if not got]
    if missing:
        raise InputError(f"decoder graph without the projections {missing} (named as ONNX "
                         "Runtime GenAI's builder names them)", file=p)
    hidden, vocab = head[0][0], head[0][1]
    head_dim = (qkv[0][1] // (heads + 2 * kv_heads)) if qkv else q[0][1] // heads
    if not kv_heads:
        k = find(r"layers\.0/attn/k_proj")
        if not k or qkv:
            raise InputError("decoder graph whose KV heads cannot be read (no kv_num_heads "
                             "attribute, KV cache input shape or layers.0 k_proj)", file=p)
        kv_heads = k[0][1] // head_dim
    # Decode reads the output matrix once per token whether or not the embedding table is a
    # separate initializer (it is only gathered, one row): taken as tied; the stored bytes
    # below count a separate table.
    cfg = LlmConfig(name=p.parent.name or p.stem, hidden=hidden, layers=len(attention),
                    heads=heads,
                    kv_heads=kv_heads, head_dim=head_dim, intermediate=gate[0][1], vocab=vocab,
                    tied=True, qkv_bias=False, max_positions=None)
    # Measured bits per weight of the layer matrices and of the output matrix.
    layer = [v for k, v in linear.items() if "lm_head" not in k]
    layer_bpw = 8.0 * sum(v[2] for v in layer) / max(1, sum(v[0] * v[1] for v in layer))
    head_bpw = 8.0 * head[0][2] / (hidden * vocab)
    nbits = next((v[3] for v in layer if v[3]), {})
    acc = nbits.get("accuracy_level")
    # MatMulNBits at accuracy level 4 quantizes activations to int8 (int8 dot products);
    # lower levels and float matmuls compute in the weights' float type.
    float_type = next((int(i.data_type) for k, i in inits.items()
                       if "layers.0" in k and int(i.data_type) in (1, 10, 16)), 1)
    compute = "int8" if acc == 4 else ("fp16" if float_type in (10, 16) else "fp32")
    float_name = {1: "fp32", 10: "fp16", 16: "bf16"}[float_type]
    name = (f"onnx-w{nbits['bits']}-b{nbits['block_size']}-acc{acc}" if nbits
            else f"onnx-{float_name}")
    prec = Precision(name, layer_bpw, head_bpw, compute,
                     f"measured on the graph: layer matrices {layer_bpw:.3f} bpw, output "
                     f"matrix {head_bpw:.3f} bpw (scales and zero points included)")
    kv_type = next((int(i.type.tensor_type.elem_type) for i in model.graph.input
                    if i.name.startswith("past_key_values")), 10)
    total = float(sum(_init_bytes(i) for i in inits.values()))
    return GraphFacts(config=cfg, precision=prec, stored_weight_bytes=total,
                      kv_bytes_per_elem=float(_ONNX_ITEMSIZE.get(kv_type, 2)),
                      weight_bits=nbits.get("bits"), block_size=nbits.get("block_size"),
                      accuracy_level=acc)
