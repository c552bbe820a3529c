"""The lumped thermal model, its fit to sustained evidence, and sustained runs."""

from __future__ import annotations

import math

import pytest

from harness.emulator import (
    PowerAtClock,
    ThermalModel,
    emulate,
    fit_thermal_resistance,
    load_graph,
    simulate,
)
from harness.errors import InputError
from harness.profiles import load_profile

MODEL = ThermalModel(ambient_c=25, resistance_c_per_w=10, time_constant_s=60,
                     throttle_start_c=60, throttle_end_c=90, min_clock_fraction=0.4)


def test_throttle_curve_and_its_inverse() -> None:
    assert MODEL.clock_fraction(25) == 1.0 and MODEL.clock_fraction(60) == 1.0
    assert MODEL.clock_fraction(75) == pytest.approx(0.7)
    assert MODEL.clock_fraction(200) == 0.4
    assert MODEL.temp_for_fraction(0.7) == pytest.approx(75)
    with pytest.raises(ValueError):
        MODEL.temp_for_fraction(0.3)


def test_step_is_the_exact_first_order_response() -> None:
    # 5 W -> target 75 C; after one time constant 63.2% of the way from 25 C.
    assert MODEL.step(25, 5, 60) == pytest.approx(75 - 50 * math.exp(-1))
    assert MODEL.step(25, 5, 1e6) == pytest.approx(75)
    assert MODEL.step(75, 5, 10) == pytest.approx(75)


def test_steady_state_balances_heat_and_throttle() -> None:
    power = PowerAtClock(idle_w=1, active_w=8)
    temp, f = MODEL.steady_state(power)
    assert MODEL.clock_fraction(temp) == pytest.approx(f, abs=1e-5)
    assert temp == pytest.approx(25 + 10 * power(f), abs=1e-3)
    assert 0.4 < f < 1.0
    cool = MODEL.steady_state(PowerAtClock(idle_w=0.5, active_w=1))
    assert cool[1] == 1.0   # 40 C: never throttles


@pytest.mark.parametrize("name", ["snapdragon8gen3", "snapdragon8gen2"])
def test_fitted_resistance_reproduces_the_published_sustained_fraction(name: str) -> None:
    prof = load_profile(name)
    cpu = prof.unit("cpu")
    r = fit_thermal_resistance(prof, load_active_w=cpu.active_power_w.value)
    model = ThermalModel.from_profile(prof)
    fitted = ThermalModel(**{**vars(model), "resistance_c_per_w": r})
    _, f = fitted.steady_state(PowerAtClock(idle_w=prof.power.idle_w.value,
                                            active_w=cpu.active_power_w.value))
    assert f == pytest.approx(prof.thermal.sustained_fraction.value, abs=1e-3)


def test_sustained_run_heats_throttles_and_settles(tmp_path) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    # A big matmul chain keeps the cpu busy: enough power to throttle.
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"], name=f"mm{i}"))
        inits.append(numpy_helper.from_array(np.ones((512, 512), np.float32), f"W{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [512, 512])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    prof = load_profile("snapdragon8gen3")
    em = emulate(load_graph(m), prof, unit="cpu")
    trace = simulate(em.latency, prof, duration_s=1800)
    assert trace.clock_fraction[0] == 1.0 and trace.temp_c[-1] > trace.temp_c[0]
    assert trace.burst_latency_ms == pytest.approx(em.latency_ms)
    assert trace.sustained_latency_ms > trace.burst_latency_ms
    assert min(trace.clock_fraction) >= prof.thermal.min_clock_fraction.value
    assert trace.time_s[-1] >= 1800 - 1e-6 and len(trace.time_s) <= 2000
    # Monotone heating from ambient under constant load; power falls as clocks drop.
    assert all(b >= a - 1e-9 for a, b in zip(trace.temp_c, trace.temp_c[1:], strict=False))
    assert trace.power_w[-1] < trace.power_w[0]
    # Pacing at a slow period keeps it cool: no throttling at all.
    paced = simulate(em.latency, prof, duration_s=1800, period_ms=em.latency_ms * 20)
    assert paced.clock_fraction[-1] > trace.clock_fraction[-1]
    # An exact count gives one point per inference when small.
    short = simulate(em.latency, prof, iterations=50)
    assert short.inferences == 50 and short.inferences_per_point == 1 and len(short.time_s) == 50
    with pytest.raises(InputError):
        simulate(em.latency, prof)


def _matmul_chain(n: int, size: int, dtype: int) -> object:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"], name=f"mm{i}"))
        inits.append(numpy_helper.from_array(np.ones((size, size), np_dtype), f"W{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [size, size])],
                          [helper.make_tensor_value_info(prev, dtype, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


@pytest.mark.parametrize(("device", "unit", "fp16", "published_w", "evidence"), [
    # Raspberry Pi 5: 12.0 W at the wall during HPL (device_specs.csv hpl_linpack), a large
    # compute-bound GEMM on all four cores, which a chain of big matmuls on the CPU is.
    ("raspberrypi5", "cpu", False, 12.0, "hpl_linpack"),
    # Snapdragon 8 Gen 3: 12.6 W GPU power in 3DMark Wild Life Extreme (gpu_power_3dmark_...),
    # a sustained full GPU load; the idle baseline adds to it.
    ("snapdragon8gen3", "gpu", True, 12.6 + 1.0, "gpu_power_3dmark_wild_life_extreme"),
])
def test_full_load_power_matches_the_published_power_evidence(
        device: str, unit: str, fp16: bool, published_w: float, evidence: str) -> None:
    """The energy model (energy per op + DRAM bytes + idle) reproduces published load power.

    A compute-bound graph keeps the unit at its effective throughput, so its average power must
    come out at idle + the unit's active power: the published figure the profile cites.
    """
    from onnx import TensorProto

    prof = load_profile(device)
    m = _matmul_chain(6, 1024, TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT)
    lat = emulate(load_graph(m), prof, unit=unit).latency
    assert all(n.bound == "compute" for n in lat.nodes if n.unit == unit)
    assert lat.avg_power_w == pytest.approx(published_w, rel=0.15), evidence
