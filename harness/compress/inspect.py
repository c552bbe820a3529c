"""Facts measured from an artifact on disk: parameter count and weight sparsity.

Sparsity is counted on the stored weights, so a pruning level is checked rather than assumed.
For quantized weights a weight is zero when it equals its zero point (that is what dequantizes
to 0.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ArtifactStats:
    params: int  # weight elements in conv / matmul / gemm weights (biases excluded)
    zero_params: int

    @property
    def sparsity(self) -> float:
        return self.zero_params / self.params if self.params else 0.0


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
    # In QDQ graphs the weight reaches the conv through DequantizeLinear(w, scale, zp, axis).
    dq_source: dict[str, tuple[str, str | None, int]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            dq_source[node.output[0]] = (node.input[0], zp, axis)

    params = zeros = 0
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
        zeros += int(np.count_nonzero(w == zero))
    return ArtifactStats(params=params, zero_params=zeros)
