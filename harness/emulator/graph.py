"""An ONNX model as per-node facts for the emulator: work, bytes moved, weights, precision.

:func:`load_graph` reads a model (a path, with any external data beside it, or a
``ModelProto``), gives every dynamic input dimension a concrete value, infers every tensor's
shape and type, and describes each node by what a device would have to do to run it:

* ``work_ops``: arithmetic in ops, 1 multiply-accumulate = 2 ops (the unit ``peak_gops`` counts);
* ``bytes_read`` / ``bytes_written``: tensors moved at their element sizes, weights included;
* ``precision``: one of :data:`harness.profiles.PRECISIONS`, the arithmetic a unit must offer.

The device view differs from the ONNX view in one place on purpose: QuantizeLinear and
DequantizeLinear nodes are folded into their neighbours, the way an NPU compiler or ORT's QDQ
fusions run them. Their float side never exists in memory, so a node fed by a DequantizeLinear
reads the quantized bytes, and a float tensor that only feeds QuantizeLinear nodes is written at
its quantized size. Pure views (Reshape, Flatten, Squeeze, Unsqueeze, Identity) likewise share
their input's buffer. :attr:`TensorInfo.stored_in` records who holds each tensor's bytes.

Weights never need to be read for any of this: only initializer dims and types are kept (small
integer initializers excepted: shape inference may need their values), so a multi-GB model costs
no more than its node list.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from harness.errors import InputError, unknown_name

BYTES_PER_MB = 1 << 20
"""Megabytes here are MiB, the unit phone RAM sizes and app memory caps are quoted in."""

ModelSource = str | os.PathLike[str] | onnx.ModelProto

# --------------------------------------------------------------------------- element types

# ONNX element type -> (name, bits). Looked up by name so that older onnx releases, which lack
# the newest types, still import this module.
_DTYPE_TABLE = (
    ("FLOAT", "float32", 32), ("UINT8", "uint8", 8), ("INT8", "int8", 8),
    ("UINT16", "uint16", 16), ("INT16", "int16", 16), ("INT32", "int32", 32),
    ("INT64", "int64", 64), ("STRING", "string", 0), ("BOOL", "bool", 8),
    ("FLOAT16", "float16", 16), ("DOUBLE", "float64", 64), ("UINT32", "uint32", 32),
    ("UINT64", "uint64", 64), ("COMPLEX64", "complex64", 64), ("COMPLEX128", "complex128", 128),
    ("BFLOAT16", "bfloat16", 16), ("FLOAT8E4M3FN", "float8e4m3fn", 8),
    ("FLOAT8E4M3FNUZ", "float8e4m3fnuz", 8), ("FLOAT8E5M2", "float8e5m2", 8),
    ("FLOAT8E5M2FNUZ", "float8e5m2fnuz", 8), ("UINT4", "uint4", 4), ("INT4", "int4", 4),
    ("FLOAT4E2M1", "float4e2m1", 4), ("FLOAT8E8M0", "float8e8m0", 8), ("UINT2", "uint2", 2),
    ("INT2", "int2", 2), ("FLOAT6E2M3", "float6e2m3", 6), ("FLOAT6E3M2", "float6e3m2", 6),
)
DTYPES: dict[int, tuple[str, int]] = {
    getattr(TensorProto, key): (name, bits)
    for key, name, bits in _DTYPE_TABLE if hasattr(TensorProto, key)
}
DTYPES_BITS = {name: bits for name, bits in DTYPES.values()}
_WIDE_FLOATS = {"float32", "float64"}
_HALF_FLOATS = {"float16", "bfloat16"}
# Integer types a quantizer stores data in. int32 is left out on purpose: in quantized graphs it
# only carries biases and accumulators, which say nothing about the arithmetic precision.
_QUANT_INTS = {"int2", "uint2", "int4", "uint4", "int8", "uint8", "int16", "uint16"}


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def precision_for_bits(bits: int) -> str:
    """The profile precision that runs arithmetic on ``bits``-wide quantized data.

    Profiles have no 16-bit integer precision; 16-bit quantized data (ORT's a16w8) is costed
    at fp16, the other 16-bit format units offer.
    """
    if bits <= 4:
        return "int4"
    if bits <= 8:
        return "int8"
    if bits <= 16:
        return "fp16"
    return "fp32"


# --------------------------------------------------------------------------- op tables

# QuantizeLinear / DequantizeLinear: folded into neighbours on a device (see the module doc).
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Pure views: the output shares the input's buffer; no work, no bytes. Dropout is an identity at
# inference.
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
# Read only metadata or are folded to constants when a runtime or compiler loads the graph.
FOLDED_OPS = frozenset({"Shape", "Size", "Constant"})
# Ops whose arithmetic is integer by construction: their precision comes from the width of
# their quantized tensors.
QUANTIZED_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear",
    "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearReduceMean",
    "QLinearWhere", "QAttention", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})
# Convolutions: op -> index of the weight input ([Cout, Cin/groups, *kernel]).
CONV_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}
# Matrix products: work = 2 * (output elements) * K. Gemm-like ops take transA into account.
MATMUL_OPS = frozenset({
    "MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits", "Gemm", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMul",
})
# Recurrent layers: per time step and direction, the gates' matrix products with the input
# (W: [directions, gates x hidden, input]) and the previous state (R: [.., .., hidden]).
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
_WEIGHTED_OPS = (MATMUL_OPS | frozenset(CONV_WEIGHT_INPUT) | RECURRENT_OPS
                 | {"ConvTranspose", "Einsum"})
# Move or rearrange data without arithmetic: zero work, bytes in and out.
DATA_MOVEMENT_OPS = frozenset({
    "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Pad",
    "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "ConstantOfShape", "Range", "ScatterND",
    "ScatterElements", "OneHot", "Trilu", "ReverseSequence", "EyeLike", "QLinearConcat",
    "NonZero", "Compress", "CenterCropPad",
})
# Cheap per-element arithmetic: bandwidth-bound on every unit (op class "elementwise").
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Clip", "HardSwish", "HardSigmoid",
    "LeakyRelu", "PRelu", "Elu", "Selu", "Erf", "Gelu", "FastGelu", "Exp", "Log", "Sqrt",
    "Reciprocal", "Pow", "Neg", "Abs", "Max", "Min", "Where", "Cast", "BatchNormalization",
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "Mish", "Softplus",
    "BiasGelu", "QuickGelu", "Equal", "Less", "Greater", "Not", "And", "Or", "Sign", "Floor",
    "Ceil", "Round",
})


def op_class(op: str, attrs: Mapping[str, object], *,
             channels_per_group: int | None = None) -> str:
    """The efficiency class of an op: conv, depthwise, matmul, elementwise or other.

    Depthwise convolutions (one input channel per group: ``channels_per_group == 1``) do a
    few MACs per value read, so units reach a much smaller share of peak on them than on dense
    convolutions. Grouped convolutions with several channels per group (ResNeXt, RegNet) are
    small dense convolutions side by side: class conv, their work already divided by the
    groups (it is counted from the weight, [Cout, Cin/groups, *kernel]). No published
    measurement in the calibration data has such convolutions, so they get no class of their
    own. When the channels per group are not known, a grouped convolution is taken as
    depthwise (the slower guess).
    """
    if op in CONV_WEIGHT_INPUT or op == "ConvTranspose":
        group = attrs.get("group", 1)
        if not (isinstance(group, int) and group > 1):
            return "conv"
        dense_groups = channels_per_group is not None and channels_per_group > 1
        return "conv" if dense_groups else "depthwise"
    if op in MATMUL_OPS or op in RECURRENT_OPS or op == "Einsum":
        return "matmul"
    if op in ELEMENTWISE_OPS:
        return "elementwise"
    return "other"


# These read only the part of input 0 that they output (an embedding Gather touches a few rows of
# a large table, not all of it).
PARTIAL_READ_OPS = frozenset({"Gather", "GatherElements", "GatherND", "Slice"})
# Sliding-window pools: work = kernel elements per output element.
WINDOW_POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"})
# Reductions and global pools: 1 op per *input* element.
REDUCE_OPS = frozenset({
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "TopK",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "QLinearGlobalAveragePool",
    "QLinearReduceMean",
})

# Ops per *output* element for elementwise, activation and normalization ops: rough counts of a
# vectorised kernel. 1 for plain arithmetic, compares, selects and casts; about 4 for a
# transcendental (exp, log, tanh, erf: a polynomial after range reduction); composites add their
# parts (softmax = max + sub + exp + sum + div = 8; layer norm = mean, centre, square, sum,
# normalise, scale, shift = 7). These ops are memory-bound on every unit we model, so the
# constants barely move latency; they keep work and energy totals from reading zero.
OPS_PER_ELEMENT: dict[str, float] = {
    **dict.fromkeys((
        "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Neg", "Abs", "Relu",
        "LeakyRelu", "PRelu", "Clip", "Sign", "Floor", "Ceil", "Round", "Cast", "CastLike",
        "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not",
        "Where", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
        "IsNaN", "IsInf", "Reciprocal", "Sqrt", "ThresholdedRelu", "Shrink", "Pow", "BiasAdd",
        "CumSum",   # a running add: RoBERTa-style position ids are a CumSum of the token mask
    ), 1.0),
    **dict.fromkeys(("HardSigmoid", "BatchNormalization", "QuantizeLinear", "DequantizeLinear"),
                    2.0),
    "HardSwish": 3.0,
    **dict.fromkeys((
        "Exp", "Log", "Tanh", "Sigmoid", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
        "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Softplus", "Softsign", "Elu", "Selu", "Celu",
        "Swish", "QuickGelu", "Resize", "Upsample", "LpNormalization", "DynamicQuantizeLinear",
        "QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearWhere",
    ), 4.0),
    **dict.fromkeys(("SimplifiedLayerNormalization", "RMSNormalization"), 5.0),
    **dict.fromkeys((
        "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "MeanVarianceNormalization", "LRN",
    ), 7.0),
    **dict.fromkeys((
        "Softmax", "LogSoftmax", "Hardmax", "Gelu", "FastGelu", "BiasGelu",
        "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "QLinearSigmoid",
        "QLinearSoftmax", "BiasSoftmax",
    ), 8.0),
    "Mish": 10.0,
}
# ONNX metadata key under which harness.compress records how weights were pruned.
SPARSITY_PATTERN_KEY = "harness.sparsity_pattern"
UNKNOWN_OPS_PER_ELEMENT = 1.0
"""Work charged per output element of an op this module does not know (and reported)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TensorInfo:
    """One tensor after shape inference, with where it lives on a device."""

    name: str
    dtype: str                   # "float32", "int8", "int4", ...
    shape: tuple[int, ...]
    nbytes: int                  # at its own element type (4-bit types packed two per byte)
    kind: str                    # "input" | "weight" | "activation"
    producer: int | None         # index into Graph.nodes, None for inputs and initializers
    consumers: tuple[int, ...]   # indices into Graph.nodes, ascending
    is_output: bool
    stored_in: str               # the tensor whose buffer holds these bytes (itself if its own)
    device_nbytes: int           # bytes of its own buffer on a device; 0 if stored_in another
    resolved: bool               # False: shape or type could not be inferred (guessed)


@dataclass(frozen=True)
class NodeFacts:
    """What one node costs a device, before it is placed on a unit."""

    index: int
    name: str
    op_type: str
    domain: str
    precision: str               # one of harness.profiles.PRECISIONS
    fused: bool                  # folded into neighbours on a device (Q/DQ, views, constants)
    known: bool                  # False: op not in the cost tables, charged per output element
    work_ops: int                # 1 MAC = 2 ops
    bytes_read: int              # inputs incl. weights, at their stored sizes
    bytes_written: int
    weight_bytes: int            # the part of bytes_read that is weights
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    output_bytes: tuple[int, ...]  # each output at its own element type
    op_class: str = "other"      # see op_class(): which efficiency a unit reaches on it
    shape_known: bool = True     # False: some input/output shape had to be guessed
    unresolved: tuple[str, ...] = ()   # its inputs/outputs whose shapes were guessed
    # Integers and booleans only (indices, masks, position ids): no float or quantized data,
    # so any unit runs it at whatever precision it has (``precision`` then reads fp32).
    integer: bool = False


@dataclass(frozen=True)
class Graph:
    """A model's nodes in execution order with their facts, and every tensor they touch."""

    source: str
    nodes: tuple[NodeFacts, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fixed_dims: tuple[str, ...]    # "input[axis] 'param' = value" for each dimension we chose
    unknown_ops: tuple[str, ...]   # op types charged at the unknown-op rate, sorted
    unresolved: tuple[str, ...]    # tensors read or output whose shape/type was guessed
    metadata: Mapping[str, str] = field(default_factory=dict)   # the model's metadata_props
    # tensor -> why its shape is not known, for every tensor in ``unresolved`` (and dead ones)
    unresolved_why: Mapping[str, str] = field(default_factory=dict)

    @property
    def sparsity_pattern(self) -> str | None:
        """How the weights were pruned, as recorded by harness.compress ("2:4", ...)."""
        return self.metadata.get(SPARSITY_PATTERN_KEY)

    @property
    def work_ops(self) -> int:
        """Total work of the nodes a device runs (fused nodes excluded)."""
        return sum(n.work_ops for n in self.nodes if not n.fused)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the distinct weights the nodes use, at their stored precision."""
        return sum(t.nbytes for t in self.tensors.values()
                   if t.kind == "weight" and t.stored_in == t.name
                   and (t.consumers or t.is_output))


# --------------------------------------------------------------------------- loading


def load_graph(
    model: ModelSource | Graph,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dim_params: Mapping[str, int] | None = None,
    default_dim: int = 1,
) -> Graph:
    """Read ``model`` and describe each node (see the module doc).

    Dynamic input dimensions get concrete values: a full shape from ``input_shapes`` (input
    name -> shape), else a symbolic dimension's value from ``dim_params`` (``{"sequence": 128}``),
    else ``default_dim`` (batch 1). Each dimension not given by ``input_shapes`` is listed in
    :attr:`Graph.fixed_dims`: what the emulator had to assume.
    A :class:`Graph` is returned as is.
    """
    if isinstance(model, Graph):
        if input_shapes or dim_params:
            raise InputError("input_shapes and dim_params apply when a model is loaded; "
                             "this one is already a Graph", field="input_shapes")
        return model
    if default_dim < 1:
        raise InputError(f"expected a dimension >= 1, got {default_dim}", field="default_dim")
    proto, base_dir, source = _read(model)
    _check_structure(proto, source)
    skeleton = _skeleton(proto, base_dir)
    fixed = _fix_inputs(skeleton, input_shapes or {}, dim_params or {}, default_dim, source)
    try:
        inferred = shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False,
                                                data_prop=True)
    except Exception as exc:  # onnx raises several types; a model it cannot read is bad input
        raise InputError(f"ONNX shape inference failed: {exc}", file=source) from exc
    return _Builder(inferred, source, tuple(fixed)).build()


def _read(model: ModelSource) -> tuple[onnx.ModelProto, Path | None, str]:
    if isinstance(model, onnx.ModelProto):
        return model, None, "<ModelProto>"
    path = Path(model)
    if path.is_dir():
        raise InputError("is a directory; expected an .onnx model file", file=path)
    if not path.is_file():
        raise InputError("no such model file", file=path)
    try:
        # External data (the weights) is not loaded: only dims and types are needed.
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not ONNX
        raise InputError(f"not a readable ONNX model: {exc}", file=path) from exc
    return proto, path.parent, str(path)


def _check_structure(model: onnx.ModelProto, source: str) -> None:
    """Refuse what no runtime would load, naming the node and tensor.

    Not ``onnx.checker``: it also rejects graphs that runtimes take (unsorted nodes, ops of
    domains it has no schema for). Checked here: a graph is present, has outputs, every name a
    top-level node reads is made by a node, a graph input or an initializer (names from an
    outer scope exist only inside subgraphs), and no name is made twice. Cycles are found when
    the nodes are ordered.
    """
    g = model.graph
    if model.ir_version == 0 and not model.HasField("graph"):
        raise InputError("not an ONNX model: no IR version and no graph (an empty file, or a "
                         "GraphProto saved without its ModelProto?)", file=source)
    if not g.output:
        raise InputError("the graph declares no outputs", file=source, field="graph.output")
    made: dict[str, str] = {}
    for name in [*(i.name for i in g.input), *(t.name for t in g.initializer),
                 *(t.values.name for t in g.sparse_initializer)]:
        made.setdefault(name, "a graph input or initializer")
    for i, n in enumerate(g.node):
        label = f"node {n.name or i} ({n.op_type})"
        for o in n.output:
            if not o:
                continue
            if o in made and made[o] != "a graph input or initializer":
                raise InputError(f"{label} writes {o!r}, which {made[o]} also writes: a name "
                                 "is assigned once in ONNX", file=source, field="graph.node")
            made[o] = label
    for i, n in enumerate(g.node):
        for t in n.input:
            if t and t not in made:
                raise InputError(f"node {n.name or i} ({n.op_type}) reads {t!r}, which no "
                                 "node, graph input or initializer provides",
                                 file=source, field="graph.node")
    missing = [o.name for o in g.output if o.name not in made]
    if missing:
        raise InputError(f"graph output {missing[0]!r} is made by no node, input or "
                         "initializer", file=source, field="graph.output")


# Integer initializers up to this many elements keep their values: Reshape/Slice/... read them
# during shape inference. Anything larger is a weight and only its dims matter.
_KEEP_VALUES_UP_TO = 1024
_INT_TYPES = (TensorProto.INT64, TensorProto.INT32)


def _skeleton(model: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    """A copy of ``model`` without weight data, for shape inference.

    Copying only names, dims and types keeps a large model cheap to infer (onnx serialises the
    whole model to run inference) and leaves the caller's proto untouched.
    """
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    out.metadata_props.extend(model.metadata_props)  # e.g. the sparsity pattern of pruning
    src, dst = model.graph, out.graph
    dst.name = src.name
    dst.node.extend(src.node)
    dst.input.extend(src.input)
    dst.output.extend(src.output)
    dst.value_info.extend(src.value_info)
    dst.sparse_initializer.extend(src.sparse_initializer)
    for t in src.initializer:
        stub = dst.initializer.add()
        numel = math.prod(t.dims)
        if t.data_type in _INT_TYPES and numel <= _KEEP_VALUES_UP_TO:
            stub.CopyFrom(t)
            if uses_external_data(stub) and base_dir is not None:
                try:
                    load_external_data_for_tensor(stub, str(base_dir))
                except OSError:
                    # Missing data only costs data propagation through this tensor.
                    del stub.external_data[:]
                    stub.data_location = TensorProto.DEFAULT
        else:
            stub.name = t.name
            stub.data_type = t.data_type
            stub.dims.extend(t.dims)
    return out


def _fix_inputs(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]],
                params: Mapping[str, int], default: int, source: str) -> list[str]:
    """Give every dynamic dimension of the real graph inputs a value, in place."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    real = [i for i in graph.input if i.name not in weights]
    names = [i.name for i in real]
    for name in shapes:
        if name not in names:
            raise unknown_name("model input", name, names, file=source, field="input_shapes")
    symbols = {d.dim_param for i in real for d in i.type.tensor_type.shape.dim if d.dim_param}
    for name in params:
        if name not in symbols:   # a misspelt name would silently leave the dimension at 1
            raise unknown_name("dimension name", name, symbols, file=source, field="dim_params")
    notes: list[str] = []
    for inp in real:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            continue
        dims = tt.shape.dim
        if inp.name in shapes:
            want = [int(v) for v in shapes[inp.name]]
            if any(v < 1 for v in want):
                raise InputError(f"expected dimensions >= 1, got {want}", file=source,
                                 field=f"input_shapes.{inp.name}")
            if tt.HasField("shape") and len(dims) != len(want):
                raise InputError(f"expected rank {len(dims)}, got shape {want}", file=source,
                                 field=f"input_shapes.{inp.name}")
            for axis, (d, v) in enumerate(zip(dims, want, strict=False)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                    raise InputError(f"dimension {axis} is fixed at {d.dim_value} in the "
                                     f"model, got {v}", file=source,
                                     field=f"input_shapes.{inp.name}")
            # A given shape is not an assumption: only defaulted dimensions are listed.
            if not tt.HasField("shape"):   # rank unknown in the model: take the override
                tt.shape.Clear()
                for v in want:
                    tt.shape.dim.add().dim_value = v
                continue
            for d, v in zip(dims, want, strict=True):
                if not (d.HasField("dim_value") and d.dim_value > 0):
                    d.Clear()
                    d.dim_value = v
            continue
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            v = params.get(d.dim_param, default) if d.dim_param else default
            notes.append(f"{inp.name}[{axis}] {d.dim_param or '?'!r} = {v}")
            d.Clear()
            d.dim_value = v
    return notes


# --------------------------------------------------------------------------- building facts

_Type = tuple[int, tuple[int | None, ...] | None]   # (ONNX element type, dims or None = rank ?)
_SymType = tuple[int, tuple[int | str, ...] | None]   # dims: a value or a symbol's name


def _has_values(t: onnx.TensorProto) -> bool:
    """Whether an initializer carries its values here (a :func:`_skeleton` stub does not)."""
    if uses_external_data(t):
        return False
    if math.prod(t.dims) == 0:
        return True
    return bool(t.raw_data or t.float_data or t.int32_data or t.int64_data or t.double_data
                or t.uint64_data or t.string_data)


def symbolic_shapes(model: onnx.ModelProto) -> tuple[dict[str, _SymType], str | None]:
    """Every tensor's type and shape by ONNX Runtime's symbolic shape inference, and why it
    stopped early (None if it did not).

    onnxruntime is imported here, when a graph needs it, not with the emulator. Weights
    without values (the stubs of :func:`_skeleton`) are declared as graph inputs of their
    shape: the inference reads an initializer's values when it finds one. It runs in a
    temporary working directory because on failure it saves its partial model (with an
    external data file) into the current one; that partial model is read back, so the shapes
    it did infer are kept. The working directory is the process's, so this is not for
    concurrent threads (emulation runs in worker processes).
    """
    import logging
    import warnings

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError as exc:   # onnxruntime (or sympy, which it needs here) missing
        return {}, f"ONNX Runtime's symbolic shape inference is not available: {exc}"
    sym = onnx.ModelProto()
    sym.CopyFrom(model)
    g = sym.graph
    stubs = [t for t in g.initializer if not _has_values(t)]
    keep = [t for t in g.initializer if _has_values(t)]
    g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in stubs)
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]
    log = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = log.level
    problem: str | None = None
    out: onnx.ModelProto | None = None
    try:
        log.setLevel(logging.CRITICAL)
        with (tempfile.TemporaryDirectory(prefix="harness-symshape-") as tmp,
              contextlib.chdir(tmp), warnings.catch_warnings()):
            warnings.simplefilter("ignore")
            try:
                out = SymbolicShapeInference.infer_shapes(sym, auto_merge=False,
                                                          guess_output_rank=True)
                if out is None:
                    problem = "ONNX Runtime's symbolic shape inference needs opset 7 or later"
            except Exception as exc:  # it raises bare Exceptions and asserts
                problem = (f"ONNX Runtime's symbolic shape inference stopped: "
                           f"{type(exc).__name__}: {exc}".rstrip(": "))
                partial = Path(tmp) / "sym_shape_infer_temp.onnx"
                if partial.is_file():
                    with contextlib.suppress(Exception):
                        out = onnx.load(partial, load_external_data=False)
    finally:
        log.setLevel(level)
    if out is None:
        return {}, problem
    found: dict[str, _SymType] = {}
    for vi in [*out.graph.value_info, *out.graph.output]:
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            found[vi.name] = (tt.elem_type, None)
            continue
        found[vi.name] = (tt.elem_type, tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tt.shape.dim))
    return found, problem


