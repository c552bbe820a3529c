"""Tests of the first-cut emulator on tiny graphs built in code.

Every expected number is worked out by hand in the test, from the shapes and the profile
figures, so that a wrong formula fails instead of being copied into the expectation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.emulator import (
    BYTES_PER_MB,
    emulate,
    load_graph,
    predict_latency,
    predict_memory,
)
from harness.emulator.costmodel import FALLBACK_LADDER
from harness.emulator.memory import live_bytes_per_step
from harness.errors import InputError
from harness.profiles import PRECISIONS, DeviceProfile, parse_profile

F32, F16, F64, I8, U8 = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE,
                         TensorProto.INT8, TensorProto.UINT8)


# --------------------------------------------------------------------------- helpers


def fig(value: float) -> dict[str, Any]:
    return {"value": value, "basis": "assumed", "source": "test figure"}


def unit(name: str, kind: str, ops: Sequence[str], peaks: dict[str, float], *,
         efficiency: float = 0.5, dispatch_us: float = 5.0, handoff_us: float = 0.0,
         **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "ops": list(ops),
            "peak_gops": {p: fig(v) for p, v in peaks.items()},
            "efficiency": fig(efficiency), "dispatch_us": fig(dispatch_us),
            "active_power_w": fig(1.0), "handoff_us": fig(handoff_us), **extra}


def profile(units: Sequence[dict[str, Any]] | None = None, *, bandwidth_gb_s: float = 10.0,
            app_cap_mb: float = 1024.0, overhead_mb: float = 10.0) -> DeviceProfile:
    return parse_profile({
        "schema_version": 2, "name": "testdev", "display_name": "Test device", "soc": "Test",
        "adb_soc_model": "TEST",
        "memory": {"ram_mb": fig(4096), "app_cap_mb": fig(app_cap_mb),
                   "bandwidth_gb_s": fig(bandwidth_gb_s), "runtime_overhead_mb": fig(overhead_mb),
                   "dram_pj_per_byte": fig(10.0)},
        "power": {"idle_w": fig(0.5)},
        "thermal": {"ambient_c": fig(25), "sustained_fraction": fig(0.7),
                    "thermal_resistance_c_per_w": fig(10), "time_constant_s": fig(60),
                    "throttle_start_c": fig(60), "throttle_end_c": fig(90),
                    "min_clock_fraction": fig(0.5)},
        "units": list(units or [unit("cpu", "cpu", ["*"], {"fp32": 100.0})]),
    })


def tensor(name: str, elem: int, shape: Sequence[int | str] | None) -> onnx.ValueInfoProto:
    """A graph input or output; shape None leaves the shape to inference."""
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
          outputs: Sequence[onnx.ValueInfoProto], inits: Sequence[onnx.TensorProto] = (), *,
          opset: int = 17, ms: bool = False) -> onnx.ModelProto:
    # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads at most IR 13.
    opsets = [helper.make_opsetid("", opset)]
    if ms:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    g = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(inits))
    return helper.make_model(g, opset_imports=opsets, ir_version=10)


def rand(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def conv_model(x: Sequence[int | str], w: Sequence[int], **attrs: Any) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv", **attrs)
    return model([node], [tensor("x", F32, x)], [tensor("y", F32, None)],
                 [init("W", rand(*w))])


def node(graph_nodes: Sequence[Any], name: str) -> Any:
    return next(n for n in graph_nodes if n.name == name)


# --------------------------------------------------------------------------- work


@pytest.mark.parametrize(("x", "w", "attrs", "macs"), [
    # 2D: out [1,32,32,32]; each output takes Cin*kh*kw = 16*3*3 MACs.
    ([1, 16, 32, 32], [32, 16, 3, 3], {"pads": [1, 1, 1, 1]}, 1 * 32 * 32 * 32 * 16 * 3 * 3),
    # Depthwise, stride 2: out [1,16,16,16]; Cin/groups = 1.
    ([1, 16, 32, 32], [16, 1, 3, 3], {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": 16},
     1 * 16 * 16 * 16 * 1 * 3 * 3),
    # 4 groups: Cin/groups = 4, out [1,32,30,30] without padding.
    ([1, 16, 32, 32], [32, 4, 3, 3], {"group": 4}, 1 * 32 * 30 * 30 * 4 * 3 * 3),
    # 1D, batch 2: out [2,6,8].
    ([2, 4, 10], [6, 4, 3], {}, 2 * 6 * 8 * 4 * 3),
    # 3D: out [1,3,3,3,3], kernel 2x2x2 over 2 channels.
    ([1, 2, 4, 4, 4], [3, 2, 2, 2, 2], {}, 1 * 3 * 3 * 3 * 3 * 2 * 2 * 2 * 2),
])
def test_conv_work_is_two_ops_per_mac(x: list[int], w: list[int], attrs: dict[str, Any],
                                      macs: int) -> None:
    g = load_graph(conv_model(x, w, **attrs))
    assert g.nodes[0].work_ops == 2 * macs
    # Reads input and weights, writes the output, all float32.
    out = g.tensors["y"]
    assert g.nodes[0].bytes_read == 4 * (np.prod(x) + np.prod(w))
    assert g.nodes[0].bytes_written == out.nbytes == 4 * macs // np.prod(w[1:])
    assert g.nodes[0].weight_bytes == 4 * np.prod(w)


def test_matmul_and_gemm_work() -> None:
    nodes = [
        helper.make_node("MatMul", ["a", "B"], ["m"], name="mm"),              # [2,5,7]@[7,3]
        helper.make_node("MatMul", ["a4", "b4"], ["m4"], name="bmm"),          # batched 4D
        helper.make_node("Gemm", ["at", "B"], ["gm"], name="gemm", transA=1),  # [7,5]^T@[7,3]
    ]
    m = model(nodes, [tensor("a", F32, [2, 5, 7]), tensor("a4", F32, [2, 3, 4, 6]),
                      tensor("b4", F32, [2, 3, 6, 5]), tensor("at", F32, [7, 5])],
              [tensor("m", F32, None), tensor("m4", F32, None), tensor("gm", F32, None)],
              [init("B", rand(7, 3))])
    g = load_graph(m)
    assert node(g.nodes, "mm").work_ops == 2 * (2 * 5) * 7 * 3       # 2*M*K*N*batch
    assert node(g.nodes, "bmm").work_ops == 2 * (2 * 3) * 4 * 6 * 5
    assert node(g.nodes, "gemm").work_ops == 2 * 5 * 7 * 3
    assert node(g.nodes, "mm").weight_bytes == 7 * 3 * 4


@pytest.mark.parametrize(("op", "gates", "layout"), [("LSTM", 4, 0), ("GRU", 3, 1),
                                                     ("RNN", 1, 0)])
def test_recurrent_work_is_the_gate_products_per_step(op: str, gates: int, layout: int) -> None:
    steps, batch, dirs, hidden, in_size = 10, 2, 2, 16, 8
    x = [batch, steps, in_size] if layout else [steps, batch, in_size]
    n = helper.make_node(op, ["x", "W", "R"], ["y"], name="rnn", hidden_size=hidden,
                         direction="bidirectional", layout=layout)
    m = model([n], [tensor("x", F32, x)], [tensor("y", F32, None)],
              [init("W", rand(dirs, gates * hidden, in_size)),
               init("R", rand(dirs, gates * hidden, hidden))])
    (rnn,) = load_graph(m).nodes
    per_step = dirs * batch * gates * hidden
    assert rnn.op_class == "matmul"
    assert rnn.work_ops == steps * per_step * (2 * (in_size + hidden) + 4)


@pytest.mark.parametrize(("equation", "shapes", "macs"), [
    ("bhqd,bhkd->bhqk", [(1, 4, 16, 8), (1, 4, 16, 8)], 1 * 4 * 16 * 16 * 8),
    ("...ij,...jk->...ik", [(3, 5, 6), (3, 6, 7)], 3 * 5 * 6 * 7),
    ("...ij,jk->...ik", [(2, 3, 5, 6), (6, 7)], 2 * 3 * 5 * 6 * 7),   # ellipsis on one side
])
def test_einsum_work_is_one_mac_per_point_of_the_index_space(
        equation: str, shapes: list[tuple[int, ...]], macs: int) -> None:
    names = [f"in{i}" for i in range(len(shapes))]
    n = helper.make_node("Einsum", names, ["y"], name="e", equation=equation)
    m = model([n], [tensor(nm, F32, list(sh)) for nm, sh in zip(names, shapes, strict=True)],
              [tensor("y", F32, None)])
    (e,) = load_graph(m).nodes
    assert e.op_class == "matmul" and e.work_ops == 2 * macs


def test_views_cost_nothing_and_transpose_moves_bytes() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[1, 0]),
    ]
    m = model(nodes, [tensor("x", F32, [4, 6])], [tensor("t", F32, None)],
              [init("shape", np.array([3, 8], dtype=np.int64))])
    g = load_graph(m)
    reshape, transpose = g.nodes
    assert (reshape.work_ops, reshape.bytes_read, reshape.bytes_written) == (0, 0, 0)
    assert reshape.fused
    assert g.tensors["r"].shape == (3, 8)          # the shape initializer was read
    assert g.tensors["r"].stored_in == "x"         # a view shares its input's buffer
    assert (transpose.work_ops, transpose.bytes_read, transpose.bytes_written) == (0, 96, 96)
    lat = predict_latency(g, profile())
    assert lat.nodes[0].time_ms == 0.0
    assert lat.nodes[0].bound == "fused"
    assert lat.nodes[1].time_ms > 0


def test_shape_arithmetic_onnx_cannot_follow_is_folded() -> None:
    # torch's legacy exporter builds reshape targets as Shape -> Gather -> Div -> Cast ->
    # Unsqueeze -> Concat; onnx's data propagation stops at the Div.
    mk = helper.make_node
    nodes = [
        mk("Shape", ["x"], ["s"]),
        mk("Gather", ["s", "i0"], ["b"], axis=0), mk("Gather", ["s", "i1"], ["t"], axis=0),
        mk("Gather", ["s", "i2"], ["d"], axis=0),
        mk("Div", ["d", "heads"], ["dh"]), mk("Cast", ["dh"], ["dhc"], to=TensorProto.INT64),
        mk("Unsqueeze", ["b", "ax"], ["ub"]), mk("Unsqueeze", ["t", "ax"], ["ut"]),
        mk("Unsqueeze", ["dhc", "ax"], ["ud"]),
        mk("Concat", ["ub", "ut", "heads1", "ud"], ["shape"], axis=0),
        mk("Reshape", ["x", "shape"], ["r"]),                          # [1, 8, 4, 16]
        mk("Transpose", ["r"], ["q"], perm=[0, 2, 1, 3]),              # [1, 4, 8, 16]
        mk("Transpose", ["r"], ["k"], perm=[0, 2, 3, 1]),              # [1, 4, 16, 8]
        mk("MatMul", ["q", "k"], ["y"], name="scores"),                # [1, 4, 8, 8]
    ]
    i64 = np.int64
    m = model(nodes, [tensor("x", F32, ["batch", 8, 64])], [tensor("y", F32, None)],
              [init("i0", np.array(0, i64)), init("i1", np.array(1, i64)),
               init("i2", np.array(2, i64)), init("heads", np.array(4, i64)),
               init("heads1", np.array([4], i64)), init("ax", np.array([0], i64))])
    g = load_graph(m)
    assert g.unresolved == ()
    assert g.tensors["r"].shape == (1, 8, 4, 16)
    assert g.tensors["y"].shape == (1, 4, 8, 8)
    assert node(g.nodes, "scores").work_ops == 2 * 4 * 8 * 16 * 8


def test_unknown_op_is_charged_per_element_and_listed() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Frobnicate", ["r"], ["y"], name="odd", domain="custom.test")]
    m = model(nodes, [tensor("x", F32, [2, 8])], [tensor("y", F32, [2, 8])])
    m.opset_import.append(helper.make_opsetid("custom.test", 1))
    g = load_graph(m)
    assert g.unknown_ops == ("Frobnicate",)
    assert node(g.nodes, "odd").work_ops == 16
    assert not node(g.nodes, "odd").known
    assert "Frobnicate" in " ".join(emulate(g, profile()).notes)


def test_cumsum_is_one_add_per_element() -> None:
    """RoBERTa-style encoders compute position ids as a CumSum of the token mask; it was
    charged at the unknown-op rate and named in the notes as if the emulator could not cost it."""
    axis = init("axis", np.array(1, dtype=np.int64))
    m = model([helper.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum")],
              [tensor("x", TensorProto.INT64, [1, 64])], [tensor("y", TensorProto.INT64, None)],
              [axis])
    g = load_graph(m)
    assert g.unknown_ops == ()
    assert node(g.nodes, "cumsum").known and node(g.nodes, "cumsum").work_ops == 64


# --------------------------------------------------------------------------- dynamic dims


def test_dynamic_batch_is_fixed_to_one_and_can_be_overridden() -> None:
    m = conv_model(["batch", 3, 8, 8], [4, 3, 3, 3])
    g = load_graph(m)
    assert g.tensors["x"].shape == (1, 3, 8, 8)
    assert g.tensors["y"].shape == (1, 4, 6, 6)
    assert g.fixed_dims == ("x[0] 'batch' = 1",)
    assert g.unresolved == ()
    assert load_graph(m, dim_params={"batch": 4}).tensors["y"].shape == (4, 4, 6, 6)
    assert load_graph(m, input_shapes={"x": [2, 3, 8, 8]}).nodes[0].work_ops == \
        2 * (2 * 4 * 6 * 6) * (3 * 3 * 3)
    # The caller's model is not modified.
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_bad_input_shapes_are_rejected_with_names() -> None:
    m = conv_model(["batch", 3, 8, 8], [4, 3, 3, 3])
    with pytest.raises(InputError, match=r"unknown model input 'y'.*Known: x"):
        load_graph(m, input_shapes={"y": [1, 3, 8, 8]})
    with pytest.raises(InputError, match="rank 4"):
        load_graph(m, input_shapes={"x": [1, 3, 8]})
    with pytest.raises(InputError, match="fixed at 3"):
        load_graph(m, input_shapes={"x": [1, 5, 8, 8]})
    with pytest.raises(InputError, match=r"unknown dimension name 'bach'\. Did you mean 'batch'"):
        load_graph(m, dim_params={"bach": 2})


def test_missing_and_corrupt_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such model file"):
        load_graph(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model at all\xff" * 10)
    with pytest.raises(InputError, match=r"bad\.onnx"):
        load_graph(bad)
    with pytest.raises(InputError, match="is a directory"):
        load_graph(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="no IR version and no graph"):
        load_graph(empty)


def _two_nodes(first: tuple[str, str], second: tuple[str, str]) -> onnx.ModelProto:
    return model([helper.make_node("Relu", [first[0]], [first[1]], name="a"),
                  helper.make_node("Sigmoid", [second[0]], [second[1]], name="b")],
                 [tensor("x", F32, [4])], [tensor("y", F32, None)])


@pytest.mark.parametrize(("graph", "message"), [
    (_two_nodes(("x", "h"), ("nope", "y")), "node b .Sigmoid. reads 'nope', which no node"),
    (_two_nodes(("x", "y"), ("x", "y")), "node b .Sigmoid. writes 'y', which node a"),
    (_two_nodes(("y", "h"), ("h", "y")), "cycle"),
    (_two_nodes(("x", "h"), ("h", "z")), "graph output 'y' is made by no node"),
])
def test_graphs_no_runtime_would_load_are_input_errors(graph: onnx.ModelProto,
                                                       message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_graph(graph)


# --------------------------------------------------------------------------- precision


def _fp32_conv_mlp(path: Path) -> Path:
    """x[1,3,8,8] -> Conv(4x3x3x3, pad 1) -> Relu -> Flatten -> MatMul(256x10) -> y."""
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "W2"], ["y"], name="mm")]
    m = model(nodes, [tensor("x", F32, ["N", 3, 8, 8])], [tensor("y", F32, ["N", 10])],
              [init("W", rand(4, 3, 3, 3)), init("B", rand(4)), init("W2", rand(256, 10))])
    onnx.save(m, path)
    return path


def test_qdq_model_from_quantize_static_counts_int8_work(tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": rand(1, 3, 8, 8)}, {"x": rand(1, 3, 8, 8) * 2}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    src = _fp32_conv_mlp(tmp_path / "fp32.onnx")
    dst = tmp_path / "qdq.onnx"
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ)
    g = load_graph(dst)
    ops = [n.op_type for n in g.nodes]
    assert "DequantizeLinear" in ops and "QuantizeLinear" in ops      # really a QDQ graph
    conv, mm = (next(n for n in g.nodes if n.op_type == op) for op in ("Conv", "MatMul"))
    assert conv.precision == "int8" and mm.precision == "int8"
    assert all(n.fused and n.precision == "int8" for n in g.nodes
               if n.op_type == "QuantizeLinear")
    # Weights are read at their stored size: int8 W (108 B) plus the int32 bias (16 B).
    assert conv.weight_bytes == 4 * 3 * 3 * 3 + 4 * 4
    assert mm.weight_bytes == 256 * 10
    # The float model's MACs, less the Relu the quantizer fused into the Conv (4*8*8 ops);
    # Q/DQ nodes are not part of the total.
    macs = 2 * (4 * 8 * 8 * 27) + 2 * 256 * 10
    assert "Relu" not in ops
    assert g.work_ops == macs
    assert load_graph(src).work_ops == macs + 4 * 8 * 8


def test_dynamic_quantized_model_counts_integer_ops_int8(tmp_path: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    src = _fp32_conv_mlp(tmp_path / "fp32.onnx")
    dst = tmp_path / "dyn.onnx"
    quantize_dynamic(str(src), str(dst))
    g = load_graph(dst)
    by_op = {n.op_type: n for n in g.nodes}
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= set(by_op)
    assert by_op["ConvInteger"].precision == "int8"
    assert by_op["MatMulInteger"].precision == "int8"
    assert by_op["DynamicQuantizeLinear"].precision == "int8"
    assert by_op["ConvInteger"].work_ops == 2 * (4 * 8 * 8 * 27)
    assert by_op["Relu"].precision == "fp32"


def test_fp16_and_int4_precisions() -> None:
    # fp16: an Add on float16 tensors.
    m16 = model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                [tensor("a", F16, [4]), tensor("b", F16, [4])], [tensor("y", F16, [4])])
    assert load_graph(m16).nodes[0].precision == "fp16"
    # int4: MatMulNBits (ORT contrib; onnx cannot infer its shape, the emulator does).
    # K=64 in blocks of 32 -> B is [N=32, 2 blocks, 16 bytes] of packed 4-bit weights.
    nbits = helper.make_node("MatMulNBits", ["a", "B", "S"], ["y"], name="mmnb",
                             domain="com.microsoft", K=64, N=32, bits=4, block_size=32)
    mnb = model([nbits], [tensor("a", F32, [1, 64])], [tensor("y", F32, None)],
                [init("B", np.zeros((32, 2, 16), np.uint8)), init("S", np.ones(64, np.float32))],
                ms=True)
    g = load_graph(mnb)
    assert g.tensors["y"].shape == (1, 32)
    assert g.nodes[0].precision == "int4"
    assert g.nodes[0].work_ops == 2 * 1 * 64 * 32
    assert g.nodes[0].weight_bytes == 32 * 2 * 16 + 64 * 4    # packed weights + scales
    # int4 through a 4-bit DequantizeLinear feeding a MatMul (weight-only, opset 21).
    w4 = helper.make_tensor("W4", TensorProto.INT4, [64, 32], np.zeros(64 * 32, np.int8))
    dq = helper.make_node("DequantizeLinear", ["W4", "s"], ["w"], name="dq")
    mm = helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")
    m4 = model([dq, mm], [tensor("a", F32, [1, 64])], [tensor("y", F32, None)],
               [w4, init("s", np.array(0.1, np.float32))], opset=21)
    g4 = load_graph(m4)
    assert node(g4.nodes, "mm").precision == "int4"
    assert node(g4.nodes, "dq").precision == "int4" and node(g4.nodes, "dq").fused
    assert g4.tensors["W4"].nbytes == 64 * 32 // 2                # packed two per byte
    assert node(g4.nodes, "mm").weight_bytes == 64 * 32 // 2


# --------------------------------------------------------------------------- roofline


def test_roofline_picks_compute_or_memory_bound_by_hand_numbers() -> None:
    # One CPU: effective 100 GOPS * 0.5 = 50 GOPS; 10 GB/s; 5 us per node.
    prof = profile([unit("cpu", "cpu", ["*"], {"fp32": 100.0}, efficiency=0.5,
                         dispatch_us=5.0)], bandwidth_gb_s=10.0)
    # Compute-bound: [1,256,256] @ [256,256].
    #   work  = 2*256*256*256 = 33_554_432 ops -> / 50e9 ops/s = 0.67108864 ms
    #   bytes = 3 * 256*256*4 = 786_432 B     -> / 10e9 B/s   = 0.0786432 ms
    mm = model([helper.make_node("MatMul", ["a", "B"], ["y"], name="mm")],
               [tensor("a", F32, [1, 256, 256])], [tensor("y", F32, None)],
               [init("B", rand(256, 256))])
    c = predict_latency(mm, prof).nodes[0]
    assert c.bound == "compute"
    assert c.time_ms == pytest.approx(0.67108864 + 0.005)
    assert c.work_gops == pytest.approx(0.033554432)
    assert c.bytes_mb == pytest.approx(786_432 / BYTES_PER_MB)
    # Memory-bound: Add of two [262144] float32 vectors.
    #   work  = 262_144 ops            -> 0.00524288 ms
    #   bytes = 3 * 1_048_576 B        -> 0.3145728 ms
    add = model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                [tensor("a", F32, [1 << 18]), tensor("b", F32, [1 << 18])],
                [tensor("y", F32, None)])
    lat = predict_latency(add, prof)
    assert lat.nodes[0].bound == "memory"
    assert lat.nodes[0].time_ms == pytest.approx(0.3145728 + 0.005)
    assert lat.latency_ms == pytest.approx(0.3145728 + 0.005)
    assert lat.unit_ms["cpu"] == pytest.approx(lat.latency_ms)


# --------------------------------------------------------------------------- placement


def _qdq_conv_pool() -> onnx.ModelProto:
    """A hand-built QDQ graph: Q/DQ -> Conv -> Q/DQ -> MaxPool -> Q/DQ, all int8 units."""
    q = helper.make_node
    nodes = [
        q("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
        q("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        q("DequantizeLinear", ["Wq", "s", "z"], ["wd"], name="dq_w"),
        q("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        q("QuantizeLinear", ["c", "s", "z"], ["cq"], name="q_c"),
        q("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="dq_c"),
        q("MaxPool", ["cd"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        q("QuantizeLinear", ["p", "s", "z"], ["pq"], name="q_p"),
        q("DequantizeLinear", ["pq", "s", "z"], ["y"], name="dq_p"),
    ]
    return model(nodes, [tensor("x", F32, [1, 8, 16, 16])], [tensor("y", F32, None)],
                 [init("Wq", np.ones((8, 8, 3, 3), np.int8)),
                  init("s", np.array(0.1, np.float32)), init("z", np.array(0, np.int8))])


def test_placement_puts_int8_conv_on_the_npu_and_falls_back_with_a_reason() -> None:
    npu = unit("npu", "npu", ["Conv"], {"int8": 1000.0, "fp16": 500.0}, dispatch_us=1.0)
    g = load_graph(_qdq_conv_pool())
    assert node(g.nodes, "pool").precision == "int8"
    # CPU without int8: MaxPool (int8, not on the npu) falls back to the CPU at fp32.
    cpu32 = unit("cpu", "cpu", ["*"], {"fp32": 50.0}, dispatch_us=2.0)
    lat = predict_latency(g, profile([npu, cpu32]))
    conv, pool = node(lat.nodes, "conv"), node(lat.nodes, "pool")
    assert (conv.unit, conv.run_precision, conv.fallback) == ("npu", "int8", None)
    assert (pool.unit, pool.precision, pool.run_precision) == ("cpu", "int8", "fp32")
    assert pool.fallback is not None
    assert "npu op: does not list MaxPool" in pool.fallback
    assert "cpu precision: has no int8" in pool.fallback
    assert lat.fallbacks == (f"pool (MaxPool): {pool.fallback}",)
    assert all(c.unit is None and c.time_ms == 0 for c in lat.nodes
               if c.op_type in ("QuantizeLinear", "DequantizeLinear"))
    assert lat.latency_ms == pytest.approx(conv.time_ms + pool.time_ms)
    # CPU with int8: MaxPool runs there at int8; the npu would have been faster (its dispatch
    # alone is shorter), so the lost speed is recorded.
    cpu8 = unit("cpu", "cpu", ["*"], {"fp32": 50.0, "int8": 100.0}, dispatch_us=2.0)
    pool8 = node(predict_latency(g, profile([npu, cpu8])).nodes, "pool")
    assert (pool8.unit, pool8.run_precision) == ("cpu", "int8")
    assert pool8.fallback is not None and "npu" in pool8.fallback
    assert "does not list MaxPool" in pool8.fallback
    # Forcing the cpu puts the conv there too; an unknown unit name is bad input.
    forced = predict_latency(g, profile([npu, cpu8]), unit="cpu")
    assert node(forced.nodes, "conv").unit == "cpu"
    with pytest.raises(InputError, match="unknown compute unit 'nup'"):
        predict_latency(g, profile([npu, cpu8]), unit="nup")


def test_placement_prefers_the_faster_unit() -> None:
    slow = unit("cpu", "cpu", ["*"], {"fp32": 10.0}, dispatch_us=1.0)
    fast = unit("gpu", "gpu", ["MatMul"], {"fp32": 1000.0}, dispatch_us=1.0)
    mm = model([helper.make_node("MatMul", ["a", "B"], ["y"], name="mm")],
               [tensor("a", F32, [64, 64])], [tensor("y", F32, None)], [init("B", rand(64, 64))])
    assert predict_latency(mm, profile([slow, fast])).nodes[0].unit == "gpu"


def test_fallback_ladder_covers_every_precision() -> None:
    assert set(FALLBACK_LADDER) == set(PRECISIONS)


# --------------------------------------------------------------------------- memory


def _cast(src: str, dst: str, to: int, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], name=name, to=to)


def test_liveness_peak_on_a_chain() -> None:
    # x f32[1000] 4000 B -> A -> t1 f16 2000 B -> B -> t2 f64 8000 B -> C -> y int8 1000 B.
    # Live per step: A: x+t1 = 6000; B: t1+t2 = 10000; C: t2+y = 9000.
    m = model([_cast("x", "t1", F16, "A"), _cast("t1", "t2", F64, "B"),
               _cast("t2", "y", I8, "C")], [tensor("x", F32, [1000])], [tensor("y", I8, None)])
    g = load_graph(m)
    assert live_bytes_per_step(g) == [6000, 10000, 9000]
    mem = predict_memory(g, profile())
    assert mem.peak_activations_mb * BYTES_PER_MB == pytest.approx(10000)
    assert mem.peak_node == "B"


def test_liveness_peak_on_a_branch_keeps_both_arms_live() -> None:
    # x f32[1000] -> A Sigmoid t1 (4000) -> B Cast t2 f16 (2000) -> D Cast t4 f64 (8000)
    #                                    -> C Cast t3 f64 (8000) -------------> E MatMul -> y f64
    # Live per step: A: x+t1 = 8000; B: t1+t2 = 6000; C: t1+t2+t3 = 14000;
    #                D: t2+t3+t4 = 18000 (t3 waits for E); E: t3+t4+y = 16008.
    m = model([helper.make_node("Sigmoid", ["x"], ["t1"], name="A"),
               _cast("t1", "t2", F16, "B"), _cast("t1", "t3", F64, "C"),
               _cast("t2", "t4", F64, "D"),
               helper.make_node("MatMul", ["t3", "t4"], ["y"], name="E")],
              [tensor("x", F32, [1000])], [tensor("y", F64, None)])
    assert live_bytes_per_step(load_graph(m)) == [8000, 6000, 14000, 18000, 16008]
    mem = predict_memory(m, profile())
    assert mem.peak_activations_mb * BYTES_PER_MB == pytest.approx(18000)
    assert mem.peak_node == "D"


def test_qdq_activations_are_held_at_int8() -> None:
    # On a device the float side of Q/DQ is folded away. Buffers (bytes, live steps):
    #   x  f32 input [1,8,16,16]   8192  step 0 (q_x)
    #   xq int8                    2048  steps 0-3 (read through dq_x by the conv)
    #   c  int8 (only quantized)   2048  steps 3-6 (written by the conv at int8)
    #   p  int8 [1,8,8,8]           512  steps 6-8
    #   y  f32 output               2048  step 8 (the app gets floats: it is real)
    # Live per step: 10240, 2048, 2048, 4096, 2048, 2048, 2560, 512, 2560.
    g = load_graph(_qdq_conv_pool())
    assert live_bytes_per_step(g) == [10240, 2048, 2048, 4096, 2048, 2048, 2560, 512, 2560]
    assert g.tensors["c"].device_nbytes == 2048
    assert g.tensors["cq"].stored_in == g.tensors["cd"].stored_in == "c"
    assert g.tensors["xd"].stored_in == "xq" and g.tensors["xd"].device_nbytes == 0
    assert g.tensors["y"].device_nbytes == 2048
    mem = predict_memory(g, profile())
    assert mem.peak_activations_mb * BYTES_PER_MB == pytest.approx(10240)
    assert mem.peak_node == "q_x"
    # The conv reads int8 activations and weights and writes int8.
    conv = node(g.nodes, "conv")
    assert (conv.bytes_read, conv.bytes_written) == (2048 + 8 * 8 * 9, 2048)
    # Weights: Wq int8 576 B + scale 4 B + zero point 1 B; the DQ'd float copy is not a weight.
    assert mem.weights_mb * BYTES_PER_MB == pytest.approx(8 * 8 * 9 + 4 + 1)


def test_fits_flips_to_oom_when_the_cap_drops_below_the_footprint() -> None:
    # Weights: 512x512 f32 = 1 MiB. Activations while the MatMul runs: a [1,512] + y [1,512]
    # = 4096 B. Runtime overhead: 10 MiB.
    mm = model([helper.make_node("MatMul", ["a", "W"], ["y"], name="mm")],
               [tensor("a", F32, [1, 512])], [tensor("y", F32, None)], [init("W", rand(512, 512))])
    g = load_graph(mm)
    footprint = 1.0 + 4096 / BYTES_PER_MB + 10.0
    ok = predict_memory(g, profile(app_cap_mb=12.0, overhead_mb=10.0))
    assert ok.weights_mb == pytest.approx(1.0)
    assert ok.peak_memory_mb == pytest.approx(footprint)
    assert ok.fits and ok.headroom_mb == pytest.approx(12.0 - footprint)
    oom = predict_memory(g, profile(app_cap_mb=11.0, overhead_mb=10.0))
    assert not oom.fits and oom.headroom_mb == pytest.approx(11.0 - footprint) and \
        oom.headroom_mb < 0
    assert not emulate(g, profile(app_cap_mb=11.0, overhead_mb=10.0)).fits


# --------------------------------------------------------------------------- files, emulate


def test_model_with_external_data_loads(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "W"], ["y"], name="mm")]
    m = model(nodes, [tensor("x", F32, ["N", 4, 32])], [tensor("y", F32, None)],
              [init("shape", np.array([-1, 128], np.int64)), init("W", rand(128, 64))])
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    # size_threshold=0 moves even the small shape tensor out, so its value must be read back.
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.weights", size_threshold=0)
    assert (path.parent / "model.weights").stat().st_size >= 128 * 64 * 4
    g = load_graph(path)
    assert g.tensors["y"].shape == (1, 64)
    assert g.unresolved == ()
    assert node(g.nodes, "mm").work_ops == 2 * 128 * 64
    em = emulate(path, profile())
    assert em.memory.weights_mb * BYTES_PER_MB == pytest.approx(128 * 64 * 4 + 2 * 8)
    assert em.latency_ms == pytest.approx(sum(n.time_ms for n in em.latency.nodes))
    assert em.latency_ms > 0
    assert em.device == "testdev"
    assert "dynamic dimension x[0] 'N' = 1" in em.notes
    assert em.uncalibrated   # every figure in the test profile is "assumed"
    summary = json.loads(json.dumps(em.summary()))   # what a result row stores
    assert summary["latency_ms"] == pytest.approx(em.latency_ms)
    assert summary["fits"] is True
    assert summary["peak_memory_mb"] == pytest.approx(em.peak_memory_mb)
    assert summary["app_cap_mb"] == 1024.0


def test_importing_the_emulator_pulls_in_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys, harness.emulator; "
            "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------- issue 3 rules


def _v2_unit(name: str, kind: str, ops: Sequence[str], peaks: dict[str, float],
             **extra: Any) -> dict[str, Any]:
    return unit(name, kind, ops, peaks, dispatch_us=0.0, **extra)


def _v2_profile(units: Sequence[dict[str, Any]], *, bandwidth_gb_s: float = 1e6) -> DeviceProfile:
    return profile(units, bandwidth_gb_s=bandwidth_gb_s, overhead_mb=0.0)


def _mm_chain(n: int = 2, size: int = 64) -> onnx.ModelProto:
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"], name=f"mm{i}"))
        inits.append(init(f"W{i}", rand(size, size)))
        prev = f"h{i}"
    return model(nodes, [tensor("x", F32, [size, size])], [tensor(prev, F32, None)], inits)


def test_transfers_between_units_are_charged_and_steer_placement() -> None:
    # 64x64x64 matmul = 524288 ops. cpu: 1 GOPS*0.5 -> 1.048576 ms; npu: 100x faster.
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    npu = _v2_unit("npu", "npu", ["MatMul"], {"fp32": 100.0}, handoff_us=500.0)
    lat = predict_latency(_mm_chain(2), _v2_profile([cpu, npu]))
    mm0, mm1 = node(lat.nodes, "mm0"), node(lat.nodes, "mm1")
    # x arrives on the cpu: mm0 pays the 0.5 ms hand-off (plus 16 KiB over "infinite" DRAM)
    # and is still faster on the npu (0.0105 + 0.5 < 1.05); mm1 then stays there for free.
    assert (mm0.unit, mm1.unit) == ("npu", "npu")
    assert mm0.transfer_ms == pytest.approx(0.5, rel=1e-3) and mm1.transfer_ms == 0.0
    assert lat.output_transfer_ms == pytest.approx(0.5, rel=1e-3)
    assert lat.latency_ms == pytest.approx(mm0.time_ms + mm1.time_ms + 0.5, rel=1e-6)
    # A hand-off dearer than the whole compute keeps the work on the cpu.
    npu_far = _v2_unit("npu", "npu", ["MatMul"], {"fp32": 100.0}, handoff_us=5000.0)
    far = predict_latency(_mm_chain(2), _v2_profile([cpu, npu_far]))
    assert {n.unit for n in far.nodes} == {"cpu"} and far.output_transfer_ms == 0.0


def test_constants_folded_from_a_shape_need_no_transfer() -> None:
    """A shape read off a tensor the NPU made is a compile-time constant: a CPU node that uses
    it (here an Expand the NPU does not list) pays no hand-off for it, as for a weight."""
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    npu = _v2_unit("npu", "npu", ["MatMul"], {"fp32": 1e6}, handoff_us=10.0)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"], name="mm"),
             helper.make_node("Shape", ["a"], ["s"], name="shape"),
             helper.make_node("Expand", ["b", "s"], ["y"], name="expand")]
    m = model(nodes, [tensor("x", F32, [64, 64]), tensor("b", F32, [1, 64])],
              [tensor("y", F32, None), tensor("a", F32, None)], [init("W", rand(64, 64))])
    lat = predict_latency(m, _v2_profile([cpu, npu]), unit="auto")
    assert node(lat.nodes, "mm").unit == "npu"
    expand = node(lat.nodes, "expand")
    assert expand.unit == "cpu" and expand.transfer_ms == 0.0


def test_a_tensor_crosses_to_a_unit_once_however_many_nodes_read_it() -> None:
    # x (on the cpu, as every input) is read by two matmuls on the npu: one hand-off, not two
    # (a KV cache read by one Slice per head would otherwise be copied once per head).
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    npu = _v2_unit("npu", "npu", ["MatMul", "Add"], {"fp32": 100.0}, handoff_us=500.0)
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["a"], name="mm0"),
             helper.make_node("MatMul", ["x", "W1"], ["b"], name="mm1"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    m = model(nodes, [tensor("x", F32, [64, 64])], [tensor("y", F32, None)],
              [init("W0", rand(64, 64)), init("W1", rand(64, 64))])
    lat = predict_latency(m, _v2_profile([cpu, npu]), unit="npu")
    mm0, mm1 = node(lat.nodes, "mm0"), node(lat.nodes, "mm1")
    assert (mm0.unit, mm1.unit) == ("npu", "npu")
    assert mm0.transfer_ms == pytest.approx(0.5, rel=1e-3) and mm1.transfer_ms == 0.0


def test_static_shape_units_refuse_unknown_shapes_with_a_reason() -> None:
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    npu = _v2_unit("npu", "npu", ["*"], {"fp32": 1000.0}, static_shapes=True)
    # An op whose output shape onnx cannot infer (custom domain) is left to the cpu.
    odd = helper.make_node("Mystery", ["x"], ["y"], name="odd", domain="custom")
    m = model([odd], [tensor("x", F32, [4, 4])], [tensor("y", F32, None)])
    m.opset_import.append(helper.make_opsetid("custom", 1))
    lat = predict_latency(m, _v2_profile([cpu, npu]))
    (n,) = lat.nodes
    assert n.unit == "cpu" and n.fallback is not None and "shape:" in n.fallback


def test_arithmetic_on_constants_is_folded_not_run() -> None:
    """TF-style "same" padding (MobileNetV2 in transformers) computes its pads from the input's
    shape: Shape -> Slice -> Sub -> Max -> Concat -> Cast -> Pad. With static shapes every node
    before the Pad is on constants; a compiler evaluates them once. Run as int64 nodes ("fp32":
    the NPU has none) they sent an fp16 MobileNetV2 to the CPU and back 55 times (3.9 ms for
    0.34)."""
    from harness.profiles import load_profile

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"], name="slice"),
        helper.make_node("Sub", ["ten", "hw"], ["short"], name="sub"),
        helper.make_node("Max", ["short", "zero"], ["need"], name="max"),
        helper.make_node("Concat", ["zeros", "need"], ["pads"], name="concat", axis=0),
        helper.make_node("Cast", ["pads"], ["pads64"], name="cast", to=TensorProto.INT64),
        helper.make_node("Pad", ["x", "pads64"], ["y"], name="pad"),
    ]
    inits = [init("two", np.array([2], dtype=np.int64)), init("four", np.array([4], np.int64)),
             init("ten", np.array([10, 10], np.int64)), init("zero", np.array([0], np.int64)),
             init("zeros", np.zeros(6, np.int64))]   # pads: begins of 4 axes, ends of N, C
    m = model(nodes, [tensor("x", F16, [1, 3, 8, 8])], [tensor("y", F16, None)], inits)
    g = load_graph(m)
    assert g.tensors["y"].shape == (1, 3, 10, 10)
    folded = ["shape", "slice", "sub", "max", "concat", "cast"]
    assert [n.name for n in g.nodes if n.fused] == folded
    assert all(g.tensors[t].kind == "weight" for t in ("hw", "need", "pads64"))
    lat = predict_latency(g, load_profile("snapdragon8gen3"), unit="npu")
    assert lat.fallbacks == ()
    assert [n.unit for n in lat.nodes if n.bound != "fused"] == ["npu"]


def test_nodes_on_inputs_or_random_are_not_folded() -> None:
    """Only what is constant whatever the inputs is folded: not arithmetic on an input's
    values, not a random op."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("RandomNormalLike", ["x"], ["r"], name="random"),
             helper.make_node("Add", ["x", "one"], ["y"], name="add"),
             helper.make_node("Expand", ["y", "s"], ["z"], name="expand")]
    m = model(nodes, [tensor("x", F32, [2, 4])], [tensor("z", F32, None),
                                                  tensor("r", F32, None)],
              [init("one", np.ones((1,), np.float32))])
    g = load_graph(m)
    assert [n.name for n in g.nodes if n.fused] == ["shape"]


