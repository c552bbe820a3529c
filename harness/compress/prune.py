"""Pruning: a :class:`PruneSpec` applied to a PyTorch model or, for ONNX-only workloads, to an
ONNX model's weight initializers.

Each method of :data:`harness.variants.PRUNERS` is registered with its :class:`MethodPruners`
(the torch pruner, and the ONNX pruner for the methods that work on ONNX files); "+ft" methods
share their base method's pruners (fine-tuning is the workload's job). Every pruner works on
a copy and leaves no reparametrisation behind, so the exported graph holds exactly what was
pruned:

* ``magnitude``: global unstructured L1 magnitude (zeros; same shapes);
* ``2:4``: in every group of 4 consecutive weights along the input dimension, the 2 smallest
  magnitudes are zeroed (zeros in a pattern sparse tensor cores and NPUs can exploit);
* ``channel-l1`` / ``channel-l2``: conv output channels physically removed with torch-pruning's
  DepGraph, which also shrinks what depends on them (next conv, BatchNorm, Linear after Flatten);
* ``head-*`` / ``neuron-*``: attention heads / FFN intermediate neurons of BERT-style encoders
  physically removed (transformers 5 dropped ``prune_heads``, so the slicing is done here).

The pattern a level leaves is written into the artifact by :func:`record_sparsity_pattern`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compress.inspect import LEVEL_KEY, PATTERN_KEY, input_axis
from harness.compress.onnx_utils import constants_to_initializers
from harness.errors import Unsupported
from harness.plugins import load_plugin
from harness.variants import PRUNERS, PruneSpec

if TYPE_CHECKING:
    import onnx
    import torch

Feeds = dict[str, np.ndarray]
# (model, amount, example inputs or None) -> None; the model is pruned in place.
TorchPruner = Callable[["torch.nn.Module", float, "Feeds | None"], None]
# (ONNX model, amount) -> None; its weight initializers are pruned in place.
OnnxPruner = Callable[["onnx.ModelProto", float], None]


def _prunable(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    from torch import nn

    return [(m, "weight") for m in model.modules()
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]


def _magnitude(model: torch.nn.Module, amount: float, example: Feeds | None) -> None:
    """Global unstructured L1 pruning over every conv and linear weight, then made permanent.

    Global (rather than per layer) lets small, sensitive layers keep more of their weights.
    """
    from torch.nn.utils import prune

    params = _prunable(model)
    if not params:
        raise Unsupported("magnitude pruning needs conv or linear layers; this model has none")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # bake the mask into the weight: no reparametrisation left


# ----------------------------------------------------------------------------- 2:4


def mask_2_4(weight: np.ndarray, axis: int) -> np.ndarray:
    """Keep-mask of ``weight``: the 2 largest magnitudes of every 4 consecutive along ``axis``.

    ``weight.shape[axis]`` must be a multiple of 4. Ties keep the earlier position.
    """
    moved = np.moveaxis(np.abs(weight.astype(np.float32)), axis, -1)
    groups = moved.reshape(-1, 4)
    # stable sort of -|w|: the two largest, earlier first on ties
    keep_idx = np.argsort(-groups, axis=1, kind="stable")[:, :2]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, keep_idx, True, axis=1)
    return np.moveaxis(keep.reshape(moved.shape), -1, axis)


def _two_four(model: torch.nn.Module, amount: float, example: Feeds | None) -> None:
    """2:4 on every conv / linear weight whose input dimension is a multiple of 4.

    The group runs along the input channels (Conv weight [Cout, Cin, kh, kw] -> Cin; Linear
    [out, in] -> in), which is the GEMM reduction dimension sparse units compress. Layers whose
    input dimension is not a multiple of 4 (a first conv on a grey image, depthwise convs) are
    left dense, as NVIDIA's ASP does.
    """
    import torch
    from torch import nn

    done = 0
    for module, _ in _prunable(model):
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and module.groups != 1:
            continue
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        w = weight.detach()
        if w.shape[1] % 4:
            continue
        keep = torch.from_numpy(mask_2_4(w.numpy(), axis=1))
        with torch.no_grad():
            weight.mul_(keep.to(w.dtype))
        done += 1
    if not done:
        raise Unsupported("2:4 sparsity needs a conv or linear layer whose input dimension is "
                          "a multiple of 4; this model has none")


# ----------------------------------------------------------------------------- channels


def _example_args(example: Feeds | None, method: str) -> tuple[torch.Tensor, ...]:
    import torch

    if not example:
        raise ValueError(f"pruning method {method!r} traces the model: pass example inputs")
    return tuple(torch.from_numpy(np.asarray(v)) for v in example.values())


def _output_shapes(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> list[tuple]:
    import torch

    with torch.no_grad():
        out = model(*args)
    leaves = out.values() if isinstance(out, dict) else out
    if isinstance(leaves, torch.Tensor):
        leaves = [leaves]
    return [tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor)]


def _channels(model: torch.nn.Module, amount: float, example: Feeds | None, *, p: int) -> None:
    """Remove ``amount`` of each conv's output channels, those of smallest Lp filter norm.

    torch-pruning's DependencyGraph finds what else must shrink with a conv's output channels
    (the next conv's input channels, BatchNorm, the Linear after a Flatten, concat / add
    partners). Only convs are roots: other layers shrink only as dependents. Convs whose
    channels reach the model's output (a detector head) are kept whole, so the output shape
    never changes.
    """
    import torch_pruning as tp
    from torch import nn

    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    if not convs:
        raise Unsupported("channel pruning needs conv layers; this model has none")
    args = _example_args(example, f"channel-l{p}")
    model.eval()
    reference = _output_shapes(model, args)

    # Probe on a copy: remove one channel of each conv and see whether the output shape moves.
    probe = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(probe, example_inputs=args)
    probe_convs = [m for m in probe.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    keep_whole: list[nn.Module] = []
    for conv, probe_conv in zip(convs, probe_convs, strict=True):
        if probe_conv.out_channels < 2:
            keep_whole.append(conv)
            continue
        try:
            graph.get_pruning_group(probe_conv, tp.prune_conv_out_channels, idxs=[0]).prune()
            shapes = _output_shapes(probe, args)
        except RuntimeError:
            # A coupling the probe could not cut leaves the probe unusable: from here on every
            # conv is kept whole, which is conservative (less pruned), never wrong.
            shapes = None
        if shapes != reference:
            keep_whole.append(conv)
            if shapes is not None:
                reference = shapes  # later probes compare against the probe's new output
    if len(keep_whole) == len(convs):
        raise Unsupported("channel pruning: every conv's channels reach the model's output")

    # Only plain convs are roots: transposed convs (not probed above) and Linear / recurrent /
    # attention layers shrink only where a pruned conv feeds them.
    not_conv = [m for m in model.modules()
                if isinstance(m, nn.Linear | nn.LSTM | nn.MultiheadAttention
                              | nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d)]
    importance = tp.importance.MagnitudeImportance(p=p, group_reduction="first",
                                                   normalizer=None)
    pruner = tp.pruner.MetaPruner(model, args, importance=importance, pruning_ratio=amount,
                                  ignored_layers=not_conv + keep_whole)
    pruner.step()


# ----------------------------------------------------------------------------- transformers


def _norm(t: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    return t.detach().abs().pow(p).sum(dim=dim)


def _sliced_linear(lin: torch.nn.Linear, *, rows: torch.Tensor | None = None,
                   cols: torch.Tensor | None = None) -> torch.nn.Linear:
    """A new Linear holding only the output ``rows`` / input ``cols`` of ``lin``."""
    import torch

    w = lin.weight.detach()
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    out = torch.nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None,
                          dtype=w.dtype, device=w.device)
    with torch.no_grad():
        out.weight.copy_(w)
        if lin.bias is not None:
            b = lin.bias.detach()
            out.bias.copy_(b[rows] if rows is not None else b)
    return out


# HF modules are reached through attributes found by shape: typed Any on purpose.
def _attention_blocks(model: torch.nn.Module) -> Iterator[tuple[Any, Any]]:
    """(self-attention, attention output) pairs of BERT-style encoders (BERT, RoBERTa, MiniLM).

    Found by shape, not by class, so a thin wrapper around the HF model works too.
    """
    from torch import nn

    for m in model.modules():
        sa, out = getattr(m, "self", None), getattr(m, "output", None)
        if (isinstance(sa, nn.Module) and hasattr(sa, "attention_head_size")
                and all(isinstance(getattr(sa, n, None), nn.Linear)
                        for n in ("query", "key", "value"))
                and isinstance(getattr(out, "dense", None), nn.Linear)):
            yield sa, out


def _heads(model: torch.nn.Module, amount: float, example: Feeds | None, *, p: int) -> None:
    """Remove ``amount`` of each layer's attention heads: those of smallest Lp norm over their
    query/key/value rows and their columns of the attention output projection."""
    import torch

    blocks = list(_attention_blocks(model))
    if not blocks:
        raise Unsupported("head pruning needs a BERT-style encoder (self.query/key/value and "
                          "output.dense); this model has none")
    for sa, out in blocks:
        n, d = int(sa.num_attention_heads), int(sa.attention_head_size)
        keep_n = max(1, n - round(amount * n))
        if keep_n == n:
            continue
        score = sum(_norm(getattr(sa, k).weight, p, 1).view(n, d).sum(1)
                    for k in ("query", "key", "value"))
        score = score + _norm(out.dense.weight, p, 0).view(n, d).sum(1)
        heads = torch.sort(torch.topk(score, keep_n).indices).values
        idx = (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)
        for k in ("query", "key", "value"):
            setattr(sa, k, _sliced_linear(getattr(sa, k), rows=idx))
        out.dense = _sliced_linear(out.dense, cols=idx)
        # BERT's forward reshapes to (-1, head size): the head count follows the weights.
        sa.num_attention_heads = keep_n
        sa.all_head_size = keep_n * d


def _ffn_blocks(model: torch.nn.Module) -> Iterator[Any]:
    """BERT-style layers: ``intermediate.dense`` (hidden -> ffn) and ``output.dense`` back."""
    from torch import nn

    for m in model.modules():
        inter, out = getattr(m, "intermediate", None), getattr(m, "output", None)
        if (isinstance(getattr(inter, "dense", None), nn.Linear)
                and isinstance(getattr(out, "dense", None), nn.Linear)):
            yield m


def _neurons(model: torch.nn.Module, amount: float, example: Feeds | None, *, p: int) -> None:
    """Remove ``amount`` of each layer's FFN intermediate neurons: those of smallest Lp norm
    over their input row and output column."""
    import torch

    layers = list(_ffn_blocks(model))
    if not layers:
        raise Unsupported("neuron pruning needs a BERT-style encoder (intermediate.dense and "
                          "output.dense); this model has none")
    for layer in layers:
        up, down = layer.intermediate.dense, layer.output.dense
        n = up.out_features
        keep_n = max(1, n - round(amount * n))
        score = _norm(up.weight, p, 1) + _norm(down.weight, p, 0)
        idx = torch.sort(torch.topk(score, keep_n).indices).values
        layer.intermediate.dense = _sliced_linear(up, rows=idx)
        layer.output.dense = _sliced_linear(down, cols=idx)


def _with_norm(fn: Callable[..., None], p: int) -> TorchPruner:
    def pruner(model: torch.nn.Module, amount: float, example: Feeds | None) -> None:
        fn(model, amount, example, p=p)

    pruner.__doc__ = fn.__doc__
    return pruner


def prune_model(model: torch.nn.Module, spec: PruneSpec, *,
                example: Feeds | None = None) -> torch.nn.Module:
    """A pruned copy of ``model`` (the input is left untouched).

    ``example`` (input name -> array, in the model's argument order) is needed by the channel
    methods, which trace the model. Raises :class:`Unsupported` when the model has nothing the
    method can prune (channels on a transformer, heads on a CNN). Fine-tuning ("+ft" levels) is
    the workload's job (:meth:`harness.workloads.base.Workload.pruned_torch_model` calls this,
    then fine-tunes): only it has training data. Nothing here imports a workload: what pruning
    needs from one (the example inputs) is passed in.
    """
    if spec.is_dense:
        return model
    pruners: MethodPruners = load_plugin(PRUNERS, spec.method)
    pruned = copy.deepcopy(model)
    pruners.torch(pruned, spec.amount, example)
    return pruned


# ----------------------------------------------------------------------------- ONNX only

# ONNX-only workloads (models shipped as ONNX, with no PyTorch source) are pruned on their
# initializers. Only patterns that keep the graph's shapes apply there; removing channels needs
# the source model.
_ONNX_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def _onnx_weights(model: onnx.ModelProto) -> list[tuple[str, onnx.NodeProto]]:
    """(initializer name, first consumer) of float conv / matmul / gemm weights (rank >= 2)."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    found: dict[str, onnx.NodeProto] = {}
    for node in model.graph.node:
        idx = _ONNX_WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        name = node.input[idx]
        init = inits.get(name)
        if (init is not None and name not in found and len(init.dims) >= 2
                and init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)):
            found[name] = node
    return list(found.items())