def _type_of(tp: onnx.TypeProto) -> _Type | None:
    if not tp.HasField("tensor_type"):
        return None
    tt = tp.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                 for d in tt.shape.dim)
    return tt.elem_type, dims


class _Builder:
    """Turns an inferred model into a :class:`Graph`, one pass per concern, in order."""

    def __init__(self, model: onnx.ModelProto, source: str, fixed: tuple[str, ...]):
        self.model = model
        self.source = source
        self.fixed = fixed
        g = model.graph
        self.opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        self.weights = {t.name: t for t in g.initializer}
        # Sparse initializers are costed as if dense (their dims; values' type).
        sparse = {t.values.name: (t.values.data_type, tuple(t.dims)) for t in g.sparse_initializer}
        self.weights.update({t.values.name: t.values for t in g.sparse_initializer})
        self.inputs = tuple(i.name for i in g.input if i.name not in self.weights)
        self.outputs = tuple(o.name for o in g.output)
        self.output_set = set(self.outputs)
        self.nodes = _topological(list(g.node), set(self.inputs) | set(self.weights),
                                 source=source)
        self.types: dict[str, _Type] = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = _type_of(vi.type)
            if t is not None:
                self.types[vi.name] = t
        for name, w in self.weights.items():
            self.types[name] = sparse.get(name, (w.data_type, tuple(w.dims)))
        self.unresolved: set[str] = set()
        # ORT's symbolic shapes (dims are ints or symbol names) and why it stopped, if it did
        self.symbolic: dict[str, _SymType] = {}
        self.symbolic_problem: str | None = None
        # Filled by build():
        self.typed: dict[str, tuple[str, int, tuple[int, ...]]] = {}   # dtype, bits, shape
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.constants: set[str] = set()   # outputs of the constant-folded nodes
        self.folded: set[int] = set()       # nodes evaluated when the graph is compiled
        self.stored_in: dict[str, str] = {}
        self.device_nbytes: dict[str, int] = {}

    # -- shapes ------------------------------------------------------------------------

    def _complete_types(self) -> None:
        """Fill outputs that onnx inference left open, in one pass in execution order.

        Two things stop onnx: contrib ops it has no schema for (rules below), and shape
        arithmetic its data propagation does not follow (``Shape -> Gather -> Div -> Cast ->
        Concat -> Reshape`` from torch's legacy exporter). With every input dimension fixed,
        that arithmetic is on known integers, so it is evaluated here (:func:`_fold`) and the
        values are handed to onnx's per-node inference.
        """
        if all(self._known(o) for n in self.nodes for o in n.output if o):
            return
        values: dict[str, np.ndarray] = {}
        for name, w in self.weights.items():
            if w.raw_data or w.int64_data or w.int32_data:   # the small ints the skeleton kept
                values[name] = numpy_helper.to_array(w)
        for node in self.nodes:
            if not all(self._known(o) for o in node.output if o):
                ins = [self.types.get(i) if i else None for i in node.input]
                rule = _contrib_rule(node, ins)
                if rule is None:
                    rule = self._schema_rule(node, ins, values)
                for name, t in zip(node.output, rule, strict=False):
                    if name and t is not None and not self._known(name):
                        self.types[name] = t
            try:
                folded = _fold(node, values, self.types)
            except Exception:  # shapes only: an odd node just leaves its outputs unknown
                folded = {}
            values.update(folded)
            for name, v in folded.items():
                if not self._known(name) and v.dtype.kind in "iub":
                    self.types[name] = (helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)

    def _symbolic_types(self) -> None:
        """Fill what onnx and :meth:`_complete_types` left unknown from ONNX Runtime's
        symbolic shape inference (:func:`symbolic_shapes`), then complete again from there.

        onnx's data propagation stops at ops it does not evaluate (ConstantOfShape, Expand,
        Where, And on masks; Hugging Face encoders build their attention masks that way), and
        everything downstream of one such tensor is unknown, MatMuls included. ORT's
        inference follows that arithmetic symbolically. Only fully known shapes are taken;
        what stays unknown is explained by :meth:`_unknown_reason`.
        """
        pending = [o for n in self.nodes for o in n.output if o and not self._known(o)]
        if not pending:
            return
        self.symbolic, self.symbolic_problem = symbolic_shapes(self.model)
        merged = False
        for name in pending:
            t = self.symbolic.get(name)
            if t is None or t[0] == 0 or t[1] is None:
                continue
            dims = t[1]
            if all(isinstance(d, int) and d >= 0 for d in dims):
                self.types[name] = (t[0], tuple(int(d) for d in dims))
                merged = True
        if merged:
            self._complete_types()   # folding and contrib rules may now get further

    def _unknown_reason(self, name: str) -> str:
        """Why ``name``'s shape or type stayed unknown, in words (for the node breakdown)."""
        i = self.producer.get(name)
        if i is None:
            if name in self.inputs:
                return "a graph input whose shape is not fully declared"
            return "declared nowhere with a shape or type"
        node = self.nodes[i]
        label = f"{node.op_type} node {node.name or i}"
        upstream = [t for t in node.input if t and t in self.unresolved]
        if upstream:
            return f"made by {label} from {upstream[0]!r}, whose shape is not known"
        sym = self.symbolic.get(name)
        if sym is not None and sym[1] is not None:
            dynamic = [str(d) for d in sym[1] if not isinstance(d, int)]
            if dynamic:
                return (f"{label} makes dimension(s) {', '.join(dynamic)} that depend on "
                        "values computed at run time")
        if node.domain not in ("", "ai.onnx") and not self.symbolic:
            cause = f"op {node.domain}.{node.op_type} has no shape rule"
        else:
            cause = "neither onnx nor ONNX Runtime's symbolic shape inference inferred it"
        if self.symbolic_problem:
            cause += f" ({self.symbolic_problem})"
        return f"{label}: {cause}"

    def _known(self, name: str) -> bool:
        t = self.types.get(name)
        return t is not None and t[0] != 0 and t[1] is not None and None not in t[1]

    def _schema_rule(self, node: onnx.NodeProto, ins: list[_Type | None],
                     values: Mapping[str, np.ndarray]) -> list[_Type | None]:
        """onnx's own inference for one standard node whose inputs we completed."""
        if node.domain not in ("", "ai.onnx"):
            return []
        if any(t is None for t, i in zip(ins, node.input, strict=True) if i):
            return []
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opsets.get("ai.onnx", 1), "")
            types = {i: helper.make_tensor_type_proto(t[0], t[1])
                     for i, t in zip(node.input, ins, strict=True) if i and t is not None}
            data = {i: numpy_helper.from_array(values[i], i) for i in node.input
                    if i in values}
            out = shape_inference.infer_node_outputs(schema, node, types, data,
                                                     opset_imports=list(self.model.opset_import))
        except Exception:  # best effort: the outputs are then reported unresolved
            return []
        return [_type_of(out[o]) if o in out else None for o in node.output]

    def _tensor_type(self, name: str) -> tuple[str, int, tuple[int, ...]]:
        """(dtype, bits, shape) with unknowns guessed (float32, dims of 1) and recorded."""
        elem, dims = self.types.get(name, (0, None))
        if elem not in DTYPES or dims is None or None in dims:
            self.unresolved.add(name)
        dtype, bits = DTYPES.get(elem, ("float32", 32))
        shape = tuple(1 if d is None else d for d in (dims or ()))
        return dtype, bits, shape

    def _constant_folded(self) -> set[int]:
        """Indices of the nodes a compiler evaluates once, when it loads the graph.

        Constants, Shape/Size of a tensor whose shape is known, and any node all of whose
        inputs are weights or outputs of such nodes (the pad arithmetic of TF-style "same"
        padding, position ids sliced from a buffer): ORT's constant folding and the QNN
        converter compute them ahead of time, so no unit runs them. Left out: Q/DQ (folded
        with their neighbours instead), ops with subgraphs and random ops, which are not
        constant whatever their inputs.
        """
        const = set(self.weights)
        folded: set[int] = set()
        for i, n in enumerate(self.nodes):
            op = n.op_type
            ins = [t for t in n.input if t]
            if op == "Constant":
                ok = True
            elif op in ("Shape", "Size"):
                ok = bool(ins) and ins[0] not in self.unresolved
            else:
                ok = (bool(ins) and all(t in const for t in ins) and op not in QDQ_OPS
                      and n.domain in ("", "ai.onnx")
                      and not op.startswith(("Random", "Bernoulli", "Multinomial"))
                      and not any(a.type in (onnx.AttributeProto.GRAPH,
                                             onnx.AttributeProto.GRAPHS)
                                  for a in n.attribute))
            if ok:
                folded.add(i)
                const.update(o for o in n.output if o)
        return folded

    # -- tensors -----------------------------------------------------------------------

    def _kind(self, t: str) -> str:
        if t in self.weights or t in self.constants:
            return "weight"
        return "activation" if t in self.producer else "input"

    def _nbytes(self, t: str) -> int:
        _, bits, shape = self.typed[t]
        return (math.prod(shape) * bits + 7) // 8

    def _only_quantized(self, t: str) -> bool:
        """True if ``t`` exists only to be quantized: every reader is a QuantizeLinear."""
        readers = self.consumers.get(t, [])
        return bool(readers) and t not in self.output_set and all(
            self.nodes[c].op_type == "QuantizeLinear" and self.nodes[c].input[0] == t
            for c in readers)

    def _place_tensors(self) -> None:
        """Decide which buffer holds each tensor on a device (see the module doc)."""
        self.stored_in = {t: t for t in self.typed}
        self.device_nbytes = {t: self._nbytes(t) for t in self.typed}
        for n in self.nodes:
            src = n.input[0] if n.input else ""
            out = n.output[0] if n.output else ""
            if not src or not out:
                continue
            if n.op_type in VIEW_OPS or (n.op_type == "DequantizeLinear"
                                          and out not in self.output_set):
                # (A dequantized graph output is handed to the app in float: it is real.)
                self.stored_in[out] = self.stored_in[src]
            elif (n.op_type == "QuantizeLinear" and self._only_quantized(src)
                  and self._kind(self.stored_in[src]) == "activation"):
                # The producer of src writes the quantized values straight away.
                root = self.stored_in[src]
                self.stored_in[out] = root
                if root == src:
                    self.device_nbytes[src] = max(
                        self._nbytes(self.nodes[c].output[0]) for c in self.consumers[src])
        for t, root in self.stored_in.items():
            if root != t:
                self.device_nbytes[t] = 0

    # -- facts -------------------------------------------------------------------------

    def build(self) -> Graph:
        self._complete_types()
        self._symbolic_types()
        names: dict[str, None] = {}   # every tensor name, in first-seen order
        for n in self.nodes:
            names.update((t, None) for t in [*n.input, *n.output] if t)
        names.update((t, None) for t in [*self.inputs, *self.outputs])
        self.consumers = {t: [] for t in names}
        for i, n in enumerate(self.nodes):
            for t in n.input:
                if t and (not self.consumers[t] or self.consumers[t][-1] != i):
                    self.consumers[t].append(i)
            self.producer.update((t, i) for t in n.output if t)
        self.typed = {t: self._tensor_type(t) for t in names}
        self.folded = self._constant_folded()
        self.constants = {o for i in self.folded for o in self.nodes[i].output if o}
        why = {t: self._unknown_reason(t) for t in names if t in self.unresolved}
        self._place_tensors()
        facts = [self._facts(i, n) for i, n in enumerate(self.nodes)]
        tensors = {
            t: TensorInfo(
                name=t, dtype=self.typed[t][0], shape=self.typed[t][2], nbytes=self._nbytes(t),
                kind=self._kind(t), producer=self.producer.get(t),
                consumers=tuple(self.consumers[t]), is_output=t in self.output_set,
                stored_in=self.stored_in[t], device_nbytes=self.device_nbytes[t],
                resolved=t not in self.unresolved)
            for t in names
        }
        return Graph(
            metadata=MappingProxyType({p.key: p.value for p in self.model.metadata_props}),
            source=self.source, nodes=tuple(facts), tensors=MappingProxyType(tensors),
            inputs=self.inputs, outputs=self.outputs, fixed_dims=self.fixed,
            unknown_ops=tuple(sorted({f.op_type for f in facts if not f.known})),
            # A dead output nobody reads (an old Dropout's mask) is not worth a warning.
            unresolved=tuple(t for t in names if t in self.unresolved
                             and (self.consumers[t] or t in self.output_set)),
            unresolved_why=MappingProxyType(why),
        )

    def _facts(self, index: int, node: onnx.NodeProto) -> NodeFacts:
        op = node.op_type
        ins = [t for t in node.input if t]
        outs = [t for t in node.output if t]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        work, known = _work(op, node, {t: self.typed[t][2] for t in [*ins, *outs]}, attrs)
        read = written = weight = 0
        if op in QDQ_OPS:
            # What it would move run on its own; a device folds it away (fused=True).
            read = sum(self._nbytes(t) for t in set(ins))
            written = sum(self._nbytes(t) for t in outs)
            weight = sum(self._nbytes(t) for t in set(ins) if self._kind(t) == "weight")
        elif op not in VIEW_OPS and op not in FOLDED_OPS:
            written = sum(self.device_nbytes[t] for t in outs)
            for pos, t in enumerate(node.input):
                if not t or t in node.input[:pos]:
                    continue  # a tensor fed twice is read once
                root = self.stored_in[t]
                b = self.device_nbytes[root]
                if pos == 0 and op in PARTIAL_READ_OPS:
                    b = min(b, written)
                read += b
                if self._kind(root) == "weight":
                    weight += b
        return NodeFacts(
            index=index, name=node.name or f"{op}_{index}", op_type=op, domain=node.domain,
            precision=self._precision(node, attrs),
            fused=(op in QDQ_OPS or op in VIEW_OPS or op in FOLDED_OPS
                   or index in self.folded), known=known,
            work_ops=work, bytes_read=read, bytes_written=written, weight_bytes=weight,
            inputs=tuple(ins), outputs=tuple(outs),
            output_bytes=tuple(self._nbytes(t) for t in outs),
            op_class=op_class(op, attrs,
                              channels_per_group=self._channels_per_group(node)),
            shape_known=not any(t in self.unresolved for t in [*ins, *outs]),
            unresolved=tuple(dict.fromkeys(t for t in [*ins, *outs] if t in self.unresolved)),
            integer=self._integer_only(node),
        )

    def _integer_only(self, node: onnx.NodeProto) -> bool:
        """Whether every tensor ``node`` reads or writes is an integer or boolean that is not
        quantized data (int32/int64/bool: indices, masks, counters)."""
        if node.op_type in QDQ_OPS or node.op_type in QUANTIZED_OPS:
            return False
        dtypes = [self.typed[t][0] for t in [*node.input, *node.output] if t]
        return bool(dtypes) and not any(_is_float(d) or d in _QUANT_INTS or d == "string"
                                        for d in dtypes)

    def _channels_per_group(self, node: onnx.NodeProto) -> int | None:
        """Input channels each group of a convolution reads, from its weight; None if unknown.

        Conv weights are [Cout, Cin/groups, *kernel]; ConvTranspose weights [Cin, Cout/groups,
        *kernel], whose input channels per group are Cin / groups.
        """
        op = node.op_type
        pos = 1 if op == "ConvTranspose" else CONV_WEIGHT_INPUT.get(op)
        if pos is None or len(node.input) <= pos or not node.input[pos]:
            return None
        w = node.input[pos]
        if w in self.unresolved or len(self.typed[w][2]) < 2:
            return None
        dims = self.typed[w][2]
        if op != "ConvTranspose":
            return dims[1]
        group = next((helper.get_attribute_value(a) for a in node.attribute
                      if a.name == "group"), 1)
        return dims[0] // group if isinstance(group, int) and group > 0 else None

    def _precision(self, node: onnx.NodeProto, attrs: Mapping[str, object]) -> str:
        """The arithmetic a unit needs for ``node`` (rules in order, first match wins)."""
        op = node.op_type
        ins = [t for t in node.input if t]
        outs = [t for t in node.output if t]
        typed = self.typed
        if op == "MatMulNBits":
            bits = attrs.get("bits", 4)
            return precision_for_bits(bits if isinstance(bits, int) else 4)
        if op in QDQ_OPS:
            # The width of the quantized side; an int32 DequantizeLinear (a bias) is folded
            # like the rest and called int8 with them.
            quantized = ins[:1] if op == "DequantizeLinear" else outs[:1]
            bits = typed[quantized[0]][1] if quantized else 8
            return precision_for_bits(bits) if bits < 32 else "int8"
        if op in QUANTIZED_OPS:
            widths = [typed[t][1] for t in [*ins, *outs] if typed[t][0] in _QUANT_INTS]
            return precision_for_bits(max(widths)) if widths else "int8"
        # QDQ graphs: which float inputs come from DequantizeLinear nodes, at what width.
        floats_in = list(dict.fromkeys(t for t in ins if _is_float(typed[t][0])))  # Add(x, x)
        dq_bits: dict[str, int] = {}
        for t in floats_in:
            p = self.producer.get(t)
            if p is not None and self.nodes[p].op_type == "DequantizeLinear":
                dq_bits[t] = typed[self.nodes[p].input[0]][1]
        narrow = [b for b in dq_bits.values() if b < 32]   # an int32 DQ carries a bias
        if floats_in and len(dq_bits) == len(floats_in) and narrow:
            floats_out = [t for t in outs if _is_float(typed[t][0])]
            # A full DQ -> op -> Q unit runs as one integer kernel. MatMul and Gemm also do
            # without the Q: ORT fuses them to MatMulIntegerToFloat, an integer kernel with a
            # float output.
            if all(self._only_quantized(t) for t in floats_out) or op in ("MatMul", "Gemm"):
                return precision_for_bits(max(narrow))
        if op in _WEIGHTED_OPS and any(b <= 4 for b in narrow):
            # Weight-only 4-bit: ORT fuses DQ(int4) -> MatMul into MatMulNBits; cost it the same
            # way. 8-bit weight-only stays at the activations' float precision (its smaller
            # weight bytes are counted all the same).
            return "int4"
        dtypes = [typed[t][0] for t in [*ins, *outs]]
        floats = [d for d in dtypes if _is_float(d)]
        if floats:
            if all(d in _HALF_FLOATS for d in floats):
                return "fp16"
            if all(d in _WIDE_FLOATS | _HALF_FLOATS for d in floats):
                return "fp32"
            return precision_for_bits(min(DTYPES_BITS[d] for d in floats))  # float8 and below
        quantized = [DTYPES_BITS[d] for d in dtypes if d in _QUANT_INTS]
        if quantized:
            # Integer data movement in QOperator graphs (MaxPool, Reshape, Gather on uint8);
            # int64 shapes and indices beside the data do not widen it.
            return precision_for_bits(max(quantized))
        return "fp32"   # integers and booleans only: NodeFacts.integer, any unit runs it