def test_integer_index_arithmetic_runs_on_an_npu_without_fp32() -> None:
    """RoBERTa's position ids: Equal -> Not -> Cast -> CumSum -> Add on the int64 token ids,
    then an embedding Gather. Integer-only nodes were precision fp32, which the 8 Gen 3 NPU
    lacks, so each went to the CPU and back in an fp16 encoder; they need no float rate."""
    from harness.profiles import load_profile

    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("Equal", ["ids", "pad"], ["is_pad"], name="equal"),
        helper.make_node("Not", ["is_pad"], ["keep"], name="not"),
        helper.make_node("Cast", ["keep"], ["keep32"], name="cast", to=TensorProto.INT32),
        helper.make_node("CumSum", ["keep32", "axis"], ["count"], name="cumsum"),
        helper.make_node("Cast", ["count"], ["count64"], name="cast64", to=i64),
        helper.make_node("Add", ["count64", "pad"], ["positions"], name="add"),
        helper.make_node("Gather", ["table", "positions"], ["y"], name="gather"),
    ]
    inits = [init("pad", np.array([1], np.int64)), init("axis", np.array(1, np.int64)),
             init("table", np.zeros((80, 16), np.float16))]
    g = load_graph(model(nodes, [tensor("ids", i64, [1, 64])], [tensor("y", F16, None)], inits))
    gen3 = load_profile("snapdragon8gen3")
    lat = predict_latency(g, gen3, unit="npu")
    assert lat.fallbacks == ()
    assert {n.unit for n in lat.nodes} == {"npu"}
    integer = [n.name for n in g.nodes if n.integer]
    assert integer == ["equal", "not", "cast", "cumsum", "cast64", "add"]
    assert {n.run_precision for n in lat.nodes if n.name in integer} == {"int8"}
    # A unit that has the node's own precision keeps it (the CPU's fp32 rate).
    on_cpu = predict_latency(g, gen3, unit="cpu")
    assert {n.run_precision for n in on_cpu.nodes if n.name in integer} == {"fp32"}