def onnx_prunable_weights(model: onnx.ModelProto) -> list[str]:
    """Names of float initializers used as conv / matmul / gemm weights (rank >= 2)."""
    return [name for name, _ in _onnx_weights(model)]


def _magnitude_onnx(model: onnx.ModelProto, amount: float) -> None:
    """Global unstructured magnitude pruning of the weight initializers, in place.

    The same rule as ``torch.nn.utils.prune.global_unstructured`` with L1Unstructured: the
    ``amount`` share of all weights with the smallest magnitude, pooled across layers, is set
    to zero (ties broken by position, as torch's topk does not promise either).
    """
    from onnx import numpy_helper

    names = set(onnx_prunable_weights(model))
    inits = [i for i in model.graph.initializer if i.name in names]
    arrays = [numpy_helper.to_array(i) for i in inits]
    if not arrays:
        raise Unsupported("magnitude pruning found no float conv / matmul / gemm weights in "
                          "this model")
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


def _two_four_onnx(model: onnx.ModelProto, amount: float) -> None:
    """2:4 on the weight initializers, grouped along the input dimension, in place.

    Conv [Cout, Cin/g, kh, kw] -> Cin (only ungrouped convs), MatMul [.., K, N] -> K, Gemm B ->
    K (axis 1 when transB). Weights whose input dimension is not a multiple of 4 stay dense.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done = 0
    for name, node in _onnx_weights(model):
        arr = numpy_helper.to_array(inits[name])
        axis = input_axis(node, arr.ndim)
        if axis is None or arr.shape[axis] % 4:
            continue
        pruned = np.where(mask_2_4(arr, axis), arr, 0).astype(arr.dtype)
        inits[name].CopyFrom(numpy_helper.from_array(pruned, name))
        done += 1
    if not done:
        raise Unsupported("2:4 sparsity needs a conv / matmul / gemm weight whose input "
                          "dimension is a multiple of 4; this model has none")


# ----------------------------------------------------------------------------- registered


@dataclass(frozen=True)
class MethodPruners:
    """What a pruning method of :data:`harness.variants.PRUNERS` runs: its torch pruner, and its
    ONNX pruner when the method can work on an ONNX file's initializers (None: it needs the
    PyTorch source model). "+ft" methods are registered with the same pruners as their base
    method: the fine-tune is the workload's job."""

    torch: TorchPruner
    onnx: OnnxPruner | None = None


