"""Facts measured from an artifact on disk: parameter count, weight sparsity and its pattern.

Sparsity is counted on the stored weights, so a pruning level is checked rather than assumed.
For quantized weights a weight is zero when it equals its zero point (that is what dequantizes
to 0.0). The 2:4 pattern is verified on the stored weights too; the declared pattern is the
``harness.sparsity_pattern`` metadata the build writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

# ONNX metadata_props keys the build writes into pruned artifacts (harness.compress.prune).
PATTERN_KEY = "harness.sparsity_pattern"  # "unstructured", "2:4", "channel", "head", "neuron"
LEVEL_KEY = "harness.prune_level"  # the level's name, e.g. "channel-l1-25"


@dataclass(frozen=True)
class ArtifactStats:
    params: int  # weight elements in conv / matmul / gemm weights (biases excluded)
    zero_params: int
    sparsity_pattern: str | None = None  # declared in the artifact's metadata; None = dense
    # Weight elements whose input dimension is a multiple of 4 (could hold 2:4), and those of
    # them in tensors where every group of 4 along the input dimension has at most 2 nonzeros.
    params_2_4_eligible: int = 0
    params_2_4: int = 0

    @property
    def sparsity(self) -> float:
        return self.zero_params / self.params if self.params else 0.0

    @property
    def is_2_4(self) -> bool:
        """Measured: every weight that could follow 2:4 does (and at least one could)."""
        return self.params_2_4_eligible > 0 and self.params_2_4 == self.params_2_4_eligible


def input_axis(node: onnx.NodeProto, ndim: int) -> int | None:
    """The input (reduction) axis of ``node``'s weight input, along which 2:4 groups run.

    Conv / ConvInteger [Cout, Cin/g, ...] -> 1 (None for grouped convs: nothing to reduce over
    4 channels), ConvTranspose [Cin, Cout/g, ...] -> 0, MatMul / MatMulInteger [.., K, N] ->
    ndim - 2, Gemm B -> 1 if transB else 0.
    """
    attrs = {a.name: a.i for a in node.attribute if a.type == a.INT}
    if node.op_type in ("Conv", "ConvInteger"):
        return 1 if attrs.get("group", 1) == 1 else None
    if node.op_type == "ConvTranspose":
        return 0 if attrs.get("group", 1) == 1 else None
    if node.op_type in ("MatMul", "MatMulInteger"):
        return ndim - 2
    if node.op_type == "Gemm":
        return 1 if attrs.get("transB", 0) else 0
    return None


def _follows_2_4(nonzero: np.ndarray, axis: int) -> bool:
    groups = np.moveaxis(nonzero, axis, -1).reshape(-1, 4)
    return bool((groups.sum(axis=1) <= 2).all())


# op type -> (index of the weight input, index of its zero-point input or None)
_WEIGHT_INPUTS: dict[str, tuple[int, int | None]] = {
    "Conv": (1, None), "Gemm": (1, None), "MatMul": (1, None), "ConvTranspose": (1, None),
    "ConvInteger": (1, 3), "MatMulInteger": (1, 3),
}


def inspect_artifact(path: Path) -> ArtifactStats:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    # Some exporters (PaddlePaddle's) store weights in Constant nodes: the same tensors.
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                inits.setdefault(node.output[0], value)
    # In QDQ graphs the weight reaches the conv through DequantizeLinear(w, scale, zp, axis).
    dq_source: dict[str, tuple[str, str | None, int]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            dq_source[node.output[0]] = (node.input[0], zp, axis)

    params = zeros = eligible = follows = 0
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in _WEIGHT_INPUTS:
            continue
        w_idx, zp_idx = _WEIGHT_INPUTS[node.op_type]
        if len(node.input) <= w_idx:
            continue
        name = node.input[w_idx]
        zp_name = node.input[zp_idx] if zp_idx is not None and len(node.input) > zp_idx else None
        axis = 0
        if name in dq_source:
            name, zp_name, axis = dq_source[name]
        if name not in inits or name in seen:
            continue
        seen.add(name)
        w = numpy_helper.to_array(inits[name])
        if w.ndim < 2:
            continue
        zero = np.zeros((), dtype=w.dtype)
        if zp_name and zp_name in inits:
            zp = numpy_helper.to_array(inits[zp_name])
            if zp.ndim == 1 and zp.size > 1:  # per-channel along `axis`
                shape = [1] * w.ndim
                shape[axis if axis >= 0 else w.ndim + axis] = zp.size
                zero = zp.reshape(shape)
            else:
                zero = zp.reshape(())
        params += int(w.size)
        is_zero = w == zero
        zeros += int(np.count_nonzero(is_zero))
        in_axis = input_axis(node, w.ndim)
        if in_axis is not None and w.shape[in_axis] % 4 == 0:
            eligible += int(w.size)
            follows += int(w.size) if _follows_2_4(~is_zero, in_axis) else 0
    pattern = next((p.value for p in model.metadata_props if p.key == PATTERN_KEY), None)
    return ArtifactStats(params=params, zero_params=zeros, sparsity_pattern=pattern,
                         params_2_4_eligible=eligible, params_2_4=follows)