def test_isnan_runs_on_the_qnn_npu() -> None:
    """torch's legacy exporter writes scaled_dot_product_attention with a boolean mask (as
    transformers' encoders pass it) with one IsNaN per attention layer: fully masked rows come
    out of the softmax as NaN and are set to 0. The QNN op set lacked IsNaN, so each such layer
    left the NPU for the CPU and came back."""
    from harness.profiles import load_profile

    m = model([helper.make_node("IsNaN", ["x"], ["y"], name="isnan")],
              [tensor("x", F32, [1, 2, 64, 64])], [tensor("y", TensorProto.BOOL, None)])
    lat = predict_latency(m, load_profile("snapdragon8gen3"), unit="npu", precision="fp16")
    assert lat.fallbacks == ()
    assert [n.unit for n in lat.nodes] == ["npu"]


def test_two_four_sparsity_halves_work_only_on_units_that_exploit_it() -> None:
    m = _mm_chain(1, size=128)
    dense = predict_latency(m, _v2_profile([_v2_unit("gpu", "gpu", ["*"], {"fp32": 10.0},
                                                     sparse_2_4=True)]))
    meta = m.metadata_props.add()
    meta.key, meta.value = "harness.sparsity_pattern", "2:4"
    credited = predict_latency(m, _v2_profile([_v2_unit("gpu", "gpu", ["*"], {"fp32": 10.0},
                                                        sparse_2_4=True)]))
    plain = predict_latency(m, _v2_profile([_v2_unit("gpu", "gpu", ["*"], {"fp32": 10.0})]))
    assert credited.sparsity_credit and not plain.sparsity_credit
    assert credited.work_gops == pytest.approx(dense.work_gops / 2)
    assert credited.latency_ms == pytest.approx(dense.latency_ms / 2, rel=1e-6)
    assert plain.latency_ms == pytest.approx(dense.latency_ms)


