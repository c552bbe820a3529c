"""Compression levels: the names users type and the specs the compressors receive.

Quantization levels are keys of a registry (see :mod:`harness.compress.quantize`); pruning
levels are written as a percentage (``50`` = global magnitude pruning of half the weights).
This module stays import-light: it is used while parsing suites and command lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, unknown_name


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
    precision: str  # of the weights on the device
    description: str
    param: QuantParam | None = None
    runtime: str = "onnxruntime"  # what executes the artifact (harness.runtimes)


# name -> what the level is. Levels with a ``param`` take a number in their name
# (``int4-b64``, ``int8-mixed-10``); the bare name uses the parameter's default.
QUANT_LEVELS: dict[str, QuantLevel] = {
    "fp32": QuantLevel("fp32", "no quantization (ONNX Runtime)"),
    "fp16": QuantLevel("fp16", "fp16 weights and arithmetic, fp32 inputs and outputs "
                               "(onnxruntime.transformers.float16, keep_io_types)"),
    "int8-dynamic": QuantLevel("int8", "int8 weights, activations quantized at run time "
                                       "(onnxruntime.quantization.quantize_dynamic)"),
    "int8-static": QuantLevel("int8", "int8 weights and activations, QDQ, per-channel, "
                                      "MinMax-calibrated (onnxruntime.quantization."
                                      "quantize_static)"),
    "int8-static-percentile": QuantLevel(
        "int8", "as int8-static, activation ranges from the 99.999th percentile of calibration "
                "values (CalibrationMethod.Percentile) so outliers do not stretch the scale"),
    "int4": QuantLevel(
        "int4", "4-bit weight-only, symmetric, blockwise along K (MatMulNBits); MatMul and "
                "Gemm (as MatMul + Add) only, other ops stay fp32",
        QuantParam(what="block size", prefix="b", default=32, check=_check_block_size)),
    "int8-mixed": QuantLevel(
        "int8", "as int8-static, but the given % of quantizable nodes whose quantization alone "
                "hurts the outputs most stay in float (nodes_to_exclude)",
        QuantParam(what="% of quantizable nodes kept in float", prefix="", default=10,
                   check=_check_percent)),
    "torch-fp32": QuantLevel("fp32", "no quantization, run by PyTorch eager", runtime="torch"),
    "torch-int8-dynamic": QuantLevel(
        "int8", "int8 weights of Linear layers, activations quantized at run time, run by "
                "PyTorch eager (torch.ao.quantization.quantize_dynamic); convs stay fp32",
        runtime="torch"),
}

PRUNE_METHODS: dict[str, str] = {
    "magnitude": "global unstructured magnitude pruning (torch.nn.utils.prune, made permanent)",
}


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
    method: str
    amount: float  # share of weights removed, in [0, 1)

    def __post_init__(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise unknown_name("pruning method", self.method, PRUNE_METHODS)
        if not 0.0 <= self.amount < 1.0:
            raise ValueError(f"pruning amount must be in [0, 1), got {self.amount}")

    @property
    def name(self) -> str:
        """'0', '50': the percentage, as users write it."""
        return f"{round(self.amount * 100):d}"

    @property
    def is_dense(self) -> bool:
        return self.amount == 0.0


def parse_quant(value: Any) -> QuantSpec:
    """A quantization level from a suite entry or a --quant argument."""
    if not isinstance(value, str):
        raise InputError(f"expected a quantization level name, got {value!r}")
    return QuantSpec(value)


def parse_prune(value: Any) -> PruneSpec:
    """A pruning level: a percentage such as ``50`` or ``"50"`` (``50%`` is accepted too)."""
    text = str(value).strip().removesuffix("%") if not isinstance(value, bool) else ""
    try:
        pct = float(text)
    except ValueError:
        raise InputError(
            f"expected a pruning percentage such as 0 or 50, got {value!r}") from None
    if not 0 <= pct < 100:
        raise InputError(f"expected a pruning percentage in [0, 100), got {value!r}")
    return PruneSpec(method="magnitude", amount=pct / 100.0)
