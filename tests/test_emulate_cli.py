"""`harness emulate`: the what-if command other tools call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.whatif import emulate_models


def test_json_has_one_object_per_model_device_precision(tiny_model: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen3", "--device",
                 "raspberrypi5", "--precision", "fp32", "--precision", "int8",
                 "--format", "json", "--duration", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4
    keys = {"model", "device", "precision", "unit", "latency_ms", "peak_memory_mb", "fits",
            "energy_mj", "avg_power_w", "sustained_latency_ms"}
    for r in out:
        assert keys <= r.keys()
        assert r["latency_ms"] > 0 and r["energy_mj"] > 0 and r["fits"] is True
    by = {(r["device"], r["precision"]): r for r in out}
    # int8 is never slower than fp32 for the same graph on the same device.
    for dev in ("snapdragon8gen3", "raspberrypi5"):
        assert by[(dev, "int8")]["latency_ms"] <= by[(dev, "fp32")]["latency_ms"]
        assert by[(dev, "int8")]["peak_memory_mb"] < by[(dev, "fp32")]["peak_memory_mb"]


def test_detail_lists_every_node_with_unit_time_and_share(tiny_model: Path) -> None:
    (r,) = emulate_models([tiny_model], devices=["snapdragon8gen3"], precisions=[None],
                          detail=True)
    nodes = r["nodes"]
    assert {"node", "op", "unit", "time_ms", "share", "fallback"} <= nodes[0].keys()
    # Shares add up to the nodes' part of the latency (the rest hands outputs back).
    assert 0.5 < sum(n["share"] for n in nodes) <= 1 + 1e-9
    assert all(n["unit"] in {"cpu", "gpu", "npu", None} for n in nodes)


def test_forcing_a_unit_the_device_lacks_is_an_entry_error(tiny_model: Path) -> None:
    (r,) = emulate_models([tiny_model], devices=["raspberrypi5"], precisions=[None], unit="npu")
    assert "error" in r and "npu" in r["error"]


def test_table_and_bad_input(tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen3", "--detail"]) == 0
    out = capsys.readouterr().out
    assert "latency (ms)" in out and "share %" in out
    assert main(["emulate", "missing.onnx", "--device", "snapdragon8gen3"]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen9"]) == 2
    assert "snapdragon8gen3" in capsys.readouterr().err


def test_a_large_model_emulates_without_running_it(tmp_path: Path) -> None:
    """~300 MB of weights (external data): the emulator reads only shapes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "x"
    for i in range(18):  # 18 x 2048 x 2048 x 4 B = 302 MB
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"]))
        inits.append(numpy_helper.from_array(np.zeros((2048, 2048), np.float32), f"W{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "big", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["batch", 2048])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10),
              str(path), save_as_external_data=True, location="big.data")
    proc = subprocess.run([sys.executable, "-m", "harness", "emulate", str(path), "--device",
                           "snapdragon8gen3", "--format", "json"], capture_output=True,
                          text=True, timeout=120, check=True)
    (r,) = json.loads(proc.stdout)
    assert r["peak_memory_mb"] > 288  # the weights alone are 288 MiB
    assert r["work_gops"] == pytest.approx(18 * 2 * 2048 * 2048 / 1e9)


@pytest.mark.parametrize("args", [
    ["--duration", "0"], ["--duration", "nan"], ["--duration", "inf"], ["--iterations", "0"],
    ["--duration", "60", "--period-ms", "-1"], ["--unit", "tpu"]])
def test_bad_numbers_and_units_are_usage_errors(tiny_model: Path, args: list[str],
                                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["emulate", str(tiny_model), "--device", "snapdragon8gen3", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert args[-2] in err and "Traceback" not in err


def test_period_without_a_sustained_run_and_all_failing_entries_are_errors(
        tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen3",
                 "--period-ms", "30"]) == 2
    assert "--duration or --iterations" in capsys.readouterr().err
    # the Pi has no NPU: every entry is an error, so the command fails (and still prints them)
    assert main(["emulate", str(tiny_model), "--device", "raspberrypi5", "--unit", "npu",
                 "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert "error" in json.loads(captured.out)[0] and "no (model, device" in captured.err


def test_a_graph_without_work_has_an_idle_sustained_run(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])],
                                            "id", [x], [y]), ir_version=9,
                          opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "identity.onnx"
    onnx.save(m, path)
    for kwargs in ({"duration_s": 60.0}, {"iterations": 10}):
        (r,) = emulate_models([path], devices=["snapdragon8gen3"], precisions=[None],
                              **kwargs)  # type: ignore[arg-type]
        assert r["latency_ms"] == 0 and r["sustained_latency_ms"] == 0
        assert any("does no work" in n for n in r["notes"])
        assert r["sustained_clock_fraction"] == 1.0 and r["sustained_power_w"] > 0


def test_emulate_models_refuses_bad_sustained_arguments(tiny_model: Path) -> None:
    from harness.errors import InputError

    for kwargs in ({"duration_s": float("nan")}, {"iterations": 0},
                   {"duration_s": 60.0, "period_ms": -1.0}):
        with pytest.raises(InputError):
            emulate_models([tiny_model], devices=["snapdragon8gen3"], precisions=[None],
                           **kwargs)  # type: ignore[arg-type]


def test_npu_predictions_carry_the_calibration_range(tiny_model: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """On the fitted unit a prediction comes with its 80% range; elsewhere it has none."""
    results = emulate_models([tiny_model], devices=["snapdragon8gen3", "raspberrypi5"],
                             precisions=["int8"], unit="auto", detail=False, duration_s=None,
                             iterations=None, period_ms=None,
                             input_shapes={"input": [1, 4, 8, 8]})
    by = {r["device"]: r for r in results}
    sd, pi = by["snapdragon8gen3"], by["raspberrypi5"]
    if sd["unit"] == "npu":
        lo, hi = sd["latency_range_ms"]
        assert lo < sd["latency_ms"] < hi
    assert "latency_range_ms" not in pi            # no NPU, no fitted figures
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen3", "--precision",
                 "int8", "--unit", "npu", "--shape", "input=1,4,8,8"]) == 0
    assert "80% range (ms)" in capsys.readouterr().out
