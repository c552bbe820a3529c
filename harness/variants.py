"""Compression levels: the names users type and the specs the compressors receive.

Quantization levels are keys of a registry (see :mod:`harness.compress.quantize`); pruning
levels are written as a percentage (``50`` = global magnitude pruning of half the weights).
This module stays import-light: it is used while parsing suites and command lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, unknown_name

# name -> (precision of the weights on the device, one-line description)
QUANT_LEVELS: dict[str, tuple[str, str]] = {
    "fp32": ("fp32", "no quantization"),
    "int8-dynamic": ("int8", "int8 weights, activations quantized at run time "
                             "(onnxruntime.quantization.quantize_dynamic)"),
    "int8-static": ("int8", "int8 weights and activations, QDQ, per-channel, MinMax-calibrated "
                            "on training images (onnxruntime.quantization.quantize_static)"),
}

PRUNE_METHODS: dict[str, str] = {
    "magnitude": "global unstructured magnitude pruning (torch.nn.utils.prune, made permanent)",
}


@dataclass(frozen=True)
class QuantSpec:
    name: str

    def __post_init__(self) -> None:
        if self.name not in QUANT_LEVELS:
            raise unknown_name("quantization level", self.name, QUANT_LEVELS)

    @property
    def precision(self) -> str:
        return QUANT_LEVELS[self.name][0]


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