def test_op_class_efficiency_applies_to_depthwise_convs() -> None:
    dw = conv_model([1, 8, 16, 16], [8, 1, 3, 3], group=8)
    assert load_graph(dw).nodes[0].op_class == "depthwise"
    plain = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    slow_dw = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0},
                       op_efficiency={"depthwise": fig(0.05)})
    a = predict_latency(dw, _v2_profile([plain])).nodes[0]
    b = predict_latency(dw, _v2_profile([slow_dw])).nodes[0]
    assert b.compute_ms == pytest.approx(a.compute_ms * 0.5 / 0.05)


def test_grouped_convs_are_dense_convs_with_their_work_divided_by_the_groups() -> None:
    # RegNet/ResNeXt-style: 64 -> 128 channels in 8 groups (8 input channels per group), 3x3,
    # padded: out [1,128,28,28], each output element 8*3*3 = 72 MACs.
    macs = 128 * 28 * 28 * 8 * 3 * 3
    assert macs == 7_225_344
    grouped = conv_model([1, 64, 28, 28], [128, 8, 3, 3], group=8, pads=[1, 1, 1, 1])
    (n,) = load_graph(grouped).nodes
    assert n.op_class == "conv" and n.work_ops == 2 * macs
    # Costed at the dense conv's share of peak, not the depthwise one: 1 GOPS x 0.5.
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0}, op_efficiency={
        "conv": fig(0.5), "depthwise": fig(0.05)})
    (c,) = predict_latency(grouped, _v2_profile([cpu])).nodes
    assert c.compute_ms == pytest.approx(2 * macs / 0.5e9 * 1e3)
    # One input channel per group is depthwise, with or without a channel multiplier.
    for w, group in (([64, 1, 3, 3], 64), ([128, 1, 3, 3], 64)):
        dw = load_graph(conv_model([1, 64, 28, 28], w, group=group, pads=[1, 1, 1, 1]))
        assert dw.nodes[0].op_class == "depthwise"
    # ConvTranspose: W [Cin, Cout/groups, k]; 64 inputs in 8 groups = 8 per group -> conv;
    # 64 groups -> depthwise.
    for w, group, cls in (([64, 16, 2, 2], 8, "conv"), ([64, 1, 2, 2], 64, "depthwise")):
        t = helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="up", group=group,
                             strides=[2, 2])
        m = model([t], [tensor("x", F32, [1, 64, 14, 14])], [tensor("y", F32, None)],
                  [init("W", rand(*w))])
        assert load_graph(m).nodes[0].op_class == cls


