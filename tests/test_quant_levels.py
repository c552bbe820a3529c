"""The quantization levels beyond int8: fp16, histogram calibration, int4, mixed precision.

Every model here is built in code and small; each level is run for real in ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from harness.cache import artifact_size_bytes
from harness.compress.inspect import inspect_artifact
from harness.compress.quantize import float_share_count, quant_metadata, quantize
from harness.compress.torch_export import export_onnx
from harness.errors import InputError, Unsupported
from harness.variants import QuantSpec, parse_quant

RNG = np.random.default_rng(0)
OUTLIER = 1000.0
CONV_CALIB = [{"input": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(8)]


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _rel_err(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "level", "param", "precision", "runtime"), [
    ("fp16", "fp16", None, "fp16", "onnxruntime"),
    ("int4", "int4", 32, "int4", "onnxruntime"),
    ("int4-b64", "int4", 64, "int4", "onnxruntime"),
    ("int8-mixed-10", "int8-mixed", 10, "int8", "onnxruntime"),
    ("int8-static-percentile", "int8-static-percentile", None, "int8", "onnxruntime"),
    ("torch-int8-dynamic", "torch-int8-dynamic", None, "int8", "torch"),
])
def test_level_names_parse(name: str, level: str, param: int | None, precision: str,
                           runtime: str) -> None:
    spec = parse_quant(name)
    assert (spec.name, spec.level, spec.param, spec.precision, spec.runtime) == (
        name, level, param, precision, runtime)


@pytest.mark.parametrize(("name", "message"), [
    ("int4-b48", "power of two"),
    ("int4-b8", "power of two"),
    ("int4-64", "int4-bN"),
    ("int8-mixed-0", "from 1 to 99"),
    ("int8-mixed-100", "from 1 to 99"),
    ("int8-mixed-x", "int8-mixed-N"),
    ("fp32-b32", "unknown quantization level"),
    ("int4b64", "Known: .*int4-bN"),
])
def test_bad_level_names_say_what_is_expected(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        QuantSpec(name)


def test_float_share_rounds_up_to_at_least_one_node() -> None:
    assert [float_share_count(10, n) for n in (5, 10, 20, 25)] == [1, 1, 2, 3]
    assert float_share_count(30, 10) == 3 and float_share_count(99, 3) == 3


# -------------------------------------------------------------------------- fp16


def test_fp16_halves_the_weights_and_keeps_fp32_io(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp16.onnx"
    quantize(tiny_model, out, parse_quant("fp16"), calibration=[])
    model = onnx.load(str(out))
    assert "Cast" in _ops(out)
    weights = [i for i in model.graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == TensorProto.FLOAT16 for i in weights)
    for value in [*model.graph.input, *model.graph.output]:  # keep_io_types
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    assert artifact_size_bytes(out) < 0.6 * artifact_size_bytes(tiny_model)
    assert inspect_artifact(out).params == inspect_artifact(tiny_model).params
    x = CONV_CALIB[0]
    ref, got = _run(tiny_model, x), _run(out, x)  # loads and runs on ORT's CPU provider
    assert got.dtype == np.float32 and not np.array_equal(ref, got)
    assert _rel_err(ref, got) < 1e-2


def test_fp16_keeps_ops_without_fp16_in_fp32(tmp_path: Path) -> None:
    """Celu has no float16 in its schema: it stays fp32 between Casts, and the row says so."""
    w = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         helper.make_node("Celu", ["h"], ["y"], name="celu")], "celu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        initializer=[numpy_helper.from_array(w, "w")])
    src = _save(graph, tmp_path / "celu.onnx")
    out = tmp_path / "fp16.onnx"
    quantize(src, out, parse_quant("fp16"), calibration=[])
    assert quant_metadata(onnx.load(str(out)))["float_nodes"] == ["celu"]
    assert onnx.load(str(out)).graph.initializer[0].data_type == TensorProto.FLOAT16
    x = {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)}
    assert _rel_err(_run(src, x), _run(out, x)) < 1e-2


# ------------------------------------------------------------ histogram calibration


def _wide_matmul(path: Path) -> Path:
    """[N, 4096] @ [4096, 8]: one activation tensor big enough that 0.001% is a real share."""
    w = (RNG.standard_normal((4096, 8)) / 64).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        initializer=[numpy_helper.from_array(w, "w")])
    return _save(graph, path)


def _input_scale(path: Path) -> float:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (q,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    return float(inits[q.input[1]])


def test_histogram_calibration_ignores_a_rare_outlier(tmp_path: Path) -> None:
    """MinMax stretches the input scale to one outlier in 131k values; percentile (99.999%)
    clips it, so ordinary inputs come out more accurately."""
    src = _wide_matmul(tmp_path / "wide.onnx")
    calib = [{"x": RNG.standard_normal((1, 4096)).astype(np.float32)} for _ in range(32)]
    calib[5]["x"][0, 7] = OUTLIER
    scales, errors = {}, {}
    probe = {"x": RNG.standard_normal((4, 4096)).astype(np.float32)}
    ref = _run(src, probe)
    for level in ("int8-static", "int8-static-percentile"):
        out = tmp_path / f"{level}.onnx"
        quantize(src, out, parse_quant(level), calibration=calib)
        assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= set(_ops(out))
        scales[level], errors[level] = _input_scale(out), _rel_err(ref, _run(out, probe))
    # asymmetric int8 activations: scale = (max - min) / 255, with max the outlier
    assert OUTLIER / 255 < scales["int8-static"] < (OUTLIER + 10) / 255
    assert scales["int8-static-percentile"] < scales["int8-static"] / 10, scales
    assert errors["int8-static-percentile"] < errors["int8-static"] / 3, errors


# -------------------------------------------------------------------------- int4


def _mlp_onnx(path: Path, *, sparse: bool = False) -> Path:
    """Linear(64, 64) -> ReLU -> Linear(64, 16), exported (Gemm) by the legacy exporter.

    ``sparse``: half of each weight is exactly zero and the rest has |w| in [0.5, 1], so
    4-bit symmetric quantization keeps exactly the zeros at zero.
    """
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 16))
    if sparse:
        with torch.no_grad():
            for lin in (model[0], model[2]):
                w = torch.empty_like(lin.weight).uniform_(0.5, 1.0)
                w *= torch.where(torch.rand_like(w) < 0.5, -1.0, 1.0)
                mask = torch.zeros(w.numel())
                mask[torch.randperm(w.numel())[: w.numel() // 2]] = 1
                lin.weight.copy_(w * mask.reshape(w.shape))
    export_onnx(model, {"input": np.zeros((1, 64), np.float32)}, path)
    return path


@pytest.mark.parametrize("level", ["int4", "int4-b16"])
def test_int4_replaces_the_linear_layers_with_matmulnbits(tmp_path: Path, level: str) -> None:
    src = _mlp_onnx(tmp_path / "mlp.onnx")
    assert _ops(src).count("Gemm") == 2  # the legacy exporter writes nn.Linear as Gemm
    out = tmp_path / f"{level}.onnx"
    quantize(src, out, parse_quant(level), calibration=[])
    model = onnx.load(str(out))
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 and "Gemm" not in _ops(out) and "MatMul" not in _ops(out)
    for node in nbits:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 4 and attrs["block_size"] == parse_quant(level).param
    assert inspect_artifact(out).params == 64 * 64 + 64 * 16
    assert artifact_size_bytes(out) < 0.4 * artifact_size_bytes(src)
    x = {"input": RNG.standard_normal((8, 64)).astype(np.float32)}
    ref, got = _run(src, x), _run(out, x)
    assert not np.array_equal(ref, got)
    assert _rel_err(ref, got) < 0.1


def test_int4_keeps_pruned_zeros_and_inspect_unpacks_them(tmp_path: Path) -> None:
    src = _mlp_onnx(tmp_path / "sparse.onnx", sparse=True)
    assert inspect_artifact(src).sparsity == pytest.approx(0.5, abs=1e-3)
    out = tmp_path / "int4.onnx"
    quantize(src, out, parse_quant("int4"), calibration=[])
    stats = inspect_artifact(out)
    assert stats.params == 64 * 64 + 64 * 16
    assert stats.zero_params == inspect_artifact(src).zero_params  # no more, no fewer


def test_int4_on_a_conv_only_model_is_unsupported(tmp_path: Path) -> None:
    w = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "convonly",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        initializer=[numpy_helper.from_array(w, "w")])
    src = _save(graph, tmp_path / "conv.onnx")
    with pytest.raises(Unsupported, match="no MatMul to quantize"):
        quantize(src, tmp_path / "int4.onnx", parse_quant("int4"), calibration=[])


# --------------------------------------------------------------- mixed precision


def _chain_with_one_sensitive_layer(path: Path) -> Path:
    """Ten 16x16 MatMuls in a chain (orthogonal weights, so errors neither grow nor fade).

    In the first, input channel 0 has weights of 1000 while that channel is always 0 in the
    data: harmless in float, but per-channel int8 then has a step of ~8 for every output
    channel, which rounds all the useful weights to zero. Quantizing ``mm0`` alone wrecks
    the output; any other layer alone costs ~1%.
    """
    nodes, inits = [], []
    prev = "x"
    for i in range(10):
        q, _ = np.linalg.qr(RNG.standard_normal((16, 16)))
        w = q.astype(np.float32)
        if i == 0:
            w[0, :] = 1000.0
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == 9 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [out], name=f"mm{i}"))
        prev = out
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], initializer=inits)
    return _save(graph, path)


def _chain_inputs(n: int) -> list[dict[str, np.ndarray]]:
    feeds = []
    for _ in range(n):
        x = RNG.standard_normal((1, 16)).astype(np.float32)
        x[0, 0] = 0.0
        feeds.append({"x": x})
    return feeds


def _float_weight_nodes(path: Path) -> set[str]:
    """MatMul nodes whose weight is a float initializer (not behind a DequantizeLinear)."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return {n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits}


