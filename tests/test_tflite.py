"""A user's ``.tflite`` file end to end: the format (suffix and ``TFL3`` identifier, weights
counted), the suite key ``tflite = "..."``, its one level (``as-is``), host timing through
LiteRT, the emulated row's prediction error with host figures kept, and ``benchmark_model`` on
the fake phone. The model is the tiny FULLY_CONNECTED FlatBuffer of conftest (no TensorFlow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sweep_fakes import InlineExecutor

from harness.artifacts.formats import FORMATS, TFLITE, format_of
from harness.artifacts.tflite import random_inputs, read_model
from harness.build import build_artifact, lookup_artifact
from harness.cache import artifact_size_bytes, model_files
from harness.core.measurement import Measurement
from harness.core.types import ArtifactRef, WorkloadRef
from harness.errors import InputError, Unsupported
from harness.runtimes import artifact_file, runtime_of
from harness.suites import expand, load_suite
from harness.sweep import BenchOptions, run_bench
from harness.variants import QuantSpec, parse_prune
from harness.workloads import get_workload
from harness.workloads.tflitefile import TfliteFileWorkload

needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="ai-edge-litert is not installed (the tflite extra)")
needs_adb_shell = pytest.mark.skipif(importlib.util.find_spec("adb_shell") is None,
                                     reason="adb-shell is not installed (the adb extra)")
X = "serving_default/x:0"   # the tiny model's input, named as TF's converter names them


def _weights(model: Path) -> tuple[np.ndarray, np.ndarray]:
    """The tiny model's weight matrix and bias, read back from its buffers."""
    m = read_model(model)
    data = model.read_bytes()
    (w_off, w_size), (b_off, b_size) = m.buffers[1], m.buffers[2]
    w = np.frombuffer(data, np.float32, count=w_size // 4, offset=w_off).reshape(3, 4)
    b = np.frombuffer(data, np.float32, count=b_size // 4, offset=b_off)
    return w, b


# --------------------------------------------------------------------------- the format


def test_the_format_is_told_by_suffix_and_identifier(tiny_tflite_model: Path,
                                                     tmp_path: Path) -> None:
    assert format_of(tiny_tflite_model) is TFLITE is FORMATS.get("tflite")
    assert runtime_of(tiny_tflite_model) == "litert"
    assert artifact_file("litert") == "model.tflite"
    assert tiny_tflite_model.read_bytes()[4:8] == b"TFL3"
    assert model_files(tiny_tflite_model) == [tiny_tflite_model]
    assert artifact_size_bytes(tiny_tflite_model) == tiny_tflite_model.stat().st_size
    renamed = tmp_path / "renamed.tflite"      # an ONNX file given the wrong suffix
    renamed.write_bytes(b"\x08\x0a\x12\x04ONNXmore bytes")
    with pytest.raises(InputError, match=r"renamed\.tflite: not a tflite file: bytes 4\.\.8 "
                                         r"are b'ONNX', not b'TFL3'"):
        format_of(renamed)
    assert format_of(tmp_path / "not-yet-built.tflite") is TFLITE   # no bytes to check yet


def test_inspection_counts_the_weights_and_their_zeros(tiny_tflite_model: Path) -> None:
    from harness.predict import artifact_facts

    stats = TFLITE.inspect(tiny_tflite_model)
    # the 3x4 FULLY_CONNECTED weights (the bias is not counted), first column zero
    assert (stats.params, stats.zero_params, stats.sparsity) == (12, 3, 0.25)
    facts = artifact_facts(tiny_tflite_model, ref=ArtifactRef(
        key="k", format="tflite", filename=tiny_tflite_model.name))
    assert (facts.format, facts.runtime, facts.params, facts.zero_params) == (
        "tflite", "litert", 12, 3)
    assert facts.size_bytes == tiny_tflite_model.stat().st_size and facts.sha256


def test_fp16_weights_are_counted_through_their_dequantize(tmp_path: Path) -> None:
    pytest.importorskip("flatbuffers")
    from conftest import tiny_tflite

    fp16 = tiny_tflite(tmp_path / "fp16.tflite", fp16=True)
    m = read_model(fp16)
    assert m.tensors[m.weights[0]].type_name == "float16"   # the stored constant, not w
    stats = TFLITE.inspect(fp16)
    assert (stats.params, stats.zero_params) == (12, 3)


def test_weights_in_external_buffer_files_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("flatbuffers")
    from conftest import tiny_tflite

    model = tiny_tflite(tmp_path / "ext.tflite", external=True)
    with pytest.raises(InputError, match=r"ext\.tflite: 1 tensor\(s\) keep their data in "
                                         r"external buffer files \(first: 'w'\)"):
        TfliteFileWorkload(name="ext", path=model).check()


def test_a_truncated_or_foreign_file_is_an_input_error(tiny_tflite_model: Path,
                                                      tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tiny_tflite_model.read_bytes()[:40])
    with pytest.raises(InputError, match=r"cut\.tflite: not a valid TFLite model"):
        read_model(cut)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"other\.bin: not a TFLite model: bytes 4\.\.8"):
        read_model(other)


def test_the_emulator_makes_no_prediction_and_says_why(tiny_tflite_model: Path) -> None:
    from harness.predict import predict_on

    with pytest.raises(Unsupported, match="the emulator costs ONNX graphs"):
        TFLITE.emulator_graph(tiny_tflite_model)
    out = predict_on(tiny_tflite_model, "snapdragon8gen3", sustained_s=10, period_ms=None,
                     breakdown_dir=None, artifact_key="k")
    assert "the emulator costs ONNX graphs" in out["prediction"]["error"]
    assert out["trace"] is None


def test_harness_emulate_refuses_it_with_the_reason(tiny_tflite_model: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["emulate", str(tiny_tflite_model), "--device", "snapdragon8gen3"]) == 2
    err = capsys.readouterr().err
    assert "tiny.tflite: the emulator costs ONNX graphs, not TFLite FlatBuffers" in err


def test_inputs_follow_the_model_and_are_seeded(tiny_tflite_model: Path) -> None:
    feeds = random_inputs(tiny_tflite_model, seed=0)
    x = feeds["serving_default/x:0"]
    assert list(feeds) == [X] and x.shape == (1, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x, random_inputs(tiny_tflite_model, seed=0)[X])
    w = TfliteFileWorkload(name="mine", path=tiny_tflite_model)
    np.testing.assert_array_equal(w.timing_inputs()[X], x)
    assert len(w.calibration_inputs()) == 16
    assert not np.array_equal(w.calibration_inputs()[0][X], x)


# --------------------------------------------------------------------------- the suite key


def _suite(tmp_path: Path, entry: str, *, extra: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f'schema_version = 1\nworkloads = [{entry}]\nquant = ["fp32"]\n'
                    f'prune = [0, 50]\n{extra}')
    return path


@pytest.fixture
def models(tmp_path: Path, tiny_tflite_model: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    (d / "mine.tflite").write_bytes(tiny_tflite_model.read_bytes())
    return d


def test_a_tflite_workload_in_a_suite(tmp_path: Path, models: Path) -> None:
    suite = load_suite(_suite(tmp_path, '{ name = "mine", tflite = "models/mine.tflite" }'))
    ref = suite.workloads[0]
    assert ref.tflite == (models / "mine.tflite").resolve() and ref.onnx is None
    assert WorkloadRef.from_json(json.loads(json.dumps(ref.to_json()))) == ref
    # its one level unless it names its own; the suite's pruning levels
    quant, prune = suite.levels_for("mine")
    assert [q.name for q in quant] == ["as-is"] and [p.name for p in prune] == ["0", "50"]
    assert [c.case_id for c in expand(suite, devices=["snapdragon8gen3"])] == [
        "mine/as-is/prune-0/snapdragon8gen3", "mine/as-is/prune-50/snapdragon8gen3"]
    assert isinstance(get_workload(ref), TfliteFileWorkload)
    own = load_suite(_suite(tmp_path, '{ name = "mine", tflite = "models/mine.tflite", '
                                      'quant = ["as-is", "int8-dynamic"] }'))
    assert [q.name for q in own.levels_for("mine")[0]] == ["as-is", "int8-dynamic"]


@pytest.mark.parametrize(("entry", "field", "message"), [
    ('{ name = "mine", tflite = "models/none.tflite" }', "workloads[0].tflite",
     r"no such \.tflite file: .*models/none\.tflite"),
    ('{ name = "mine", tflite = "models/mine.tflite", onnx = "models/mine.onnx" }',
     "workloads[0].tflite", "give onnx = ... or tflite = ..., not both"),
    ('{ name = "mine", tflte = "models/mine.tflite" }', "workloads[0].tflte",
     "Did you mean 'tflite'"),
    ('{ name = "mine", tflite = "models/fake.tflite" }', "workloads[0].tflite",
     "is not a TFLite model"),
    ('{ name = "mine", tflite = "models/mine.tflite", shapes = { x = [1, 4] } }',
     "workloads[0].shapes", "a .tflite model is timed at the input shapes stored in it"),
])
def test_bad_tflite_entries_name_the_field(tmp_path: Path, models: Path, entry: str,
                                           field: str, message: str) -> None:
    (models / "fake.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=message) as info:
        load_suite(_suite(tmp_path, entry))
    assert info.value.field is not None and info.value.field.startswith(field)
    assert info.value.file is not None and info.value.file.endswith("s.toml")


def test_the_schema_knows_the_key(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "suite.v1.schema.json")
                        .read_text())
    good = {"schema_version": 1, "workloads": [{"name": "m", "tflite": "m.tflite"}],
            "quant": ["as-is"], "prune": [0]}
    jsonschema.validate(good, schema)
    for bad in ({"name": "m", "tflite": "m.tflite", "onnx": "m.onnx"},
                {"name": "m", "tflite": "m.tflite", "shapes": {"x": [1]}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, "workloads": [bad]}, schema)


# --------------------------------------------------------------------------- its levels


def test_only_the_file_as_given_is_built(tiny_tflite_model: Path, tiny_model: Path,
                                         tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    w = TfliteFileWorkload(name="mine", path=tiny_tflite_model)
    dense = parse_prune(0)
    assert lookup_artifact(w, quant=QuantSpec("as-is"), prune=dense, cache_dir=cache) is None
    art = build_artifact(w, quant=QuantSpec("as-is"), prune=dense, cache_dir=cache)
    assert art.name == "model.tflite" and art.read_bytes() == tiny_tflite_model.read_bytes()
    assert lookup_artifact(w, quant=QuantSpec("as-is"), prune=dense, cache_dir=cache) == art
    with pytest.raises(Unsupported, match="does not convert, quantize or prune TFLite"):
        build_artifact(w, quant=QuantSpec("int8-dynamic"), prune=dense, cache_dir=cache)
    with pytest.raises(Unsupported, match=r"pruning level '50': the harness does not prune"):
        build_artifact(w, quant=QuantSpec("as-is"), prune=parse_prune(50), cache_dir=cache)
    onnx_workload = get_workload(WorkloadRef(name="tiny", onnx=tiny_model,
                                             shapes=(("input", (1, 4, 8, 8)),)))
    with pytest.raises(Unsupported, match=r"level 'as-is' measures a \.tflite file as given"):
        build_artifact(onnx_workload, quant=QuantSpec("as-is"), prune=dense, cache_dir=cache)
    assert lookup_artifact(onnx_workload, quant=QuantSpec("as-is"), prune=dense,
                           cache_dir=cache) is None


# --------------------------------------------------------------------------- on the host


@needs_litert
def test_litert_runs_and_times_it(tiny_tflite_model: Path) -> None:
    from harness.measure import measure_artifact
    from harness.runtimes import load

    loaded = load(tiny_tflite_model, threads=1)
    x = random_inputs(tiny_tflite_model, seed=3)
    w, b = _weights(tiny_tflite_model)
    (y,) = loaded.run(x)
    np.testing.assert_allclose(y, x[X] @ w.T + b, rtol=1e-5, atol=1e-6)
    from conftest import tiny_tflite

    (y16,) = load(tiny_tflite(tiny_tflite_model.with_name("fp16.tflite"), fp16=True),
                  threads=1).run(x)
    np.testing.assert_allclose(y16, y, rtol=1e-2, atol=1e-2)   # the same weights, in fp16
    out = measure_artifact(tiny_tflite_model, x, warmup=1, iterations=5, threads=1)
    m = out["measured"]
    assert m["runtime"] == "litert" and m["runtime_version"]
    assert len(m["phases"][0]["samples"]) >= 5
    assert m["cold_start"]["load_ns"] > 0 and m["peak_memory_mb"] > 0


def test_without_litert_the_case_is_unsupported_naming_the_extra(
        tiny_tflite_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.runtimes import litert
    from harness.worker import run_task

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)   # import fails
    with pytest.raises(Unsupported, match=r"pip install 'edge-harness\[tflite\]'"):
        litert.load(tiny_tflite_model, threads=1)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, **random_inputs(tiny_tflite_model, seed=0))
    out = run_task({"kind": "measure", "workload": WorkloadRef(
        name="mine", tflite=tiny_tflite_model).to_json(), "artifact": str(tiny_tflite_model),
        "inputs": str(inputs), "warmup": 0, "iterations": 1, "threads": 1})
    assert out["status"] == "unsupported" and "edge-harness[tflite]" in out["reason"]


def _bench(tmp_path: Path, model: Path, backends: tuple[str, ...], **kw: Any
           ) -> list[Measurement]:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "a .tflite file"\n'
        f'workloads = [{{ name = "mine", tflite = "{model}" }}]\n'
        'quant = ["fp32"]\nprune = [0]\n'
        '[measure]\nwarmup = 1\niterations = 20\ntimeout_s = 60\nthreads = 2\n'
        'min_time_s = 0\nsustained_s = 10\n')
    options = BenchOptions(devices=("snapdragon8gen3",), backends=backends, suite=suite,
                           results_dir=tmp_path / "results", cache_dir=tmp_path / "cache",
                           command_line=("test",), **kw)
    run_dir = run_bench(options, executor=InlineExecutor())
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    return [Measurement.from_row(r) for r in rows]


@needs_litert
def test_host_and_emulated_rows(tmp_path: Path, tiny_tflite_model: Path) -> None:
    rows = {m.backend: m for m in _bench(tmp_path, tiny_tflite_model, ("emulated", "host"))}
    assert {b: m.status for b, m in rows.items()} == {"emulated": "ok", "host": "ok"}, [
        m.reason for m in rows.values()]
    for m in rows.values():
        assert m.quant == "as-is" and m.precision == "as-is"
        assert m.artifact is not None and m.artifact.format == "tflite"
        assert m.artifact.params == 12
        assert m.measured is not None and m.measured.runtime == "litert"
        fwd = m.measured.phase("forward")
        assert fwd is not None and len(fwd.samples) >= 20
        assert m.measured.cold_start is not None and m.measured.peak_memory_mb
        assert m.quality is None            # a user's file has no metric
    emulated = rows["emulated"]
    # no prediction, and why; the host figures stand
    assert emulated.prediction is not None and emulated.prediction.error is not None
    assert "the emulator costs ONNX graphs" in emulated.prediction.error
    assert emulated.prediction.latency_ms is None
    assert rows["host"].prediction is None
    # the report says which cases have no prediction, and why
    from harness.report.tables import write_report

    (run_dir,) = (tmp_path / "results").iterdir()
    terminal = write_report(run_dir, html=False, plots=False, width=200)
    assert "No device prediction (host figures stand):\n  mine/as-is/prune-0/snapdragon8gen3: " \
           "Unsupported: the emulator costs ONNX graphs" in terminal
    assert "## No device prediction" in (run_dir / "report.md").read_text()


# --------------------------------------------------------------------------- on a phone


def _runner(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x7fELF fake runner")   # the fake phone acts as the tool
    return path


@needs_adb_shell
def test_benchmark_model_runs_it_on_the_phone(tmp_path: Path, tiny_tflite_model: Path,
                                              home: Path) -> None:
    from fake_phone import FakeAndroid

    with FakeAndroid(run_s=0.2) as phone:
        ms = _bench(tmp_path, tiny_tflite_model, ("adb",), adb=phone.address,
                    runner=_runner(tmp_path, "benchmark_model"), cooldown_max_s=0)
    assert [m.status for m in ms] == ["ok"], [m.reason for m in ms]
    (argv,) = phone.runs
    assert argv[0] == "/data/local/tmp/edge-harness/bin/benchmark_model"
    assert argv[1].startswith("--graph=/data/local/tmp/edge-harness/")
    assert argv[1].endswith("/model.tflite")
    m = ms[0]
    assert m.measured is not None and m.measured.runtime == "tflite"
    s = m.measured.phase("forward").summary or {}   # type: ignore[union-attr]
    assert s["count"] == 20 and s["mean_ns"] > 0
    assert m.artifact is not None and m.artifact.format == "tflite"
    # quality is the host's business: the row says the phone timed random inputs
    assert any("generated inputs" in n for n in m.measured.extra["notes"])


@needs_adb_shell
def test_the_onnx_runner_does_not_run_it(tmp_path: Path, tiny_tflite_model: Path,
                                         home: Path) -> None:
    from fake_phone import FakeAndroid

    with FakeAndroid() as phone:
        ms = _bench(tmp_path, tiny_tflite_model, ("adb",), adb=phone.address,
                    runner=_runner(tmp_path, "onnxruntime_perf_test"), cooldown_max_s=0)
    assert [m.status for m in ms] == ["unsupported"]
    assert "runs onnx artifacts, this case's is 'tflite'" in ms[0].reason
    assert phone.runs == []
