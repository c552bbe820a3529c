"""Compression levels: the names users type and the specs the compressors receive.

Quantization levels are names in :data:`QUANTIZERS`, pruning methods in :data:`PRUNERS`: one
registration each, carrying what the level is (readable here, through :data:`QUANT_LEVELS` and
:data:`PRUNE_METHODS`) and its implementation as a lazy ``"module:attr"``. Pruning levels are a
method and a share: ``50`` = global magnitude pruning of
half the weights, ``channel-l1-25`` = a quarter of each conv's output channels removed,
``head-l2-50`` / ``neuron-l1-25`` = attention heads / FFN neurons removed, ``2:4`` = 2:4
semi-structured sparsity (see :mod:`harness.compress.prune`).
This module stays import-light: it is used while parsing suites and command lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, unknown_name
from harness.plugins import InfoView
from harness.registry import Registry


def _check_block_size(n: int) -> str | None:
    # MatMulNBits kernels take power-of-two blocks of at least 16 along K.
    if n < 16 or n > 2048 or n & (n - 1):
        return "a power of two from 16 to 2048"
    return None


def _check_percent(n: int) -> str | None:
    return None if 0 < n < 100 else "a whole percentage from 1 to 99"


@dataclass(frozen=True)
class QuantParam:
    """The number a parameterised level carries in its name: ``int4-b64`` -> 64."""

    what: str
    prefix: str  # text between the level's dash and the number ("b" in int4-b64)
    default: int
    check: Callable[[int], str | None]  # None if valid, else what is expected


@dataclass(frozen=True)
class QuantLevel:
    """What a quantization level is, readable without importing its quantizer."""

    precision: str  # of the weights on the device
    description: str
    param: QuantParam | None = None
    runtime: str = "onnxruntime"  # what executes the artifact (harness.runtimes)


# One registration per level: what it is (info) and the quantizer that builds it, named as a
# lazy "module:attr" so that parsing levels imports neither onnxruntime nor torch. ONNX Runtime
# levels name a quantizer of harness.compress.quantize, PyTorch levels a TorchQuantizer of
# harness.compress.torch_quant. Levels with a ``param`` take a number in their name
# (``int4-b64``, ``int8-mixed-10``); the bare name uses the parameter's default.
QUANTIZERS: Registry[Any] = Registry("quantization level")
_ORT, _TORCH = "harness.compress.quantize", "harness.compress.torch_quant"
QUANTIZERS.register("fp32", f"{_ORT}:quantize_fp32", info=QuantLevel(
    "fp32", "no quantization (ONNX Runtime)"))
QUANTIZERS.register("fp16", f"{_ORT}:quantize_fp16", info=QuantLevel(
    "fp16", "fp16 weights and arithmetic, fp32 inputs and outputs "
            "(onnxruntime.transformers.float16, keep_io_types)"))
QUANTIZERS.register("int8-dynamic", f"{_ORT}:quantize_int8_dynamic", info=QuantLevel(
    "int8", "int8 weights, activations quantized at run time "
            "(onnxruntime.quantization.quantize_dynamic)"))
QUANTIZERS.register("int8-static", f"{_ORT}:quantize_int8_static", info=QuantLevel(
    "int8", "int8 weights and activations, QDQ, per-channel, "
            "MinMax-calibrated (onnxruntime.quantization.quantize_static)"))
QUANTIZERS.register("int8-static-percentile", f"{_ORT}:quantize_int8_static_percentile",
                    info=QuantLevel(
    "int8", "as int8-static, activation ranges from the 99.999th percentile of calibration "
            "values (CalibrationMethod.Percentile) so outliers do not stretch the scale"))
QUANTIZERS.register("int4", f"{_ORT}:quantize_int4", info=QuantLevel(
    "int4", "4-bit weight-only, symmetric, blockwise along K (MatMulNBits); MatMul and "
            "Gemm (as MatMul + Add) only, other ops stay fp32",
    QuantParam(what="block size", prefix="b", default=32, check=_check_block_size)))
QUANTIZERS.register("int8-mixed", f"{_ORT}:quantize_int8_mixed", info=QuantLevel(
    "int8", "as int8-static, but the given % of quantizable nodes whose quantization alone "
            "hurts the outputs most stay in float (nodes_to_exclude)",
    QuantParam(what="% of quantizable nodes kept in float", prefix="", default=10,
               check=_check_percent)))
QUANTIZERS.register("torch-fp32", f"{_TORCH}:TORCH_FP32", info=QuantLevel(
    "fp32", "no quantization, run by PyTorch eager", runtime="torch"))
QUANTIZERS.register("torch-int8-dynamic", f"{_TORCH}:TORCH_INT8_DYNAMIC", info=QuantLevel(
    "int8", "int8 weights of Linear layers, activations quantized at run time, run by "
            "PyTorch eager (torch.ao.quantization.quantize_dynamic); convs stay fp32",
    runtime="torch"))
# Language models (workloads with a Hugging Face decoder checkpoint): ONNX Runtime GenAI's model
# builder turns the fp32 checkpoint into a decoder with a KV cache (GroupQueryAttention) at the
# level's precision; the targets are BuilderRecipes of harness.llm.build.
_GENAI = "harness.llm.build"
QUANTIZERS.register("genai-fp32", f"{_GENAI}:FP32", info=QuantLevel(
    "fp32", "language model: fp32 decoder built by ONNX Runtime GenAI's model builder",
    runtime="onnxruntime-genai"))
QUANTIZERS.register("genai-fp16", f"{_GENAI}:FP16", info=QuantLevel(
    "fp16", "language model: fp16 decoder (model builder, its intermediate shape annotations "
            "dropped); the CPU casts around kernels it lacks in fp16", runtime="onnxruntime-genai"))
QUANTIZERS.register("genai-int8", f"{_GENAI}:INT8", info=QuantLevel(
    "int8", "language model: 8-bit weight-only MatMulNBits, block 32, accuracy level 4 "
            "(int8 activations at run time); embedding kept in float (model builder)",
    runtime="onnxruntime-genai"))
QUANTIZERS.register("genai-int4", f"{_GENAI}:INT4", info=QuantLevel(
    "int4", "language model: 4-bit weight-only MatMulNBits, symmetric, fp32 scales per block, "
            "accuracy level 4 (int8 activations); embedding shares the 4-bit output matrix "
            "(model builder)",
    QuantParam(what="block size", prefix="b", default=32, check=_check_block_size),
    runtime="onnxruntime-genai"))
QUANTIZERS.register("genai-int4a32", f"{_GENAI}:INT4_A32", info=QuantLevel(
    "int4", "as genai-int4, at accuracy level 1 (fp32 activations, weights dequantized)",
    QuantParam(what="block size", prefix="b", default=32, check=_check_block_size),
    runtime="onnxruntime-genai"))
# A model file given as .tflite (a suite's `tflite = ...` workload) is measured as it is: its
# weights are whatever its converter stored, so the level names no precision it would claim.
QUANTIZERS.register("as-is", "harness.build:build_as_is", info=QuantLevel(
    "as-is", "the .tflite file as given, not re-quantized (run by LiteRT on the host, by "
             "benchmark_model on a phone)", runtime="litert"))
# name -> QuantLevel, for the modules that only read what levels are.
QUANT_LEVELS: Mapping[str, QuantLevel] = InfoView(QUANTIZERS)


@dataclass(frozen=True)
class PruneMethod:
    """How a pruning method is named, what it does and what it leaves in the artifact."""

    description: str
    pattern: str  # value of the artifact's `harness.sparsity_pattern` metadata
    structured: bool  # removes whole channels / heads / neurons (needs the PyTorch model)
    fixed_amount: float | None = None  # the only share the method can remove (2:4: half)
    finetune: bool = False  # the workload fine-tunes the pruned model (Workload.finetune)


# One registration per method: what it is (info) and its pruners, a MethodPruners of
# harness.compress.prune named lazily (the torch pruner, and the ONNX pruner when the method
# can run on an ONNX file's initializers). Registration order is the order reports sort by.
PRUNERS: Registry[Any] = Registry("pruning method")
_PRUNE = "harness.compress.prune"
PRUNERS.register("magnitude", f"{_PRUNE}:MAGNITUDE", info=PruneMethod(
    "global unstructured magnitude pruning of conv / linear weights "
    "(torch.nn.utils.prune, made permanent); written as the percentage: 0, 30, 50, ...",
    pattern="unstructured", structured=False))
PRUNERS.register("2:4", f"{_PRUNE}:TWO_FOUR", info=PruneMethod(
    "2:4 semi-structured sparsity: in every group of 4 consecutive weights along the "
    "input dimension the 2 smallest magnitudes are zeroed", pattern="2:4",
    structured=False, fixed_amount=0.5))
for _norm in ("l1", "l2"):
    PRUNERS.register(f"channel-{_norm}", f"{_PRUNE}:CHANNEL_{_norm.upper()}", info=PruneMethod(
        f"conv output channels with the smallest {_norm.upper()} filter norm, physically "
        "removed with torch-pruning (DepGraph fixes the next conv, BatchNorm, Linear)",
        pattern="channel", structured=True))
for _norm in ("l1", "l2"):
    PRUNERS.register(f"head-{_norm}", f"{_PRUNE}:HEAD_{_norm.upper()}", info=PruneMethod(
        f"attention heads of BERT-style encoders with the smallest {_norm.upper()} norm of "
        "their query/key/value rows and output columns, physically removed, same share per "
        "layer", pattern="head", structured=True))
for _norm in ("l1", "l2"):
    PRUNERS.register(f"neuron-{_norm}", f"{_PRUNE}:NEURON_{_norm.upper()}", info=PruneMethod(
        f"feed-forward intermediate neurons of BERT-style encoders with the smallest "
        f"{_norm.upper()} norm (input row + output column), physically removed, same share "
        "per layer", pattern="neuron", structured=True))
# "+ft": the same structured pruning (the same pruners), then a short deterministic fine-tune
# by the workload on its training split (see Workload.finetune). Only structured methods:
# their removed weights are gone from the graph, so training cannot bring them back (it would
# refill zeros).
FINETUNE_SUFFIX = "+ft"
for _name, _info in PRUNERS.items():
    if _info.structured:
        PRUNERS.register(_name + FINETUNE_SUFFIX, PRUNERS.entry(_name).target, info=PruneMethod(
            _info.description + "; then fine-tuned by the workload", pattern=_info.pattern,
            structured=True, finetune=True))
# name -> PruneMethod, for the modules that only read what methods are.
PRUNE_METHODS: Mapping[str, PruneMethod] = InfoView(PRUNERS)
# Shares written in the level names that suites and error hints offer.
_SUGGESTED_PCTS: dict[str, tuple[int, ...]] = {"magnitude": (0, 30, 50, 70, 90)}
_STRUCTURED_PCTS = (25, 50)


@dataclass(frozen=True)
class QuantSpec:
    """A quantization level as written (``int8-static``, ``int4-b64``, ``int8-mixed-10``)."""

    name: str

    def __post_init__(self) -> None:
        _split_level(self.name)  # validates

    @property
    def level(self) -> str:
        """The registry key: ``int4`` for ``int4-b64``."""
        return _split_level(self.name)[0]

    @property
    def param(self) -> int | None:
        """The level's number (its default when the name has none); None if it takes none."""
        return _split_level(self.name)[1]

    @property
    def precision(self) -> str:
        return QUANT_LEVELS[self.level].precision

    @property
    def runtime(self) -> str:
        return QUANT_LEVELS[self.level].runtime


