"""What a GGUF file (llama.cpp's model format) says about text generation: its architecture as an
:class:`~harness.emulator.generation.LlmConfig` and the precision its weights are stored at.

The architecture comes from the file's metadata (``{arch}.block_count``,
``{arch}.embedding_length``, ``{arch}.attention.head_count`` ...), checked against its tensors;
the weights are not re-derived from a precision rule: every tensor's GGML type and byte size
are read from the tensor table, so the bytes the emulator reads per decoded token and holds in
memory are the file's own (:func:`gguf_facts`, used by ``harness emulate MODEL.gguf``). With
``--precision`` the same architecture is costed at another precision instead (a what-if).

The file is read with llama.cpp's own Python reader (``gguf.GGUFReader``, a memory map): tensor
data are not loaded. ``gguf`` is imported only here, lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.emulator.generation import (
    GGUF_TYPES,
    PRECISIONS,
    LlmConfig,
    Precision,
    parameter_count,
)
from harness.errors import InputError

GGUF_MAGIC = b"GGUF"

# Tensors (layer 0) a llama-like decoder has: separate Q, K, V and output projections and a
# gated MLP, which is the architecture generation.py costs. Files of other designs (GPT-2's
# fused attn_qkv, mixture-of-experts ffn_*_exps, ...) lack one of them.
_LAYER_TENSORS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class GgufTensor:
    """One tensor of the file as stored: GGML type name (``Q4_1``, ``F32``, ...), shape in
    GGML order (``ne0`` first: the row length, along which quantization blocks run) and bytes."""

    name: str
    ggml_type: str
    shape: tuple[int, ...]
    n_bytes: int

    @property
    def params(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GgufFacts:
    """A GGUF decoder: its architecture, the precision measured on its stored tensors (as
    :class:`~harness.emulator.generation.GraphFacts` does for an ONNX graph), its tensors, and
    ``file_type``, the harness's GGUF precision name of ``general.file_type`` when it is one of
    :data:`~harness.emulator.generation.GGUF_TYPES` (else None)."""

    architecture: str
    config: LlmConfig
    precision: Precision
    file_type: str | None
    tensors: tuple[GgufTensor, ...]

    @property
    def stored_weight_bytes(self) -> float:
        """Bytes of all tensors in the file: what the weights take in memory."""
        return float(sum(t.n_bytes for t in self.tensors))

    @property
    def decode_weight_bytes(self) -> float:
        """Bytes read per decoded token: every tensor but an untied embedding table (only one
        row of it is gathered)."""
        return float(sum(t.n_bytes for t in self.tensors
                         if not (t.name == "token_embd.weight" and not self.config.tied)))


def is_gguf(path: Path | str) -> bool:
    """Whether ``path`` starts with the GGUF magic (detection by content, not by name)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _file_type_name(code: int | None) -> str | None:
    """``general.file_type`` as the harness names GGUF precisions (``MOSTLY_Q4_K_M`` ->
    ``q4_k_m``), or None for a type the harness has no rule set for."""
    import gguf

    if code is None:
        return None
    try:
        name = gguf.LlamaFileType(code).name.lower().removeprefix("mostly_")
    except ValueError:
        return None
    return name if name in GGUF_TYPES else None