def test_what_if_precision_costs_an_fp32_graph_at_another_precision() -> None:
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0, "fp16": 2.0, "int8": 4.0})
    prof = _v2_profile([cpu], bandwidth_gb_s=1.0)
    m = _mm_chain(2, size=64)
    fp32 = emulate(m, prof)
    int8 = emulate(m, prof, precision="int8")
    assert {n.precision for n in int8.latency.nodes} == {"int8"}
    assert int8.latency.nodes[0].compute_ms == pytest.approx(
        fp32.latency.nodes[0].compute_ms / 4)
    assert int8.latency.bytes_mb == pytest.approx(fp32.latency.bytes_mb / 4)
    assert int8.memory.weights_mb == pytest.approx(fp32.memory.weights_mb / 4)
    # int4 is weight-only: 4-bit weights (an 8th), 16-bit activations (half); the cpu has no
    # int4 and runs it at int8.
    int4 = emulate(m, prof, precision="int4")
    assert int4.memory.weights_mb == pytest.approx(fp32.memory.weights_mb / 8)
    assert int4.memory.peak_activations_mb == pytest.approx(
        fp32.memory.peak_activations_mb / 2)
    assert {n.run_precision for n in int4.latency.nodes} == {"int8"}
    # w8a16: 8-bit weights (a quarter), 16-bit activations, arithmetic at the fp16 rate
    w8a16 = emulate(m, prof, precision="w8a16")
    fp16 = emulate(m, prof, precision="fp16")
    assert w8a16.memory.weights_mb == pytest.approx(fp32.memory.weights_mb / 4)
    assert w8a16.memory.peak_activations_mb == pytest.approx(fp16.memory.peak_activations_mb)
    assert {n.run_precision for n in w8a16.latency.nodes} == {"fp16"}
    assert w8a16.latency.nodes[0].compute_ms == pytest.approx(fp16.latency.nodes[0].compute_ms)
    with pytest.raises(InputError, match="precision"):
        emulate(m, prof, precision="int3")


