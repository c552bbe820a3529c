"""Pruning through ``torch.nn.utils.prune``, made permanent before export.

Pruners are picked from a registry keyed by the method name of a :class:`PruneSpec`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.variants import PruneSpec

if TYPE_CHECKING:
    import onnx
    import torch


def _prunable(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    from torch import nn

    return [(m, "weight") for m in model.modules()
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]


def _magnitude(model: torch.nn.Module, amount: float) -> None:
    """Global unstructured L1 pruning over every conv and linear weight, then made permanent.

    Global (rather than per layer) lets small, sensitive layers keep more of their weights.
    """
    from torch.nn.utils import prune

    params = _prunable(model)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # bake the mask into the weight: no reparametrisation left


PRUNERS: dict[str, Callable[[torch.nn.Module, float], None]] = {
    "magnitude": _magnitude,
}


def prune_model(model: torch.nn.Module, spec: PruneSpec) -> torch.nn.Module:
    """A pruned copy of ``model`` (the input is left untouched)."""
    if spec.is_dense:
        return model
    pruned = copy.deepcopy(model)
    PRUNERS[spec.method](pruned, spec.amount)
    return pruned


# ONNX-only workloads (models shipped as ONNX, with no PyTorch source) are pruned on their
# initializers. Only patterns that keep the graph's shapes apply there; removing channels needs
# the source model.
_ONNX_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def onnx_prunable_weights(model: onnx.ModelProto) -> list[str]:
    """Names of float initializers used as conv / matmul / gemm weights (rank >= 2)."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        idx = _ONNX_WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        name = node.input[idx]
        init = inits.get(name)
        if (init is not None and name not in names and len(init.dims) >= 2
                and init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)):
            names.append(name)
    return names


def _magnitude_onnx(model: onnx.ModelProto, amount: float) -> None:
    """Global unstructured magnitude pruning of the weight initializers, in place.

    The same rule as ``torch.nn.utils.prune.global_unstructured`` with L1Unstructured: the
    ``amount`` share of all weights with the smallest magnitude, pooled across layers, is set
    to zero (ties broken by position, as torch's topk does not promise either).
    """
    import numpy as np
    from onnx import numpy_helper

    names = set(onnx_prunable_weights(model))
    inits = [i for i in model.graph.initializer if i.name in names]
    arrays = [numpy_helper.to_array(i) for i in inits]
    if not arrays:
        return
    flat = np.concatenate([np.abs(a.astype(np.float32)).ravel() for a in arrays])
    k = round(amount * flat.size)
    if k == 0:
        return
    order = np.argsort(flat, kind="stable")[:k]
    mask = np.ones(flat.size, dtype=bool)
    mask[order] = False
    start = 0
    for init, arr in zip(inits, arrays, strict=True):
        part = mask[start:start + arr.size].reshape(arr.shape)
        start += arr.size
        init.CopyFrom(numpy_helper.from_array(np.where(part, arr, 0).astype(arr.dtype),
                                              init.name))


ONNX_PRUNERS: dict[str, Callable[[onnx.ModelProto, float], None]] = {
    "magnitude": _magnitude_onnx,
}


def prune_onnx(model: onnx.ModelProto, spec: PruneSpec) -> onnx.ModelProto:
    """A pruned copy of an ONNX model, for workloads that have no PyTorch source.

    Raises :class:`harness.errors.Unsupported` for methods that need the source model.
    """
    from harness.errors import Unsupported

    if spec.is_dense:
        return model
    if spec.method not in ONNX_PRUNERS:
        raise Unsupported(f"pruning method {spec.method!r} needs the PyTorch source model; "
                          "this workload ships as ONNX")
    import onnx

    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    ONNX_PRUNERS[spec.method](pruned, spec.amount)
    return pruned