def _topological(nodes: list[onnx.NodeProto], available: set[str], *,
                source: str | None = None) -> list[onnx.NodeProto]:
    """``nodes`` in execution order. ONNX requires sorted graphs; sort only if one is not."""
    have = set(available)
    in_order = True
    for n in nodes:
        if any(i and i not in have for i in n.input):
            in_order = False
            break
        have.update(o for o in n.output if o)
    if in_order:
        return nodes
    produced = {o for n in nodes for o in n.output if o}
    have = set(available)
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            # Inputs nobody produces (outer-scope names) do not block a node.
            if all(not i or i in have or i not in produced for i in n.input):
                ordered.append(n)
                have.update(o for o in n.output if o)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            n = rest[0]
            raise InputError(f"the graph has a cycle: node {n.name or '?'} ({n.op_type}) and "
                             f"{len(rest) - 1} other(s) wait on each other's outputs",
                             file=source, field="graph.node")
        pending = rest
    return ordered


# --------------------------------------------------------------------------- work


def _work(op: str, node: onnx.NodeProto, shape: Mapping[str, tuple[int, ...]],
          attrs: Mapping[str, object]) -> tuple[int, bool]:
    """(work in ops, known op?) for one node. 1 MAC = 2 ops; bias adds are not counted."""
    ins = list(node.input)
    outs = [t for t in node.output if t]

    def numel(t: str) -> int:
        return math.prod(shape[t]) if t else 0

    out_elems = sum(numel(t) for t in outs)
    if op in VIEW_OPS or op in FOLDED_OPS or op in DATA_MOVEMENT_OPS:
        return 0, True
    if op in CONV_WEIGHT_INPUT:
        w = ins[CONV_WEIGHT_INPUT[op]] if len(ins) > CONV_WEIGHT_INPUT[op] else ""
        if not w or not outs:
            return 0, False
        # W is [Cout, Cin/groups, *kernel]: each output element takes (Cin/groups)*prod(kernel)
        # MACs, whatever the number of spatial dimensions.
        return 2 * numel(outs[0]) * math.prod(shape[w][1:]), True
    if op == "ConvTranspose":
        if len(ins) < 2 or not ins[1]:
            return 0, False
        # W is [Cin, Cout/groups, *kernel]: each input element scatters to that many outputs.
        return 2 * numel(ins[0]) * math.prod(shape[ins[1]][1:]), True
    if op in MATMUL_OPS:
        if not outs:
            return 0, False
        k = _reduction_dim(op, ins, shape, attrs)
        return 2 * numel(outs[0]) * k, True
    if op in RECURRENT_OPS:
        return _recurrent_work(ins, shape, attrs)
    if op == "Einsum":
        return _einsum_work(ins, outs, shape, attrs)
    if op in WINDOW_POOL_OPS:
        kernel = attrs.get("kernel_shape")
        window = math.prod(kernel) if isinstance(kernel, list) else 1
        return numel(outs[0]) * window, True
    if op in REDUCE_OPS:
        return numel(ins[0]), True
    if op in OPS_PER_ELEMENT:
        return math.ceil(OPS_PER_ELEMENT[op] * out_elems), True
    return math.ceil(UNKNOWN_OPS_PER_ELEMENT * out_elems), False