def test_energy_is_ops_times_energy_per_op_plus_dram_bytes_plus_idle() -> None:
    # cpu: 1 GOPS peak * 0.5 efficiency, 1 W active -> 2000 pJ per op (derived).
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    prof = _v2_profile([cpu], bandwidth_gb_s=1.0)
    assert prof.units[0].energy_pj_per_op("fp32").value == pytest.approx(2000.0)
    lat = emulate(_mm_chain(1, size=64), prof).latency
    (n,) = lat.nodes
    ops, nbytes = 2 * 64 ** 3, 3 * 64 * 64 * 4
    assert n.compute_energy_mj == pytest.approx(ops * 2000e-9)
    assert n.memory_energy_mj == pytest.approx(nbytes * 10e-9)
    assert lat.energy_mj == pytest.approx(ops * 2000e-9 + nbytes * 10e-9 + 0.5 * lat.latency_ms)
    # Throttled: compute time stretches by 1/f, energy per op shrinks by f^2.
    assert lat.latency_at(0.5) == pytest.approx(
        max(n.compute_ms / 0.5, n.memory_ms) + n.overhead_ms / 0.5)
    assert lat.dynamic_energy_mj_at(0.5) == pytest.approx(
        n.compute_energy_mj * 0.25 + n.memory_energy_mj)


