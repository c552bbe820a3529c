"""Artifact formats: tiny ONNX models built in code (no torch), one registration per format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.artifacts.formats import (
    FORMATS,
    META_FLOAT_NODES,
    ONNX,
    TORCH,
    TWIN_FILE,
    ArtifactFormat,
    format_of,
)
from harness.cache import artifact_sha256, artifact_size_bytes, model_files
from harness.compress.inspect import inspect_artifact
from harness.errors import InputError
from harness.runtimes import artifact_file, runtime_of

# onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads at most 13.
IR_VERSION = 10


def _matmul_model(weight: np.ndarray, *, as_constant: bool = False,
                  meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """x[1, K] @ W[K, N], W an initializer (or a Constant node, as Paddle's exporter writes)."""
    k, n = weight.shape
    w = numpy_helper.from_array(weight.astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    inits = [w]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=w))
        inits = []
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def _half_zero(k: int = 8, n: int = 4) -> np.ndarray:
    w = np.arange(1, k * n + 1, dtype=np.float32).reshape(k, n)
    w[: k // 2] = 0.0
    return w


def test_onnx_format_lists_its_external_data_files(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_matmul_model(_half_zero(64, 64)), str(path), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    assert format_of(path) is ONNX
    assert ONNX.files(path) == model_files(path) == [path, tmp_path / "model.onnx.data"]
    assert artifact_size_bytes(path) == sum(f.stat().st_size for f in ONNX.files(path))
    inline = tmp_path / "inline" / "model.onnx"
    inline.parent.mkdir()
    onnx.save(_matmul_model(_half_zero()), str(inline))
    assert ONNX.files(inline) == [inline]
    assert len(artifact_sha256(inline)) == 64


def test_onnx_format_inspects_runs_and_costs_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_matmul_model(_half_zero(), meta={META_FLOAT_NODES: json.dumps(["mm"])}),
              str(path))
    assert ONNX.runtime == runtime_of(path) == "onnxruntime"
    assert artifact_file("onnxruntime") == ONNX.filename == "model.onnx"
    assert ONNX.emulator_graph(path) == path
    stats = ONNX.inspect(path)
    assert (stats.params, stats.zero_params, stats.sparsity) == (32, 16, 0.5)
    assert inspect_artifact(path) == stats
    assert ONNX.quant_metadata(path) == {"float_nodes": ["mm"]}

    from harness.runtimes import load

    loaded = load(path, threads=1)
    x = np.ones((1, 8), np.float32)
    np.testing.assert_allclose(loaded.run({"x": x})[0], x @ _half_zero())


def test_weights_stored_as_constant_nodes_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_matmul_model(_half_zero(), as_constant=True), str(path))
    assert inspect_artifact(path).zero_params == 16


def test_torch_format_is_costed_from_its_onnx_twin_without_loading_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    assert format_of(path) is TORCH
    assert TORCH.runtime == runtime_of(path) == "torch"
    assert artifact_file("torch") == "model.pt"
    assert TORCH.emulator_graph(path) == tmp_path / TWIN_FILE
    assert TORCH.files(path) == [path]
    assert TORCH.quant_metadata(path) == {}  # torch artifacts record nothing


def test_an_unknown_suffix_names_the_file_and_the_known_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model\.mlmodel: no artifact format .* '\.mlmodel' "
                                         r"files \(known formats: onnx \(model\.onnx\), "
                                         r"torch \(model\.pt\), genai \(genai_config\.json\), "
                                         r"tflite \(model\.tflite\)\)"):
        format_of(tmp_path / "model.mlmodel")


def test_a_new_format_is_one_registration(tmp_path: Path) -> None:
    # GGUF-like: its own file and runtime, costed from an ONNX file beside it.
    gguf = ArtifactFormat(
        name="gguf", filename="model.gguf", runtime="llama.cpp", description="test format",
        inspector="harness.compress.inspect:inspect_onnx",
        graph=lambda p: p.with_name("graph.onnx"))
    onnx.save(_matmul_model(_half_zero()), str(tmp_path / "graph.onnx"))
    path = tmp_path / "model.gguf"
    with FORMATS.registered("gguf", gguf, info=gguf.description):
        assert format_of(path) is gguf
        assert runtime_of(path) == "llama.cpp" and artifact_file("llama.cpp") == "model.gguf"
        assert model_files(path) == [path]
        assert gguf.inspect(gguf.emulator_graph(path)).zero_params == 16
    with pytest.raises(InputError, match="no artifact format"):
        format_of(path)