def test_mixed_precision_keeps_the_most_sensitive_share_in_float(tmp_path: Path) -> None:
    src = _chain_with_one_sensitive_layer(tmp_path / "chain.onnx")
    calib = _chain_inputs(16)
    probe = {"x": np.concatenate([f["x"] for f in _chain_inputs(8)])}
    ref = _run(src, probe)

    full = tmp_path / "int8-static.onnx"
    quantize(src, full, parse_quant("int8-static"), calibration=calib)
    assert _float_weight_nodes(full) == set()

    out10 = tmp_path / "mixed10.onnx"
    quantize(src, out10, parse_quant("int8-mixed-10"), calibration=calib)
    meta = quant_metadata(onnx.load(str(out10)))
    sens = meta["sensitivity"]
    assert set(sens) == {f"mm{i}" for i in range(10)}
    assert max(sens, key=sens.get) == "mm0" and sens["mm0"] > 10 * max(
        v for k, v in sens.items() if k != "mm0")
    assert meta["float_nodes"] == ["mm0"]
    assert _float_weight_nodes(out10) == {"mm0"}  # exactly 10% of ten, in the graph too
    assert _rel_err(ref, _run(out10, probe)) < 0.1 < _rel_err(ref, _run(full, probe))

    out30 = tmp_path / "mixed30.onnx"
    quantize(src, out30, parse_quant("int8-mixed-30"), calibration=calib)
    meta30 = quant_metadata(onnx.load(str(out30)))
    top3 = sorted(sens, key=sens.get, reverse=True)[:3]
    assert len(meta30["float_nodes"]) == 3 and set(meta30["float_nodes"]) == set(top3)
    assert _float_weight_nodes(out30) == set(top3)
    assert json.loads(json.dumps(meta30))  # plain JSON, as the result row stores it


def test_mixed_precision_needs_calibration(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize(tiny_model, tmp_path / "m.onnx", parse_quant("int8-mixed-10"), calibration=[])