# --------------------------------------------------------------------- shapes that do not give up


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))


def test_mask_arithmetic_onnx_cannot_follow_is_inferred_by_onnx_runtime() -> None:
    # Hugging Face's embeddings build token_type_ids as Expand(buffer, Where(Equal(shape,
    # ConstantOfShape(..) * -1), ..)): onnx's data propagation stops at ConstantOfShape, so
    # Expand, Gather, Add and the MatMul behind them come out unknown without ORT's pass.
    i64 = np.int64
    nodes = [
        _const("shp", np.array([1, 128], dtype=i64)),
        _const("rank", np.array([2], dtype=i64)),
        helper.make_node("ConstantOfShape", ["rank"], ["ones"],
                         value=numpy_helper.from_array(np.array([1], dtype=i64))),
        _const("neg", np.array(-1, dtype=i64)),
        helper.make_node("Mul", ["ones", "neg"], ["m"]),
        helper.make_node("Equal", ["shp", "m"], ["eq"]),
        helper.make_node("Where", ["eq", "ones", "shp"], ["target"]),
        _const("zero", np.zeros((1, 1), dtype=i64)),
        helper.make_node("Expand", ["zero", "target"], ["ids"]),
        helper.make_node("Gather", ["E", "ids"], ["emb"]),
        helper.make_node("Add", ["x", "emb"], ["h"]),
        helper.make_node("MatMul", ["h", "W"], ["y"], name="mm"),
    ]
    m = model(nodes, [tensor("x", F32, [1, 128, 64])], [tensor("y", F32, None)],
              [init("E", rand(2, 64)), init("W", rand(64, 64))])
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    by_onnx = {v.name: v for v in inferred.graph.value_info}
    assert "ids" not in by_onnx or any(
        not d.HasField("dim_value") for d in by_onnx["ids"].type.tensor_type.shape.dim)
    g = load_graph(m)
    assert g.unresolved == ()
    mm = node(g.nodes, "mm")
    assert mm.shape_known and g.tensors["y"].shape == (1, 128, 64)
    assert mm.work_ops == 2 * 128 * 64 * 64


