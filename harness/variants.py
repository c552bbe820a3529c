"""Compression levels: the names users type and the specs the compressors receive.

Quantization levels are keys of a registry (see :mod:`harness.compress.quantize`). Pruning
levels are a method of :data:`PRUNE_METHODS` and a share: ``50`` = global magnitude pruning of
half the weights, ``channel-l1-25`` = a quarter of each conv's output channels removed,
``head-l2-50`` / ``neuron-l1-25`` = attention heads / FFN neurons removed, ``2:4`` = 2:4
semi-structured sparsity (see :mod:`harness.compress.prune`).
This module stays import-light: it is used while parsing suites and command lines.
"""

from __future__ import annotations

import re
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

@dataclass(frozen=True)
class PruneMethod:
    """How a pruning method is named, what it does and what it leaves in the artifact."""

    description: str
    pattern: str  # value of the artifact's `harness.sparsity_pattern` metadata
    structured: bool  # removes whole channels / heads / neurons (needs the PyTorch model)
    fixed_amount: float | None = None  # the only share the method can remove (2:4: half)
    finetune: bool = False  # the workload fine-tunes the pruned model (Workload.finetune)


PRUNE_METHODS: dict[str, PruneMethod] = {
    "magnitude": PruneMethod(
        "global unstructured magnitude pruning of conv / linear weights "
        "(torch.nn.utils.prune, made permanent); written as the percentage: 0, 30, 50, ...",
        pattern="unstructured", structured=False),
    "2:4": PruneMethod(
        "2:4 semi-structured sparsity: in every group of 4 consecutive weights along the "
        "input dimension the 2 smallest magnitudes are zeroed", pattern="2:4",
        structured=False, fixed_amount=0.5),
    **{f"channel-{norm}": PruneMethod(
        f"conv output channels with the smallest {norm.upper()} filter norm, physically "
        "removed with torch-pruning (DepGraph fixes the next conv, BatchNorm, Linear)",
        pattern="channel", structured=True) for norm in ("l1", "l2")},
    **{f"head-{norm}": PruneMethod(
        f"attention heads of BERT-style encoders with the smallest {norm.upper()} norm of "
        "their query/key/value rows and output columns, physically removed, same share per "
        "layer", pattern="head", structured=True) for norm in ("l1", "l2")},
    **{f"neuron-{norm}": PruneMethod(
        f"feed-forward intermediate neurons of BERT-style encoders with the smallest "
        f"{norm.upper()} norm (input row + output column), physically removed, same share "
        "per layer", pattern="neuron", structured=True) for norm in ("l1", "l2")},
}
# "+ft": the same structured pruning, then a short deterministic fine-tune by the workload on
# its training split (see Workload.finetune). Only structured methods: their removed weights
# are gone from the graph, so training cannot bring them back (it would refill zeros).
FINETUNE_SUFFIX = "+ft"
PRUNE_METHODS.update({
    name + FINETUNE_SUFFIX: PruneMethod(
        info.description + "; then fine-tuned by the workload", pattern=info.pattern,
        structured=True, finetune=True)
    for name, info in list(PRUNE_METHODS.items()) if info.structured})
# Shares written in the level names that suites and error hints offer.
_SUGGESTED_PCTS: dict[str, tuple[int, ...]] = {"magnitude": (0, 30, 50, 70, 90)}
_STRUCTURED_PCTS = (25, 50)


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