def _recurrent_work(ins: Sequence[str], shape: Mapping[str, tuple[int, ...]],
                    attrs: Mapping[str, object]) -> tuple[int, bool]:
    """LSTM / GRU / RNN: 2 x steps x batch x directions x gates*hidden x (input + hidden) for
    the matrix products, plus about 4 ops per gate element for the activations and updates."""
    if len(ins) < 3 or not all(ins[:3]) or len(shape[ins[1]]) != 3 or len(shape[ins[2]]) != 3:
        return 0, False
    x, (dirs, gates_hidden, in_size), hidden = shape[ins[0]], shape[ins[1]], shape[ins[2]][2]
    if len(x) != 3:
        return 0, False
    steps, batch = (x[1], x[0]) if attrs.get("layout") == 1 else (x[0], x[1])
    per_step = dirs * batch * gates_hidden
    return steps * per_step * (2 * (in_size + hidden) + 4), True


def _einsum_work(ins: Sequence[str], outs: Sequence[str], shape: Mapping[str, tuple[int, ...]],
                 attrs: Mapping[str, object]) -> tuple[int, bool]:
    """Einsum: one multiply-add per point of the joint index space (all labels, an ellipsis
    standing for its broadcast dimensions); a single operand (a transpose or a sum) reads each
    element once."""
    eq = attrs.get("equation")
    if isinstance(eq, bytes):
        eq = eq.decode()
    if not isinstance(eq, str) or not outs:
        return 0, False
    operands = eq.replace(" ", "").split("->")[0].split(",")
    if len(operands) != len([i for i in ins if i]):
        return 0, False
    sizes: dict[str, int] = {}
    ellipsis: list[int] = []   # broadcast dimensions, right-aligned as numpy aligns them
    for labels, name in zip(operands, ins, strict=False):
        dims = shape[name]
        head, dots, tail = labels.partition("...")
        n_ell = len(dims) - len(head) - len(tail)
        if n_ell < 0 or (n_ell and not dots):
            return 0, False
        ell = list(dims[len(head):len(head) + n_ell])
        width = max(len(ell), len(ellipsis))
        ell, ellipsis = [1] * (width - len(ell)) + ell, [1] * (width - len(ellipsis)) + ellipsis
        ellipsis = [max(a, b) for a, b in zip(ellipsis, ell, strict=True)]
        for label, d in zip(head + tail, (*dims[:len(head)], *dims[len(head) + n_ell:]),
                            strict=True):
            sizes[label] = max(sizes.get(label, 1), d)
    points = math.prod(sizes.values()) * math.prod(ellipsis)
    if len(operands) == 1:
        return math.prod(shape[ins[0]]), True
    return 2 * points * (len(operands) - 1), True