def _split_level(name: str) -> tuple[str, int | None]:
    """(registry key, parameter) of a level name; InputError if it names no level."""
    if name in QUANT_LEVELS:
        param = QUANT_LEVELS[name].param
        return name, param.default if param else None
    base, _, suffix = name.rpartition("-")
    level = QUANT_LEVELS.get(base)
    if level is None or level.param is None:
        raise unknown_name("quantization level", name, _level_names())
    p = level.param
    digits = suffix.removeprefix(p.prefix) if suffix.startswith(p.prefix) else ""
    if not digits.isdigit():
        raise InputError(f"quantization level {name!r}: expected {base}-{p.prefix}N with N the "
                         f"{p.what}, e.g. {base}-{p.prefix}{p.default}")
    value = int(digits)
    problem = p.check(value)
    if problem:
        raise InputError(f"quantization level {name!r}: the {p.what} must be {problem}, "
                         f"got {value}")
    return base, value


def _level_names() -> list[str]:
    """Level names for help and 'did you mean': parameterised ones with an example suffix."""
    return [n if lv.param is None else f"{n}, {n}-{lv.param.prefix}N"
            for n, lv in QUANT_LEVELS.items()]


@dataclass(frozen=True)
class PruneSpec:
    """A pruning level: a method of :data:`PRUNE_METHODS` and the share it removes.

    ``amount`` is the share of weights (magnitude, 2:4) or of channels / heads / neurons per
    layer (structured methods) that is removed.
    """

    method: str
    amount: float  # in [0, 1)

    def __post_init__(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise unknown_name("pruning method", self.method, PRUNE_METHODS)
        if not 0.0 <= self.amount < 1.0:
            raise ValueError(f"pruning amount must be in [0, 1), got {self.amount}")
        info = PRUNE_METHODS[self.method]
        if info.fixed_amount is not None and self.amount != info.fixed_amount:
            raise ValueError(f"pruning method {self.method!r} always removes "
                             f"{info.fixed_amount:g} of the weights, got {self.amount}")
        if self.method != "magnitude" and self.amount == 0.0:
            raise ValueError(f"pruning method {self.method!r} needs a share above 0; "
                             "level 0 is the dense model")

    @property
    def name(self) -> str:
        """The level as users write it: '0', '50', 'channel-l1-25', 'channel-l2-50+ft', '2:4'."""
        if PRUNE_METHODS[self.method].fixed_amount is not None:
            return self.method
        pct = f"{self.amount * 100:.6g}"
        if self.method == "magnitude":
            return pct
        base = self.method.removesuffix(FINETUNE_SUFFIX)
        return f"{base}-{pct}{FINETUNE_SUFFIX if self.finetune else ''}"

    @property
    def is_dense(self) -> bool:
        return self.amount == 0.0

    @property
    def structured(self) -> bool:
        return PRUNE_METHODS[self.method].structured

    @property
    def finetune(self) -> bool:
        """Whether the workload fine-tunes the model after pruning."""
        return PRUNE_METHODS[self.method].finetune

    @property
    def base_method(self) -> str:
        """The pruning method without the fine-tune: what the pruner registries are keyed by."""
        return self.method.removesuffix(FINETUNE_SUFFIX)

    @property
    def sparsity_pattern(self) -> str | None:
        """What the artifact records in ``harness.sparsity_pattern``; None when dense."""
        return None if self.is_dense else PRUNE_METHODS[self.method].pattern


def prune_level_names() -> list[str]:
    """The level names suites and hints offer (any share in (0, 100) parses too)."""
    names: list[str] = []
    for method, info in PRUNE_METHODS.items():
        if info.fixed_amount is not None:
            names.append(method)
        elif method == "magnitude":
            names += [str(p) for p in _SUGGESTED_PCTS["magnitude"]]
        else:
            base = method.removesuffix(FINETUNE_SUFFIX)
            suffix = FINETUNE_SUFFIX if info.finetune else ""
            names += [f"{base}-{p}{suffix}" for p in _STRUCTURED_PCTS]
    return names


def parse_quant(value: Any) -> QuantSpec:
    """A quantization level from a suite entry or a --quant argument."""
    if not isinstance(value, str):
        raise InputError(f"expected a quantization level name, got {value!r}")
    return QuantSpec(value)


_LEVEL = re.compile(r"(?P<method>[a-z][a-z0-9-]*?)-(?P<pct>\d+(?:\.\d+)?)%?")


def parse_prune(value: Any) -> PruneSpec:
    """A pruning level from a suite entry or a --prune argument.

    ``50`` / ``"50"`` / ``"50%"``: global magnitude pruning of half the weights;
    ``"channel-l1-25"``, ``"head-l2-50"``, ``"neuron-l1-25"``: structured pruning of that share
    of channels / heads / neurons per layer, ``"channel-l1-25+ft"`` the same then fine-tuned;
    ``"2:4"``: 2:4 semi-structured sparsity.
    Anything else is an :class:`InputError` naming the close matches.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"expected a pruning level such as 0, 50, 'channel-l1-25' or '2:4', "
                         f"got {value!r}")
    text = str(value).strip().lower()
    if text in PRUNE_METHODS and PRUNE_METHODS[text].fixed_amount is not None:
        return PruneSpec(method=text, amount=PRUNE_METHODS[text].fixed_amount or 0.0)
    method, pct_text = "magnitude", text.removesuffix("%")
    core, ft = (text[:-len(FINETUNE_SUFFIX)], FINETUNE_SUFFIX) if text.endswith(
        FINETUNE_SUFFIX) else (text, "")
    match = _LEVEL.fullmatch(core)
    if match and match["method"] + ft in PRUNE_METHODS:
        method, pct_text = match["method"] + ft, match["pct"]
    try:
        pct = float(pct_text)
    except ValueError:
        raise _unknown_level(value) from None
    if method == "magnitude" and not 0 <= pct < 100:
        raise InputError(f"expected a pruning percentage in [0, 100), got {value!r}")
    if method != "magnitude" and not 0 < pct < 100:
        raise InputError(f"expected a share in (0, 100) after {method!r}, got {value!r} "
                         "(use 0 for the dense model)")
    return PruneSpec(method=method, amount=pct / 100.0)


def _unknown_level(value: Any) -> InputError:
    err = unknown_name("pruning level", str(value), prune_level_names())
    return InputError(f"{err} Other shares work too, e.g. 60 or channel-l1-40.")