MAGNITUDE = MethodPruners(_magnitude, _magnitude_onnx)
TWO_FOUR = MethodPruners(_two_four, _two_four_onnx)
CHANNEL_L1 = MethodPruners(_with_norm(_channels, 1))
CHANNEL_L2 = MethodPruners(_with_norm(_channels, 2))
HEAD_L1 = MethodPruners(_with_norm(_heads, 1))
HEAD_L2 = MethodPruners(_with_norm(_heads, 2))
NEURON_L1 = MethodPruners(_with_norm(_neurons, 1))
NEURON_L2 = MethodPruners(_with_norm(_neurons, 2))


def prune_onnx(model: onnx.ModelProto, spec: PruneSpec) -> onnx.ModelProto:
    """A pruned copy of an ONNX model, for workloads that have no PyTorch source.

    Raises :class:`harness.errors.Unsupported` for methods that need the source model.
    """
    if spec.is_dense:
        return model
    onnx_pruner = load_plugin(PRUNERS, spec.method).onnx
    if onnx_pruner is None:
        raise Unsupported(f"pruning level {spec.name!r} removes whole channels / heads / "
                          "neurons, which needs the PyTorch source model to fix up dependent "
                          "layers; this workload ships as ONNX")
    import onnx

    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    # Some exporters (PaddlePaddle's, for PP-OCR) store weights as Constant nodes.
    constants_to_initializers(pruned, only={
        node.input[idx] for node in pruned.graph.node
        if (idx := _ONNX_WEIGHT_INPUT.get(node.op_type)) is not None and len(node.input) > idx})
    onnx_pruner(pruned, spec.amount)
    return pruned


# ----------------------------------------------------------------------------- recording


def set_sparsity_metadata(model: onnx.ModelProto, spec: PruneSpec) -> None:
    """Write the level's pattern (``harness.sparsity_pattern``) and name into ``model``."""
    pattern = spec.sparsity_pattern
    props = {p.key: p.value for p in model.metadata_props}
    props.pop(PATTERN_KEY, None)
    props.pop(LEVEL_KEY, None)
    if pattern is not None:
        props[PATTERN_KEY] = pattern
        props[LEVEL_KEY] = spec.name
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def record_sparsity_pattern(path: Path, spec: PruneSpec) -> None:
    """Stamp ``spec``'s pattern into the ONNX file at ``path`` (external data left in place).

    Emulators read it to credit units that exploit the pattern (2:4 on sparse tensor units,
    channel / head pruning everywhere). A dense spec removes any stale stamp.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    before = [(p.key, p.value) for p in model.metadata_props]
    set_sparsity_metadata(model, spec)
    if [(p.key, p.value) for p in model.metadata_props] != before:
        onnx.save(model, str(path))

