"""Worker isolation: failures become classified outcomes, never exceptions in the sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.launcher import run_in_worker as _in_worker
from harness.worker import run_task


def _measure_task(artifact: Path, inputs: Path, iterations: int = 5) -> dict:
    return {"kind": "measure", "workload": {"name": "tiny", "onnx": str(artifact)},
            "artifact": str(artifact), "inputs": str(inputs), "warmup": 1,
            "iterations": iterations, "threads": 1}


def _inputs(tmp_path: Path) -> Path:
    p = tmp_path / "inputs.npz"
    np.savez(p, input=np.ones((1, 4, 8, 8), np.float32))
    return p


def test_measure_in_worker_keeps_raw_samples(tiny_model: Path, tmp_path: Path) -> None:
    out = _in_worker(_measure_task(tiny_model, _inputs(tmp_path), iterations=7),
                     timeout_s=120, log=tmp_path / "log")
    assert out["status"] == "ok", out
    row = out["result"]
    m = row["measured"]
    (phase,) = m["phases"]
    assert phase["name"] == "forward" and phase["unit"] == "ns"
    assert len(phase["samples"]) == 7 and all(s > 0 for s in phase["samples"])
    assert m["cold_start"]["load_ns"] > 0
    assert m["peak_memory_mb"] >= m["memory_before_load_mb"] > 0
    assert row["quality"] is None  # an ONNX-file workload has no metric


def test_a_hang_becomes_a_timeout(tiny_model: Path, tmp_path: Path) -> None:
    out = _in_worker(_measure_task(tiny_model, _inputs(tmp_path), iterations=10**9),
                     timeout_s=3, log=tmp_path / "log")
    assert out["status"] == "timeout" and "3 s" in out["reason"]


def test_a_corrupt_model_becomes_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = run_task(_measure_task(bad, _inputs(tmp_path)))
    assert out["status"] == "error" and out["reason"]


def test_unknown_task_is_an_error() -> None:
    assert run_task({"kind": "nope"})["status"] == "error"


def _big_activation_onnx(path: Path, mb: int) -> Path:
    """x -> x + ConstantOfShape([mb MiB of float32]): needs ``mb`` MiB at run time."""
    import onnx
    from onnx import TensorProto, helper

    n = mb * 2**20 // 4
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [n])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Add", ["input", "big"], ["y"])]
    g = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                       [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [shape])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
              str(path))
    return path


def test_a_runtime_over_the_memory_cap_becomes_oom(tmp_path: Path) -> None:
    model = _big_activation_onnx(tmp_path / "big.onnx", mb=512)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, input=np.ones((1,), np.float32))
    task = _measure_task(model, inputs, iterations=1)
    capped = _in_worker(task, timeout_s=120, log=tmp_path / "log", memory_limit_mb=400)
    assert capped["status"] == "oom", capped
    roomy = _in_worker(task, timeout_s=120, log=tmp_path / "log2", memory_limit_mb=4096)
    assert roomy["status"] == "ok", roomy


def _pace_spec(*, latency_ms: float, time_constant_s: float = 0.05,
               start_c: float = 30.0) -> dict:
    """A device that heats fast (time constant 50 ms, throttling from 30 °C) so a paced run
    of a fraction of a second throttles; latency doubles at the minimum clock."""
    from harness.emulator.pacing import PaceSpec

    grid = (0.5, 0.75, 1.0)
    return PaceSpec(clock=grid, latency_ms=tuple(latency_ms / f for f in grid),
                    dynamic_mj=tuple(50.0 * f * f for f in grid), idle_w=1.0,
                    thermal={"ambient_c": 25.0, "resistance_c_per_w": 5.0,
                             "time_constant_s": time_constant_s, "throttle_start_c": start_c,
                             "throttle_end_c": start_c + 10.0,
                             "min_clock_fraction": 0.5}).to_json()


def test_pacing_pads_runs_and_throttles_as_the_device_heats() -> None:
    """Each inference is padded to the device's latency at that moment: the emulated device
    heats with the paced run's work and the targets grow; the samples stay the host's own."""
    import time

    from harness.emulator.pacing import Pacer, PaceSpec
    from harness.measure import paced_runs

    def fast(_: object, feeds: dict) -> None:
        return None

    pacer = Pacer(PaceSpec.from_json(_pace_spec(latency_ms=2.0)))
    t0 = time.perf_counter()
    samples, series = paced_runs(fast, {}, 60, pacer)
    wall = time.perf_counter() - t0
    targets = series["target_ms"]
    assert len(samples) == len(targets) == 60 and series["overruns"] <= 3
    assert targets[0] == 2.0 and targets[-1] > 1.5 * targets[0]       # it throttled
    assert series["clock_fraction"][-1] < 0.75 and series["temp_c"][-1] > 30.0
    assert wall >= 0.95 * sum(targets) / 1e3                           # padded to the targets
    assert sorted(samples)[30] < 1_000_000                             # host's own times
    # a device that cannot heat in this time: a constant target, as before
    cold = Pacer(PaceSpec.from_json(_pace_spec(latency_ms=1.0, time_constant_s=1e6)))
    _, flat = paced_runs(fast, {}, 10, cold)
    assert set(flat["target_ms"]) == {1.0}
    # a host slower than the device: every run overruns and pacing cannot slow it down
    slow = Pacer(PaceSpec.from_json(_pace_spec(latency_ms=1e-6)))
    _, over = paced_runs(lambda _, f: time.sleep(0.001), {}, 5, slow)
    assert over["overruns"] == 5


def test_a_worker_killed_from_outside_is_an_error_not_oom(tiny_model: Path,
                                                          tmp_path: Path) -> None:
    """`kill -9` on a measuring worker, for real: the row must not claim the model ran out of
    memory (an oom row is never retried and reads as 'does not fit')."""
    import os
    import signal
    import threading
    import time

    import psutil

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for child in psutil.Process().children(recursive=True):
                if "harness.worker" in " ".join(child.cmdline()):
                    time.sleep(1.0)   # let it start timing
                    os.kill(child.pid, signal.SIGKILL)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    out = _in_worker(_measure_task(tiny_model, _inputs(tmp_path), iterations=10**9),
                     timeout_s=120, log=tmp_path / "log")
    t.join()
    assert out["status"] == "error", out
    assert "killed by SIGKILL" in out["reason"] and "out-of-memory killer" in out["reason"]


def test_an_empty_assertion_names_where_it_was_raised() -> None:
    from harness.worker import TASKS

    def bare(task: dict) -> dict:
        if task["x"] != 1:
            raise AssertionError  # as a bare `assert` in a library does (no message)
        return {}

    TASKS["bare"] = bare
    try:
        out = run_task({"kind": "bare", "x": 2})
    finally:
        del TASKS["bare"]
    assert out["status"] == "error"
    assert out["reason"].startswith("AssertionError in test_worker.py:")
    assert "(bare)" in out["reason"] and "raise AssertionError" in out["reason"]


def test_fast_calls_are_timed_in_loops_for_at_least_min_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A call of well under a µs is timed many calls per sample (the loop's own cost spread
    over them); a 1 ms call one per sample, with samples until they span min_time_s."""
    import time

    import harness.measure
    from harness.core.measurement import Phase
    from harness.measure import MAX_LOOPS, MIN_SAMPLE_NS, choose_loops, timed_samples

    def noop(_: object, feeds: dict) -> None:
        return None

    # A real no-op: many calls per sample. How many depends on this machine's speed at the
    # moment (a no-op takes ~150 ns; 230 ns on a loaded 2-core VM gives 870 loops, not the cap).
    assert choose_loops(noop, {}) >= 100
    # The arithmetic, on given single-call times (the median of 5 counts): up to the cap.
    with monkeypatch.context() as m:
        for one_ns, loops in ((50, MAX_LOOPS), (MIN_SAMPLE_NS // 870 + 1, 870),
                              (MIN_SAMPLE_NS, 1), (10 * MIN_SAMPLE_NS, 1)):
            m.setattr(harness.measure, "time_runs",
                      lambda run, feeds, n, one_ns=one_ns, **kw: [one_ns * 9, 1, one_ns,
                                                                 one_ns, 10 * one_ns][:n])
            assert choose_loops(noop, {}) == loops, one_ns

    def one_ms(_: object, feeds: dict) -> None:
        time.sleep(0.001)

    assert choose_loops(one_ms, {}) == 1
    samples = timed_samples(one_ms, {}, iterations=5, loops=1, min_time_s=0.05,
                            max_samples=10_000)
    # samples go on, a chunk of `iterations` at a time, until they span min_time_s, and stop
    # with the chunk that crosses it (a count would depend on how long a 1 ms sleep takes on
    # a loaded machine)
    assert sum(samples) >= 0.05e9 and len(samples) % 5 == 0
    assert len(samples) == 5 or sum(samples[:-5]) < 0.05e9
    capped = timed_samples(one_ms, {}, iterations=5, loops=1, min_time_s=10.0, max_samples=12)
    assert len(capped) == 12
    looped = timed_samples(noop, {}, iterations=4, loops=50, min_time_s=0.0, max_samples=100)
    phase = Phase("forward", tuple(looped), calls_per_sample=50)
    assert len(looped) == 4 and phase.samples_ns == tuple(s / 50 for s in looped)
