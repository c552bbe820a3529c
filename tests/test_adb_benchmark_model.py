"""TFLite's ``benchmark_model`` as the adb runner: its output parsed (samples in the formats
the tool prints: TF 2.x with and without percentiles, the ``INFO:`` and logcat prefixes, the
older memory line), the runner kind told from its name or ``--runner-kind``, and the backend
running it through the fake phone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fake_phone import FakeAndroid
from sweep_fakes import InlineExecutor

from harness.backends.adb.benchmark_model import (
    benchmark_model_args,
    parse_benchmark_model,
    runner_kind,
)
from harness.backends.adb.perf_test import PerfTestOutputError
from harness.core.measurement import Measurement
from harness.errors import InputError
from harness.sweep import BenchOptions, run_bench

RECENT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/mobilenet_v2.tflite]
INFO: Loaded model /data/local/tmp/mobilenet_v2.tflite
INFO: The input model file size (MB): 13.9787
INFO: Initialized session in 4.210ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
INFO: count=31 first=25012 curr=15820 min=15577 max=25012 avg=16150.2 std=1650 p5=15601 \
median=15840 p95=17212

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
INFO: count=64 first=15790 curr=15688 min=15502 max=16980 avg=15725.4 std=231 p5=15530 \
median=15690 p95=16120

INFO: Inference timings in us: Init: 4210, First inference: 25012, Warmup (avg): 16150.2, \
Inference (avg): 15725.4
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only \
APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at \
your discretion.
INFO: Peak memory footprint (MB): init=6.125 overall=41.5
"""

LOGCAT_OLD_MEMORY = """\
11-30 07:02:11.101  4312  4312 I tflite  : Initialized session in 88.5ms.
11-30 07:02:11.930  4312  4312 I tflite  : count=4 first=230117 curr=201552 min=199870 \
max=230117 avg=208310 std=12411 p5=199870 median=201552 p95=230117
11-30 07:02:15.448  4312  4312 I tflite  : count=24 first=150112 curr=141020 min=140210 \
max=152330 avg=143388 std=3120 p5=140402 median=142110 p95=150112
11-30 07:02:15.449  4312  4312 I tflite  : Inference timings in us: Init: 88500, First \
inference: 230117, Warmup (avg): 208310, Inference (avg): 143388
11-30 07:02:15.449  4312  4312 I tflite  : Memory footprint delta from the start of the tool \
(MB): init=51.25 overall=70.5
"""

OLD_NO_PREFIX = """\
Initialized session in 3.75ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
count=12 first=150310 curr=33105 min=32588 max=150310 avg=42911.5 std=33780

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
count=50 first=33240 curr=33120 min=32690 max=33250 avg=33070.4 std=131

Inference timings in us: Init: 3750, First inference: 150310, Warmup (avg): 42911.5, \
Inference (avg): 33070.4
"""

PERIODIC = """\
INFO: count=10 first=900 curr=880 min=870 max=900 avg=881.5 std=9
INFO: Inference timings in us: Init: 1200, First inference: 1500, Warmup (avg): 1500, \
Inference (avg): 881.5
INFO: Peak memory footprint (MB): init=2.5 overall=20.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 22.75
"""