def gguf_facts(path: Path | str) -> GgufFacts:
    """:class:`GgufFacts` of a GGUF file of a llama-like decoder; reads no tensor data.

    Raises an :class:`InputError` naming the file for a file that is not GGUF (or is truncated
    or corrupt), and naming the architecture for a model the harness cannot cost."""
    p = Path(path)
    reader = _read(p)
    fields = reader.fields

    def value(key: str) -> Any:
        f = fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # a malformed field reads as absent; required ones are checked below
            return None

    arch = value("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InputError("GGUF file without general.architecture", file=p)
    tensors = tuple(
        GgufTensor(name=t.name, ggml_type=t.tensor_type.name,
                   shape=tuple(int(d) for d in t.shape), n_bytes=int(t.n_bytes))
        for t in reader.tensors)
    by_name = {t.name: t for t in tensors}
    missing = [k for k in _LAYER_TENSORS if f"blk.0.{k}.weight" not in by_name]
    if missing or "token_embd.weight" not in by_name:
        raise InputError(f"architecture {arch!r} cannot be costed: not a llama-like decoder "
                         f"(no {', '.join(f'blk.0.{k}.weight' for k in missing) or 'token_embd'}"
                         "; the emulator costs separate Q/K/V projections and a gated MLP)",
                         file=p)

    keys = {"hidden_size": "embedding_length", "num_hidden_layers": "block_count",
            "num_attention_heads": "attention.head_count",
            "num_key_value_heads": "attention.head_count_kv",
            "intermediate_size": "feed_forward_length",
            "max_position_embeddings": "context_length", "head_dim": "attention.key_length"}
    doc: dict[str, Any] = {}
    for hf, g in keys.items():
        v = value(f"{arch}.{g}")
        if v is not None and not isinstance(v, int):
            # a per-layer array (head counts varying by layer) is not a model this costs
            raise InputError(f"architecture {arch!r} cannot be costed: {arch}.{g} is "
                             f"{type(v).__name__}, expected one integer", file=p)
        if v:
            doc[hf] = int(v)
    embd = by_name["token_embd.weight"]
    # The vocabulary is the embedding table's row count (what sizes the weights); the token
    # list's length where the table's shape is not 2-D.
    tokens = fields.get("tokenizer.ggml.tokens")
    doc["vocab_size"] = embd.shape[1] if len(embd.shape) == 2 else (
        len(tokens.data) if tokens is not None else 0)
    # A model without an output matrix multiplies by the embedding table (llama.cpp's
    # has_output false); Q/K/V biases as qwen2 stores them.
    doc["tie_word_embeddings"] = "output.weight" not in by_name
    doc["attention_bias"] = "blk.0.attn_q.bias" in by_name
    cfg = LlmConfig.from_dict(doc, name=p.stem, file=p)

    # The metadata must describe the tensors: parameters counted from the config equal the
    # file's within 1% (norms of other designs aside), else the costs would be of another model.
    stored_params = sum(t.params for t in tensors)
    if abs(parameter_count(cfg) - stored_params) > 0.01 * stored_params:
        raise InputError(f"architecture {arch!r} cannot be costed: its metadata give "
                         f"{parameter_count(cfg):,} parameters, the tensors hold "
                         f"{stored_params:,} (not a llama-like decoder)", file=p)
    ftype = _file_type_name(value("general.file_type"))
    return GgufFacts(architecture=arch, config=cfg,
                     precision=_stored_precision(tensors, cfg, ftype), file_type=ftype,
                     tensors=tensors)


def _read(p: Path) -> Any:
    """The GGUFReader of ``p``, any failure to parse it as an :class:`InputError`."""
    if not is_gguf(p):
        if not p.is_file():
            raise InputError("no such file", file=p)
        raise InputError("not a GGUF file (no GGUF magic at its start)", file=p)
    try:
        import gguf
    except ImportError:   # an optional dependency (the "build" extra of pyproject.toml)
        raise InputError("reading a GGUF file needs the gguf package (pip install gguf)",
                         file=p) from None

    try:
        reader = gguf.GGUFReader(p)
        size = p.stat().st_size
        # The reader maps tensor data lazily: a file cut short inside its tensor data parses.
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors ...
        raise InputError(f"not a readable GGUF file ({type(exc).__name__}: {exc})",
                         file=p) from None
    if end > size:
        raise InputError(f"truncated GGUF file: tensor data end at byte {end:,}, the file has "
                         f"{size:,}", file=p)
    return reader


def _stored_precision(tensors: tuple[GgufTensor, ...], cfg: LlmConfig,
                      file_type: str | None) -> Precision:
    """The file's weights as a :class:`Precision`: bits per weight measured on the stored layer
    matrices (their bytes over their weights, scales included), on the output matrix (the
    embedding table when tied) and on the norms and biases, so the emulator's decode bytes are
    the file's. Prefill runs at
    the rate the file type's GGUF rule set gives (int8 dot products on a CPU for quantized
    types), at fp16 or fp32 for a float file."""
    layer = [t for t in tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    layer_bpw = 8.0 * sum(t.n_bytes for t in layer) / max(1, sum(t.params for t in layer))
    vectors = [t for t in tensors if len(t.shape) == 1]
    vector_bpw = (8.0 * sum(t.n_bytes for t in vectors) / max(1, sum(t.params for t in vectors))
                  if vectors else None)
    out = next(t for t in tensors
               if t.name == ("token_embd.weight" if cfg.tied else "output.weight"))
    head_bpw = 8.0 * out.n_bytes / max(1, out.params)
    types = sorted({t.ggml_type for t in layer})
    if file_type is not None:
        compute = PRECISIONS[file_type].compute
    elif set(types) <= {"F32"}:
        compute = "fp32"
    elif set(types) <= {"F16", "BF16", "F32"}:
        compute = "fp16"
    else:
        compute = None
    return Precision(file_type or "gguf-" + "+".join(t.lower() for t in types), layer_bpw,
                     head_bpw, compute,
                     f"as stored in the GGUF file: layer matrices {layer_bpw:.3f} bpw "
                     f"({', '.join(types)}), output matrix {head_bpw:.3f} bpw "
                     f"({out.ggml_type})", vector_bpw=vector_bpw)
