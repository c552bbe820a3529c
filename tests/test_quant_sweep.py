"""A sweep with the new quantization levels: the digits CNN takes them all, a conv-only ONNX
file gets `unsupported` rows for the levels it cannot take, and the sweep goes on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.sweep import BenchOptions, run_bench

pytestmark = pytest.mark.slow

# fp16, int8-static-percentile and torch-fp32 are covered by the unit tests; each case here
# costs ~3 s of worker start-up, so the sweep keeps one level of each new kind.
LEVELS = ["fp32", "int4", "int8-mixed-20", "torch-int8-dynamic"]


def _conv_only(path: Path) -> Path:
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         helper.make_node("Relu", ["h"], ["y"], name="relu")], "convonly",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    return path


def test_new_levels_sweep(tmp_path: Path, cache_dir: Path) -> None:
    _conv_only(tmp_path / "convonly.onnx")
    suite = tmp_path / "q.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "quant levels"\n'
        'workloads = ["digits_cnn", { name = "convonly", onnx = "convonly.onnx" }]\n'
        f'quant = {json.dumps(LEVELS)}\nprune = [0]\n'
        '[measure]\nwarmup = 2\niterations = 10\ntimeout_s = 300\nthreads = 1\n'
        'min_time_s = 0\n')
    run = run_bench(BenchOptions(devices=("snapdragon8gen3",), suite=suite,
                                 results_dir=tmp_path / "results", cache_dir=cache_dir,
                                 command_line=("test",)))
    rows = {(r["workload"], r["quant"]): r
            for r in map(json.loads, (run / "cases.jsonl").read_text().splitlines())}
    assert len(rows) == 2 * len(LEVELS)

    digits = {q: rows["digits_cnn", q] for q in LEVELS}
    assert all(r["status"] == "ok" for r in digits.values()), {
        q: r["reason"] for q, r in digits.items()}
    base = digits["fp32"]
    for q, r in digits.items():
        assert abs(r["quality"]["value"] - base["quality"]["value"]) < 0.02, q
        assert len(r["measured"]["phases"][0]["samples"]) == 10
        assert r["artifact"]["params"] == base["artifact"]["params"], q  # counted, any format
        assert r["prediction"]["latency_ms"] > 0
    for q in ("int4", "int8-mixed-20", "torch-int8-dynamic"):
        assert digits[q]["artifact"]["size_bytes"] < 0.8 * base["artifact"]["size_bytes"], q
    tq = digits["torch-int8-dynamic"]
    assert tq["measured"]["runtime"] == "torch" and tq["artifact"]["runtime"] == "torch"
    assert tq["prediction"]["onnx_twin"] is True
    assert base["measured"]["runtime"] == "onnxruntime"
    # 20% of the digits CNN's five quantizable nodes: one stays float, named in the row
    mixed = digits["int8-mixed-20"]["artifact"]
    assert len(mixed["float_nodes"]) == 1 and len(mixed["sensitivity"]) == 5
    assert mixed["float_nodes"][0] == max(mixed["sensitivity"], key=mixed["sensitivity"].get)

    conv = {q: rows["convonly", q] for q in LEVELS}
    assert conv["int4"]["status"] == "unsupported"
    assert "no MatMul to quantize" in conv["int4"]["reason"]
    tq = conv["torch-int8-dynamic"]
    assert tq["status"] == "unsupported" and "no PyTorch model" in tq["reason"]
    for q in ("fp32", "int8-mixed-20"):
        assert conv[q]["status"] == "ok", (q, conv[q]["reason"])
