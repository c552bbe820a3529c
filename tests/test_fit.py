"""The calibration fit recovers known parameters from latencies the emulator itself produced."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.emulator import load_graph
from harness.emulator.costmodel import predict_latency
from harness.emulator.fit import (
    Observation,
    apply_parameters,
    evaluate,
    fit,
    independent_targets,
    rank_agreement,
)
from harness.errors import InputError
from harness.profiles import load_profile

TRUE = {"efficiency.conv": 0.4, "efficiency.depthwise": 0.05, "efficiency.matmul": 0.25,
        "efficiency.elementwise": 0.2, "efficiency.other": 0.2, "dispatch_us": 30.0,
        "fp16_share_of_int8": 0.4, "bandwidth_efficiency": 0.5, "handoff_us": 40.0}


def _net(channels: int, depthwise: bool, size: int, hidden: int) -> onnx.ModelProto:
    rng = np.random.default_rng(channels)
    w1 = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32)
    # A dense conv heavy enough to be compute-bound on an NPU, so precisions are told apart.
    w0 = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c0", "w0"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w0, "w0")]
    if depthwise:
        wd = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(wd, "wd"))
        nodes.append(helper.make_node("Conv", ["r1", "wd"], ["c2"], group=channels,
                                      pads=[1, 1, 1, 1]))
    else:
        nodes.append(helper.make_node("Relu", ["r1"], ["c2"]))
    wm = rng.standard_normal((channels, hidden)).astype(np.float32)
    inits.append(numpy_helper.from_array(wm, "wm"))
    nodes += [helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("MatMul", ["f", "wm"], ["y"])]
    g = helper.make_graph(nodes, "n", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _observations() -> list[Observation]:
    out = []
    for dev in ("snapdragon8gen3", "snapdragon8gen2"):
        prof = load_profile(dev)
        truth = apply_parameters(prof, TRUE)
        for i, (ch, dw, size, hidden) in enumerate([(32, True, 112, 256), (64, False, 56, 1024),
                                                     (16, True, 224, 64), (128, False, 28, 4096),
                                                     (48, True, 96, 2048), (24, False, 160, 512),
                                                     (96, True, 40, 128)]):
            g = load_graph(_net(ch, dw, size, hidden))
            for prec in ("fp16", "int8"):
                ms = predict_latency(g, truth, unit="npu", precision=prec).latency_ms
                out.append(Observation(label=f"net{i}/{dev}/{prec}", model=f"net{i}", graph=g,
                                       profile=prof, precision=prec, observed_ms=ms))
    return out


def test_fit_recovers_the_latencies_it_was_given() -> None:
    obs = _observations()
    result = fit(obs)
    assert result.median_abs_pct_error < 2.0
    checked = evaluate(obs, result.parameters)
    assert np.median([abs(r["error_pct"]) for r in checked]) < 2.0
    # The well-determined parameters come back (others may trade off against each other).
    assert result.parameters["fp16_share_of_int8"] == pytest.approx(0.4, rel=0.15)
    # (The hand-off, 40 us in the truth rather than the profile's 100, is fitted too; on these
    # few small graphs it trades off against the dispatch cost, so it is not checked alone.)
    assert "handoff_us" in result.parameters
    taus = rank_agreement(checked)
    assert taus and all(t > 0.7 for t in taus.values())


def test_fit_refuses_more_parameters_than_independent_targets() -> None:
    # Five models at one precision on two phones: ten rows, but only five independent
    # (model, precision) targets for ten free parameters.
    obs = [o for o in _observations() if o.precision == "int8" and o.model < "net5"]
    assert independent_targets(obs) == 5
    with pytest.raises(InputError, match="10 free parameters but only 5 independent"):
        fit(obs)


def test_fit_is_not_fooled_into_zero_error_by_a_wrong_model() -> None:
    obs = _observations()
    # Scramble the observations across models: no parameters can explain them all.
    times = [o.observed_ms for o in obs]
    scrambled = [Observation(o.label, o.model, o.graph, o.profile, o.precision, t)
                 for o, t in zip(obs, times[3:] + times[:3], strict=True)]
    assert fit(scrambled).median_abs_pct_error > 5.0


def test_calibrate_predicts_each_model_from_a_fit_without_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Any) -> None:
    import json

    import harness.calibrate as calibrate
    from harness.cli import main

    obs = _observations()
    trained_on: list[frozenset[str]] = []
    real_fit = calibrate.fit

    def recording_fit(train: Any) -> Any:
        trained_on.append(frozenset(o.model for o in train))
        return real_fit(train)

    monkeypatch.setattr(calibrate, "observations", lambda **_: (obs, []))
    monkeypatch.setattr(calibrate, "unit_checks", lambda **_: [])
    monkeypatch.setattr(calibrate, "fit", recording_fit)
    report = calibrate.run_calibration(cache_dir=tmp_path)
    models = {o.model for o in obs}
    # One fit on everything, one per device left out (all models), one per model left out.
    assert trained_on.count(frozenset(models)) == 1 + 2 and len(trained_on) == 1 + 2 + len(models)
    for m in models:
        assert frozenset(models - {m}) in trained_on
    lomo = report.leave_one_model_out
    assert sorted(r["label"] for r in lomo) == sorted(o.label for o in obs)
    # The latencies came from the emulator with fixed physics: a model never seen is still
    # predicted closely (the parameters are not fitted to the models).
    assert np.median([abs(r["error_pct"]) for r in lomo]) < 5.0
    groups = report.by_model_and_device(lomo)
    assert sum(g["rows"] for g in groups) == len(lomo) and len(groups) == len(models) * 2
    off = [abs(np.log(g["median_ratio"])) for g in groups]
    assert off == sorted(off, reverse=True) and max(off) < np.log(1.05)
    overall = report.overall()
    assert set(overall) == {"in sample", "leave one device out", "leave one model out"}
    assert overall["leave one model out"]["rows"] == len(obs)
    assert overall["leave one model out"]["worst_abs_pct"] == max(
        abs(r["error_pct"]) for r in lomo)
    # Table and JSON output both carry it, per model, device and precision.
    monkeypatch.setattr(calibrate, "run_calibration", lambda **_: report)
    assert main(["calibrate", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "leave one model out" in out and "worst rows (leave one model out)" in out
    assert "median |error| % by precision" in out
    assert main(["calibrate", "--cache-dir", str(tmp_path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["leave_one_model_out"]) == len(obs)
    assert set(data["summary"]["model"]["leave one model out"]) == models
    assert set(data["summary"]["precision"]["in sample"]) == {"fp16", "int8"}
