"""Facts measured from an artifact on disk: parameter count, weight sparsity and its pattern.

Sparsity is counted on the stored weights, so a pruning level is checked rather than assumed.
For quantized weights a weight is zero when it equals its zero point (that is what dequantizes
to 0.0). The 2:4 pattern is verified on the stored weights too; the declared pattern is the
``harness.sparsity_pattern`` metadata the build writes. fp16 weights count like fp32 ones;
MatMulNBits (int4/int8 weight-only) weights are unpacked from their blocks, so a K x N weight
counts K * N parameters whatever its packing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# The stats and the metadata keys are defined with the artifact formats (which inspect through
# this module); they are imported here for the modules that know them from here.
from harness.artifacts.formats import LEVEL_KEY, PATTERN_KEY, ArtifactStats, format_of
from harness.compress.onnx_utils import constants_to_initializers

if TYPE_CHECKING:
    import onnx

__all__ = ["LEVEL_KEY", "PATTERN_KEY", "ArtifactStats", "input_axis", "inspect_artifact",
           "inspect_onnx", "inspect_torch"]


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
    """Parameters and zeros of the conv / matmul / gemm / linear weights stored in ``path``
    (any registered artifact format: an ONNX model, a PyTorch ``model.pt``...)."""
    return format_of(path).inspect(path)


def inspect_genai(path: Path) -> ArtifactStats:
    """:func:`inspect_onnx` of the decoder graph of a GenAI model directory (``genai`` format;
    ``path`` is its ``genai_config.json``)."""
    from harness.artifacts.formats import GENAI

    return inspect_onnx(GENAI.emulator_graph(path))


def inspect_onnx(path: Path) -> ArtifactStats:
    """:func:`inspect_artifact` of an ONNX model (the ``onnx`` format's inspector)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    # Some exporters (PaddlePaddle's) store weights in Constant nodes: the same tensors.
    constants_to_initializers(model)
    inits = {i.name: i for i in model.graph.initializer}
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
        if node.op_type == "MatMulNBits" and node.input[1] in inits:
            if node.input[1] in seen:
                continue
            seen.add(node.input[1])
            n, z = _matmul_nbits_stats(node, inits)
            params += n
            zeros += z
            continue
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


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-wide values from bytes, lowest bits first (MatMulNBits' layout)."""
    b = packed.astype(np.uint8)
    if bits == 8:
        return b
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    vals = (b[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return vals.reshape(*b.shape[:-1], b.shape[-1] * per_byte)


def _matmul_nbits_stats(node: Any, inits: dict[str, Any]) -> tuple[int, int]:
    """(parameters, zeros) of a com.microsoft MatMulNBits weight.

    B is uint8 [N, k_blocks, block_size * bits / 8]; K and N are attributes. A weight is zero
    where its quantized value equals its block's zero point: the packed ``zero_points`` input
    when present (uint8; float zero points cannot be compared and count no zeros), else the
    symmetric default 2^(bits-1).
    """
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, bits = attrs["K"], attrs["N"], attrs.get("bits", 4)
    q = _unpack(numpy_helper.to_array(inits[node.input[1]]), bits)  # [N, k_blocks, block]
    k_blocks = q.shape[1]
    zp_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
    if zp_name is None:
        zero = np.full((n, k_blocks, 1), 1 << (bits - 1), dtype=np.uint8)
    else:
        zp = numpy_helper.to_array(inits[zp_name]) if zp_name in inits else None
        if zp is None or zp.dtype != np.uint8:
            return k * n, 0
        zero = _unpack(zp.reshape(n, -1), bits)[:, :k_blocks, None]
    is_zero = (q == zero).reshape(n, -1)[:, :k]  # drop the padding of the last block
    return k * n, int(np.count_nonzero(is_zero))


def inspect_torch(path: Path) -> ArtifactStats:
    """The same count on a PyTorch artifact (the ``torch`` format's inspector): conv and
    linear weights, float or quantized (a quantized weight is zero where its integer value
    equals its zero point)."""
    import torch
    from torch import nn

    from harness.runtimes.torch import load_module

    module, _ = load_module(path)
    params = zeros = 0
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.Linear):
            w = m.weight.detach()
        elif callable(getattr(m, "weight", None)) and "quantized" in type(m).__module__:
            w = m.weight()  # type: ignore[operator]  # torch.ao quantized: unpacked on request
        else:
            continue
        if w.is_quantized:
            q = w.int_repr()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                shape = [1] * q.dim()
                shape[w.q_per_channel_axis()] = -1
                zero = w.q_per_channel_zero_points().reshape(shape)
                zeros += int((q == zero).sum())
            else:
                zeros += int((q == w.q_zero_point()).sum())
        else:
            zeros += int((w == 0).sum())
        params += w.numel()
    return ArtifactStats(params=params, zero_params=zeros)