def _reduction_dim(op: str, ins: Sequence[str], shape: Mapping[str, tuple[int, ...]],
                   attrs: Mapping[str, object]) -> int:
    """K of a matrix product: the length each output element is summed over."""
    if op == "MatMulNBits":
        k = attrs.get("K")
        return k if isinstance(k, int) else 0
    a = shape[ins[0]] if ins and ins[0] else ()
    if not a:
        return 1
    if op in ("Gemm", "QGemm"):
        return a[0] if attrs.get("transA") else a[-1]
    if op == "FusedMatMul" and attrs.get("transA") and len(a) >= 2:
        return a[-2]
    return a[-1]


# --------------------------------------------------------------------------- shape arithmetic

_FOLD_MAX_ELEMENTS = 1024   # shape arithmetic is on a few numbers; anything bigger is data


def _fold(node: onnx.NodeProto, values: Mapping[str, np.ndarray],
          types: Mapping[str, _Type]) -> dict[str, np.ndarray]:
    """Evaluate one node of integer shape arithmetic when its inputs are known, else {}.

    Covers what exporters build shapes from; anything else is simply not folded.
    """
    op = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    outs = [o for o in node.output if o]
    if not outs:
        return {}
    if op == "Shape":
        t = types.get(node.input[0])
        if t is None or t[1] is None or None in t[1]:
            return {}
        dims = t[1]
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        return {outs[0]: np.array(dims[start:end], dtype=np.int64)}
    if op == "Constant":
        if "value" in attrs and isinstance(attrs["value"], TensorProto):
            v = numpy_helper.to_array(attrs["value"])
        elif "value_int" in attrs:
            v = np.array(attrs["value_int"], dtype=np.int64)
        elif "value_ints" in attrs:
            v = np.array(attrs["value_ints"], dtype=np.int64)
        else:
            return {}
        return {outs[0]: v} if v.size <= _FOLD_MAX_ELEMENTS else {}
    args = [values.get(i) if i else None for i in node.input]
    given = [a for a in args if a is not None]
    if len(given) < len([i for i in node.input if i]) or not given:
        return {}
    a = given[0]
    out: np.ndarray
    if op in ("Identity", "Cast"):
        out = a if op == "Identity" else a.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    elif op == "Gather":
        out = np.take(a, given[1], axis=int(attrs.get("axis", 0)))
    elif op in ("Unsqueeze", "Squeeze"):
        axes = attrs.get("axes", given[1] if len(given) > 1 else None)
        if op == "Squeeze":
            out = np.squeeze(a, axis=None if axes is None else tuple(int(x) for x in axes))
        elif axes is None:
            return {}
        else:
            rank = a.ndim + len(axes)
            out = a
            for ax in sorted(int(x) % rank for x in axes):
                out = np.expand_dims(out, ax)
    elif op == "Concat":
        out = np.concatenate(given, axis=int(attrs["axis"]))
    elif op == "Slice":
        starts, ends = given[1], given[2]
        axes = given[3] if len(given) > 3 else np.arange(len(starts))
        steps = given[4] if len(given) > 4 else np.ones(len(starts), dtype=np.int64)
        index = [slice(None)] * a.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
            index[int(ax)] = slice(int(s), int(e), int(st))
        out = a[tuple(index)]
    elif op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Mod"):
        b = given[1]
        if op == "Div" and a.dtype.kind in "iu":
            out = np.trunc(a / b).astype(a.dtype)   # ONNX integer Div truncates
        else:
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
                  "Max": np.maximum, "Min": np.minimum, "Equal": np.equal, "Mod": np.mod}[op]
            out = np.asarray(fn(a, b))
    elif op == "Where":
        out = np.where(a, given[1], given[2])
    elif op == "Reshape":
        shape = [int(d) if d != 0 else a.shape[i] for i, d in enumerate(given[1])]
        out = a.reshape(shape)
    elif op in ("Neg", "Floor", "Ceil", "Sqrt", "Abs"):
        out = {"Neg": np.negative, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
               "Abs": np.abs}[op](a)
    elif op == "ReduceProd" and len(given) == 1 and not attrs.get("axes"):
        out = np.array(np.prod(a), dtype=a.dtype).reshape((1,) * a.ndim
                                                          if attrs.get("keepdims", 1) else ())
    elif op == "Range":
        out = np.arange(a.item(), given[1].item(), given[2].item())
    else:
        return {}
    return {outs[0]: out} if out.size <= _FOLD_MAX_ELEMENTS else {}