FAILED = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/m.tflite]
ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'
ERROR: Failed to initialize the interpreter
Benchmarking failed.
"""


def test_recent_output_with_percentiles() -> None:
    r = parse_benchmark_model(RECENT)
    # the timed runs' line (the second), µs -> ns
    assert r.summary == {"count": 64, "mean_ns": 15725.4e3, "min_ns": 15502e3,
                         "max_ns": 16980e3, "std_ns": 231e3, "p5_ns": 15530e3,
                         "p50_ns": 15690e3, "p95_ns": 16120e3}
    assert r.load_ns == 4_210_000 and r.first_inference_ns == 25_012_000
    assert r.peak_memory_bytes == int(41.5 * 2**20)


def test_logcat_prefix_and_the_older_memory_delta() -> None:
    r = parse_benchmark_model(LOGCAT_OLD_MEMORY)
    assert r.summary["count"] == 24 and r.summary["p50_ns"] == 142110e3
    assert r.summary["mean_ns"] == 143388e3
    assert r.load_ns == 88_500_000 and r.first_inference_ns == 230_117_000
    assert r.peak_memory_bytes is None       # a delta from the tool's start, not a peak


def test_older_output_without_percentiles() -> None:
    r = parse_benchmark_model(OLD_NO_PREFIX)
    assert r.summary == {"count": 50, "mean_ns": 33070.4e3, "min_ns": 32690e3,
                         "max_ns": 33250e3, "std_ns": 131e3}
    assert r.load_ns == 3_750_000 and r.first_inference_ns == 150_310_000


def test_only_the_timings_line() -> None:
    r = parse_benchmark_model("INFO: Initialized TensorFlow Lite runtime.\nThe input model "
                              "file size (MB): 4.27635\nInference timings in us: Init: 5402, "
                              "First inference: 101520, Warmup (avg): 92101.5, Inference "
                              "(avg): 90870.2\n")
    assert r.summary == {"mean_ns": 90870.2e3}
    assert r.load_ns == 5_402_000 and r.first_inference_ns == 101_520_000


def test_the_periodic_monitoring_peak_is_preferred() -> None:
    assert parse_benchmark_model(PERIODIC).peak_memory_bytes == int(22.75 * 2**20)


def test_a_failed_benchmark_is_an_output_error() -> None:
    with pytest.raises(PerfTestOutputError, match="Benchmarking failed"):
        parse_benchmark_model(FAILED)


def test_the_runner_kind() -> None:
    assert runner_kind(Path("out/benchmark_model")) == "benchmark_model"
    assert runner_kind(Path("android_aarch64_benchmark_model")) == "benchmark_model"
    assert runner_kind(Path("build/onnxruntime_perf_test")) == "onnxruntime_perf_test"
    assert runner_kind(Path("my-runner")) == "onnxruntime_perf_test"
    assert runner_kind(Path("my-runner"), "benchmark_model") == "benchmark_model"
    assert benchmark_model_args("/d/m.tflite", iterations=20, threads=2) == [
        "--graph=/d/m.tflite", "--num_runs=20", "--min_secs=0", "--warmup_runs=1",
        "--warmup_min_secs=0", "--num_threads=2"]


def test_runner_kind_options_are_checked(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    with pytest.raises(InputError, match="--runner-kind onnxruntime_perf_test or "
                                         "benchmark_model"):
        BenchOptions(devices=("snapdragon8gen3",), backends=("adb",), suite=suite,
                     adb="127.0.0.1:5555", runner=tmp_path, runner_kind="tflite")
    with pytest.raises(InputError, match="--runner-kind is for the adb backend"):
        BenchOptions(devices=("snapdragon8gen3",), backends=("emulated",), suite=suite,
                     runner_kind="benchmark_model")


# --------------------------------------------------------------------------- end to end

needs_adb_shell = pytest.mark.skipif(importlib.util.find_spec("adb_shell") is None,
                                     reason="adb-shell is not installed (the adb extra)")


def _run(tmp_path: Path, model: Path, phone: FakeAndroid, **kw: Any) -> list[Measurement]:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "tflite runner"\n'
        f'workloads = [{{ name = "tiny", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32", "int8-dynamic"]\nprune = [0]\n'
        '[measure]\nwarmup = 1\niterations = 20\ntimeout_s = 20\nthreads = 2\n'
        'min_time_s = 0\nsustained_s = 10\n')
    runner = tmp_path / "benchmark_model"
    runner.write_bytes(b"\x7fELF fake benchmark_model")
    options = BenchOptions(devices=("snapdragon8gen3",), backends=("adb",), suite=suite,
                           results_dir=tmp_path / "results", cache_dir=tmp_path / "cache",
                           command_line=("test",), adb=phone.address, runner=runner,
                           cooldown_max_s=0, **kw)
    run_dir = run_bench(options, executor=InlineExecutor())
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    return [Measurement.from_row(r) for r in rows]


@needs_adb_shell
def test_benchmark_model_does_not_run_onnx_artifacts(tmp_path: Path, tiny_model: Path,
                                                     home: Path) -> None:
    with FakeAndroid() as phone:
        ms = _run(tmp_path, tiny_model, phone)
    assert [m.status for m in ms] == ["unsupported", "unsupported"]   # every case recorded
    assert all("the runner benchmark_model runs tflite artifacts, this case's is 'onnx'"
               in m.reason for m in ms), [m.reason for m in ms]
    assert phone.runs == []


@needs_adb_shell
def test_benchmark_model_on_the_phone(tmp_path: Path, tiny_model: Path, home: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path with the runner as benchmark_model, on the two ONNX cases of the tiny
    suite: the format gate is opened for ONNX here (the fake runs any file it is given: what
    is tested is the command line, the output and the rows; a real .tflite workload on the
    phone is tests/test_tflite.py's)."""
    from harness.backends.adb import backend

    monkeypatch.setitem(backend.RUNNER_FORMATS, "benchmark_model", "onnx")
    with FakeAndroid(run_s=0.2) as phone:
        ms = _run(tmp_path, tiny_model, phone)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    argv = phone.runs[0]
    assert argv[0] == "/data/local/tmp/edge-harness/bin/benchmark_model"
    assert argv[1].startswith("--graph=/data/local/tmp/edge-harness/")
    assert argv[2:] == ["--num_runs=20", "--min_secs=0", "--warmup_runs=1",
                        "--warmup_min_secs=0", "--num_threads=2"]
    for m in ms:
        assert m.measured is not None and m.measured.runtime == "tflite"
        fwd = m.measured.phase("forward")
        assert fwd is not None and fwd.samples == ()
        s = fwd.summary or {}
        assert s["count"] == 20 and s["p5_ns"] <= s["p50_ns"] <= s["p95_ns"]
        assert m.measured.cold_start is not None and m.measured.peak_memory_mb
        assert m.measured.telemetry is not None and m.measured.telemetry.samples > 0
    from harness.report.frame import row_stats

    row = row_stats(ms[0])
    s0 = ms[0].measured.phase("forward").summary if ms[0].measured else None
    assert s0 and row["host_p50_ms"] == s0["p50_ns"] / 1e6