def _npu_profile() -> DeviceProfile:
    cpu = _v2_unit("cpu", "cpu", ["*"], {"fp32": 1.0})
    npu = _v2_unit("npu", "npu", ["*"], {"fp32": 1000.0}, static_shapes=True)
    return _v2_profile([cpu, npu])


def test_a_shape_that_depends_on_data_says_so_in_the_breakdown() -> None:
    # NonZero's count is only known at run time: the MatMul behind it keeps an unknown shape,
    # falls back for it, and both the fallback and the breakdown name the tensor and the cause.
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
             helper.make_node("Cast", ["nz"], ["nzf"], to=F32, name="cast"),
             helper.make_node("MatMul", ["nzf", "W"], ["y"], name="mm")]
    m = model(nodes, [tensor("x", F32, [4, 4])], [tensor("y", F32, None)],
              [init("W", rand(16, 8))])
    g = load_graph(m)
    assert "nz" in g.unresolved and "run time" in g.unresolved_why["nz"]
    assert "'nz'" in g.unresolved_why["nzf"]
    em = emulate(g, _npu_profile(), unit="npu")
    row = next(r for r in em.breakdown() if r["node"] == "mm")
    assert row["unit"] == "cpu" and "shape:" in row["fallback"] and "'nzf'" in row["fallback"]
    # y = [2, N] @ [16, 8] is [2, 8] whatever N is: known.
    assert set(row["unknown_shapes"]) == {"nzf"} and "'nz'" in row["unknown_shapes"]["nzf"]
    assert any("could not be inferred" in n and "run time" in n for n in em.notes)


def test_symbolic_inference_that_gives_up_leaves_no_files_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ORT dumps its partial model into the working directory when it gives up: never ours.
    monkeypatch.chdir(tmp_path)
    odd = helper.make_node("Mystery", ["x"], ["y"], name="odd", domain="custom")
    m = model([odd, helper.make_node("Relu", ["y"], ["z"], name="relu")],
              [tensor("x", F32, [4, 4])], [tensor("z", F32, None)])
    m.opset_import.append(helper.make_opsetid("custom", 1))
    g = load_graph(m)
    assert list(tmp_path.iterdir()) == []
    assert set(g.unresolved) == {"y", "z"}
    assert "Mystery node odd" in g.unresolved_why["y"]
    assert "'y'" in g.unresolved_why["z"]


@pytest.fixture(scope="module")
def tiny_bert_onnx() -> onnx.ModelProto:
    """transformers' BertModel, tiny config (2 layers, hidden 64, 2 heads), exported with fully
    static inputs [1, 128] by the legacy exporter, as a user would."""
    pytest.importorskip("transformers")
    import io
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")   # built from a config, never fetched
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128,
                        max_position_embeddings=128)
    torch.manual_seed(0)
    bert = BertModel(config).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            return self.bert(input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones(1, 128, dtype=torch.long)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about Python control flow
        torch.onnx.export(Encoder().eval(), (ids, torch.ones_like(ids)), buf,
                          input_names=["input_ids", "attention_mask"], dynamo=False,
                          opset_version=17)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_static_bert_encoder_runs_its_matmuls_on_the_npu(tiny_bert_onnx: onnx.ModelProto,
                                                         precision: str) -> None:
    from harness.profiles import load_profile

    g = load_graph(tiny_bert_onnx)
    assert g.fixed_dims == () and g.unresolved == (), g.unresolved_why
    assert all(n.shape_known for n in g.nodes)
    p = load_profile("snapdragon8gen3")
    for unit_name in ("auto", "npu"):
        lat = emulate(g, p, precision=precision, unit=unit_name).latency
        assert not [f for f in lat.fallbacks if "shape:" in f]
        matmuls = [n for n in lat.nodes if n.op_type == "MatMul"]
        assert len(matmuls) == 2 * 8 and {n.unit for n in matmuls} == {"npu"}


def test_an_npu_that_runs_fp32_as_fp16_takes_fp32_nodes_at_fp16() -> None:
    """QNN's HTP runs a float graph at fp16 (enable_htp_fp16_precision): with ``fp32_as`` an
    fp32 MatMul runs on the NPU at the fp16 rate, moving half the bytes; without it the NPU
    (no fp32 rate) refuses it and it runs on the CPU."""
    g = load_graph(_mm_chain(n=1, size=256))
    units = [_v2_unit("cpu", "cpu", ["*"], {"fp32": 10.0}),
             _v2_unit("npu", "npu", ["MatMul"], {"int8": 1000.0, "fp16": 500.0})]
    plain = predict_latency(g, _v2_profile(units, bandwidth_gb_s=1.0))
    (mm,) = [n for n in plain.nodes if n.op_type == "MatMul"]
    assert (mm.unit, mm.run_precision) == ("cpu", "fp32")
    units[1]["fp32_as"] = "fp16"
    as16 = predict_latency(g, _v2_profile(units, bandwidth_gb_s=1.0))
    (mm16,) = [n for n in as16.nodes if n.op_type == "MatMul"]
    assert (mm16.unit, mm16.run_precision, mm16.precision) == ("npu", "fp16", "fp32")
    assert mm16.bytes_mb == pytest.approx(mm.bytes_mb / 2, rel=1e-3)
    # a unit can only run fp32 at a precision it has a rate for
    units[1]["fp32_as"] = "int4"
    with pytest.raises(InputError, match="fp32_as"):
        _v2_profile(units)