# --------------------------------------------------------------------------- contrib shapes

# Output = input 0's shape and type: elementwise and normalization ops from ORT's contrib set.
_SAME_AS_INPUT = frozenset({
    "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "BiasSoftmax",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearAveragePool",
})


def _contrib_rule(node: onnx.NodeProto, ins: list[_Type | None]) -> list[_Type | None] | None:
    """Output types of the ORT contrib ops quantizers emit, which onnx cannot infer."""
    op = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def get(i: int) -> _Type | None:
        t = ins[i] if i < len(ins) else None
        return t if t is not None and t[1] is not None else None

    a = get(0)
    if a is None or a[1] is None:
        return None
    dims = a[1]
    if op in _SAME_AS_INPUT:
        return [a]
    if op == "MatMulNBits":
        n = attrs.get("N")
        return [(a[0], (*dims[:-1], n if isinstance(n, int) else None))]
    if op in ("QLinearAdd", "QLinearMul"):
        b = get(3)
        return [(a[0], _broadcast(dims, b[1]) if b and b[1] is not None else None)]
    if op == "QGemm":
        b = get(3)
        if b is None or b[1] is None or len(dims) != 2 or len(b[1]) != 2:
            return None
        m = dims[1] if attrs.get("transA") else dims[0]
        n = b[1][0] if attrs.get("transB") else b[1][1]
        y_zp, y_scale = get(8), get(7)
        elem = y_zp[0] if y_zp else (TensorProto.UINT8 if y_scale else TensorProto.FLOAT)
        return [(elem, (m, n))]
    if op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul", "FusedMatMul"):
        b = get(1)
        if b is None or b[1] is None or len(dims) < 1 or len(b[1]) < 2:
            return None
        if op == "FusedMatMul" and attrs.get("transA") and len(dims) >= 2:
            dims = (*dims[:-2], dims[-1], dims[-2])
        bd = b[1]
        if op == "FusedMatMul" and attrs.get("transB"):
            bd = (*bd[:-2], bd[-1], bd[-2])
        elem = a[0] if op == "FusedMatMul" else TensorProto.FLOAT
        batch = _broadcast(dims[:-2], bd[:-2])
        return [(elem, (*batch, dims[-2], bd[-1]) if len(dims) >= 2 else (*batch, bd[-1]))]
    if op == "QLinearGlobalAveragePool" and len(dims) >= 3:
        if attrs.get("channels_last"):
            return [(a[0], (dims[0], *(1,) * (len(dims) - 2), dims[-1]))]
        return [(a[0], (dims[0], dims[1], *(1,) * (len(dims) - 2)))]
    return None


def _broadcast(a: Sequence[int | None], b: Sequence[int | None]) -> tuple[int | None, ...]:
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    return tuple(y if x == 1 else x if y == 1 else (x if x == y else None)
                 for x, y in zip(pa, pb, strict=True))
