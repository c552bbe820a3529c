"""The small shared helpers: atomic writes, schema upgrades, package files, ONNX rewrites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.compress.onnx_utils import constants_to_initializers
from harness.errors import InputError, Unsupported
from harness.fsutil import atomic_path, atomic_write_bytes, atomic_write_text
from harness.schema import upgrade
from harness.workloads.resources import package_file


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.json"
    atomic_write_text(path, "one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    with atomic_path(tmp_path / "arrays.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path  # np.savez keeps the name
        np.savez(tmp, a=np.arange(3))
    with np.load(tmp_path / "arrays.npz") as npz:
        assert npz["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"two"  # the old file stands
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["arrays.npz", "out.json", "sub"]


def test_schema_upgrade_steps_through_versions_and_names_the_field() -> None:
    steps = {1: lambda r: {**r, "schema_version": 2, "b": 1},
             2: lambda r: {**r, "schema_version": 3, "c": r["b"] + 1}}
    assert upgrade({"schema_version": 1}, steps, current=3, file="f.json") == {
        "schema_version": 3, "b": 1, "c": 2}
    with pytest.raises(InputError, match=r"f\.json: field 'line 4\.schema_version': schema "
                                         r"version 4 is newer"):
        upgrade({"schema_version": 4}, steps, current=3, file="f.json", where="line 4")
    with pytest.raises(InputError, match="field 'schema_version': no upgrade from schema "
                                         "version 0"):
        upgrade({"schema_version": 0}, steps, current=3, file="f.json")
    with pytest.raises(InputError, match="expected an integer schema version, got True"):
        upgrade({"schema_version": True}, steps, current=3, file="f.json")


def test_package_file_finds_files_without_importing_and_names_what_to_install() -> None:
    assert package_file("onnx", "__init__.py").is_file()
    with pytest.raises(Unsupported, match=r"package no-such-dist==1\.0 is not installed "
                                          r"\(pip install"):
        package_file("harness_no_such_package", "x.onnx", dist="no-such-dist==1.0")
    with pytest.raises(Unsupported, match="missing from the onnx package"):
        package_file("onnx", "no-such-file.onnx")


def test_constants_become_initializers_only_where_asked() -> None:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    s = numpy_helper.from_array(np.ones((2,), np.float32), "S")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["W"], value=w),
         helper.make_node("Constant", [], ["S"], value=s),
         helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "S"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph)
    assert constants_to_initializers(model, only={"W"}) == 1
    assert [i.name for i in model.graph.initializer] == ["W"]
    assert [n.op_type for n in model.graph.node] == ["Constant", "MatMul", "Add"]
    assert constants_to_initializers(model) == 1
    assert [i.name for i in model.graph.initializer] == ["W", "S"]
    onnx.checker.check_model(model)


def test_cpu_session_runs_serialized_models_quietly() -> None:
    from harness.runtimes.onnxruntime import cpu_session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # onnxruntime 1.31 reads at most IR 13
    session = cpu_session(model.SerializeToString(), threads=1, quiet=True)
    out = session.run(None, {"x": np.array([[-1.0, 2.0]], np.float32)})[0]
    assert out.tolist() == [[0.0, 2.0]]
    assert session.get_providers() == ["CPUExecutionProvider"]
