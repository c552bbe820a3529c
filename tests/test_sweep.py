"""The sweep through the backend seam, fast: a tiny ONNX workload built in code, a backend
injected through the registry (a fake phone, the edge of the system), and an executor that
runs the real worker tasks in this process instead of in subprocesses.

What is under test is the sweep itself: ordering, progress, resume, one crashing case, mixed
backends in one run, provenance on predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sweep_fakes import FakePhone, InlineExecutor, tiny_suite

from harness import results
from harness.errors import InputError
from harness.sweep import BenchOptions, Progress, run_bench
from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Workload


@pytest.fixture
def suite(tmp_path: Path, tiny_model: Path) -> Path:
    return tiny_suite(tmp_path / "s.toml", tiny_model, measure="warmup = 1\niterations = 5\n"
                      "threads = 1\nsustained_s = 10")


def _options(tmp_path: Path, suite: Path, **kw: Any) -> BenchOptions:
    base: dict[str, Any] = {"devices": ("snapdragon8gen3", "raspberrypi5"),
                            "backends": ("fakephone",), "suite": suite,
                            "results_dir": tmp_path / "results",
                            "cache_dir": tmp_path / "cache", "command_line": ("test",)}
    base.update(kw)
    return BenchOptions(**base)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]


def test_cases_run_in_order_with_progress(tmp_path: Path, suite: Path,
                                          fake_phone: type[FakePhone]) -> None:
    events: list[Progress] = []
    run_dir = run_bench(_options(tmp_path, suite), progress=events.append,
                        executor=InlineExecutor())
    ids = [r["case_id"] for r in _rows(run_dir)]
    assert ids == ["tiny/fp32/prune-0/snapdragon8gen3@fakephone",
                   "tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone",
                   "tiny/fp32/prune-0/raspberrypi5@fakephone",
                   "tiny/int8-dynamic/prune-0/raspberrypi5@fakephone"]
    assert [(e.index, e.measurement is None) for e in events] == [
        (1, True), (1, False), (2, True), (2, False), (3, True), (3, False), (4, True),
        (4, False)]
    run = results.load_run(run_dir)
    assert run.manifest["backends"] == ["fakephone"]
    m = run.measurements[1]
    assert m.backend == "fakephone" and m.measured and m.measured.where == "fake-serial"
    assert m.samples_ns() == (2e6,) * 5
    # facts come from the describe task even for a backend that does not predict
    assert m.artifact and m.artifact.format == "onnx" and m.artifact.size_bytes
    assert m.prediction is None


def test_a_crashing_case_costs_only_its_row(tmp_path: Path, suite: Path,
                                            fake_phone: type[FakePhone]) -> None:
    fake_phone.crash_on = {"tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"}
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    by_id = {r["case_id"]: r for r in _rows(run_dir)}
    assert len(by_id) == 4
    bad = by_id["tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"]
    assert bad["status"] == "error" and "usb cable pulled" in bad["reason"]
    assert sum(r["status"] == "ok" for r in by_id.values()) == 3


def test_resume_runs_only_what_is_missing(tmp_path: Path, suite: Path,
                                          fake_phone: type[FakePhone]) -> None:
    fake_phone.stop_on = {"tiny/fp32/prune-0/raspberrypi5@fakephone"}
    with pytest.raises(KeyboardInterrupt):
        run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    (run_dir,) = (tmp_path / "results").iterdir()
    assert len(_rows(run_dir)) == 2
    fake_phone.stop_on, fake_phone.seen = set(), []
    # resumed with nothing but the run: suite, devices and backends come from its manifest
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
              executor=InlineExecutor())
    assert fake_phone.seen == ["tiny/fp32/prune-0/raspberrypi5@fakephone",
                               "tiny/int8-dynamic/prune-0/raspberrypi5@fakephone"]
    assert len({r["case_id"] for r in _rows(run_dir)}) == 4 == len(_rows(run_dir))


def test_resume_refuses_another_sweep(tmp_path: Path, suite: Path,
                                      fake_phone: type[FakePhone]) -> None:
    run_dir = run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",)),
                        executor=InlineExecutor())
    with pytest.raises(InputError, match="devices"):
        run_bench(_options(tmp_path, suite, devices=("raspberrypi5",), resume=run_dir),
                  executor=InlineExecutor())
    with pytest.raises(InputError, match="measure"):
        from harness.sweep import MeasureOverrides

        run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",), resume=run_dir,
                           overrides=MeasureOverrides(iterations=7)),
                  executor=InlineExecutor())


def test_mixed_backends_in_one_run_with_provenance(tmp_path: Path, suite: Path,
                                                   fake_phone: type[FakePhone]) -> None:
    """The emulated backend (real host worker + real emulator) beside a fake phone: one row
    per backend and cell, and every prediction says what it was made with."""
    from harness.emulator import EMULATOR_VERSION
    from harness.profiles import load_profile
    from harness.report.frame import summary_frame

    run_dir = run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",),
                                 backends=("emulated", "fakephone"), quant=("fp32",)),
                        executor=InlineExecutor())
    run = results.load_run(run_dir)
    by_backend = {m.backend: m for m in run.measurements}
    assert set(by_backend) == {"emulated", "fakephone"}
    emu, phone = by_backend["emulated"], by_backend["fakephone"]
    assert emu.case_id == "tiny/fp32/prune-0/snapdragon8gen3"   # the id older runs used
    assert phone.case_id == emu.case_id + "@fakephone"
    assert emu.status == "ok", emu.reason
    assert emu.predicted.latency_ms and emu.predicted.latency_ms > 0
    assert emu.trace and emu.trace["latency_ms"]
    prov = load_profile("snapdragon8gen3").provenance()
    assert emu.provenance.emulator_version == EMULATOR_VERSION
    assert emu.provenance.profile_sha256 == prov["profile_sha256"]
    assert emu.provenance.artifact_key == emu.artifact.key if emu.artifact else False
    assert emu.samples_ns() and emu.measured and emu.measured.where == "host"
    # the error to expect travels with the prediction; a range only where the fit applies
    cal = emu.predicted.detail["calibration"]
    assert cal["unit"] == "npu" and cal["ratio_p10"] < 1 < cal["ratio_p90"]
    band = emu.predicted.detail.get("latency_range_ms")
    assert (band is not None) == (emu.predicted.detail["unit"] == "npu")
    breakdown = run_dir / str(emu.predicted.breakdown_file)
    assert breakdown.is_file() and json.loads(breakdown.read_text())
    assert breakdown.name.startswith("tiny_fp32_prune-0_snapdragon8gen3-")  # named by case
    df = summary_frame(run)
    assert sorted(df["backend"]) == ["emulated", "fakephone"]
    # per-case files are named by the case, not by its position in this command
    assert [p.name.rsplit("-", 1)[0] for p in (run_dir / "logs").glob("tiny_fp32*.log")] == [
        "tiny_fp32_prune-0_snapdragon8gen3"]


def test_host_backend_needs_no_device(tmp_path: Path, suite: Path) -> None:
    run_dir = run_bench(_options(tmp_path, suite, devices=(), backends=("host",),
                                 quant=("fp32",)), executor=InlineExecutor())
    (m,) = results.load_run(run_dir).measurements
    assert m.case_id == "tiny/fp32/prune-0@host" and m.device is None
    assert m.device_label == "host" and m.status == "ok", m.reason
    assert m.prediction is None and len(m.samples_ns()) == 5


def test_bad_options_fail_before_any_work(tmp_path: Path, suite: Path) -> None:
    with pytest.raises(InputError, match="Did you mean 'emulated'"):
        BenchOptions(backends=("emulatd",))
    with pytest.raises(InputError, match="--device"):
        run_bench(_options(tmp_path, suite, devices=(), backends=("emulated",)),
                  executor=InlineExecutor())
    assert not (tmp_path / "results").exists()


class BrokenInputs(Workload):
    """A registered workload (injected through the registry) whose inputs cannot be made."""

    name = "brokeninputs"

    def __init__(self) -> None:
        self.source = BrokenInputs.source_model

    source_model: ClassVar[Path]

    def fingerprint(self) -> dict[str, Any]:
        return {"workload": "brokeninputs", "model": str(self.source)}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        import shutil

        shutil.copyfile(self.source, out)

    def timing_inputs(self) -> Feeds:
        raise OSError("camera not found")

    def calibration_inputs(self) -> list[Feeds]:
        return []


def test_a_failing_workload_costs_only_its_cases(tmp_path: Path, tiny_model: Path,
                                                 fake_phone: type[FakePhone]) -> None:
    from harness.workloads import WORKLOADS

    BrokenInputs.source_model = tiny_model
    suite = tmp_path / "two.toml"
    suite.write_text(
        'schema_version = 1\n'
        f'workloads = ["brokeninputs", {{ name = "tiny", onnx = "{tiny_model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32"]\nprune = [0]\n[measure]\niterations = 3\nwarmup = 0\nmin_time_s = 0\n')
    with WORKLOADS.registered("brokeninputs", BrokenInputs):
        run_dir = run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",)),
                            executor=InlineExecutor())
    by_id = {r["case_id"]: r for r in _rows(run_dir)}
    broken = by_id["brokeninputs/fp32/prune-0/snapdragon8gen3@fakephone"]
    assert broken["status"] == "error" and "camera not found" in broken["reason"]
    assert by_id["tiny/fp32/prune-0/snapdragon8gen3@fakephone"]["status"] == "ok"


def _dynamic_suite(tmp_path: Path, tiny_model: Path, shapes: str = "") -> Path:
    path = tmp_path / "dyn.toml"
    path.write_text(
        'schema_version = 1\n'
        f'workloads = [{{ name = "tiny", onnx = "{tiny_model}"{shapes} }}]\n'
        'quant = ["fp32"]\nprune = [0]\n[measure]\niterations = 3\nwarmup = 0\nmin_time_s = 0\n'
        'sustained_s = 10\n')
    return path


def test_a_dynamic_input_without_a_shape_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    suite = _dynamic_suite(tmp_path, tiny_model)
    with pytest.raises(InputError, match=r"input \['batch', 4, 8, 8\].*--shape input="):
        run_bench(_options(tmp_path, suite, backends=("emulated",)), executor=InlineExecutor())
    assert not (tmp_path / "results").exists()
    with pytest.raises(InputError, match="Did you mean 'input'"):
        run_bench(_options(tmp_path, suite, backends=("host",),
                           shapes=(("inptu", (1, 4, 8, 8)),)), executor=InlineExecutor())
    with pytest.raises(InputError, match="fixed at 4"):
        run_bench(_options(tmp_path, suite, backends=("host",),
                           shapes=(("input", (1, 3, 8, 8)),)), executor=InlineExecutor())


def test_the_emulator_costs_the_shape_the_host_timed(tmp_path: Path, tiny_model: Path) -> None:
    """Batch 8 given with --shape: the host times batch 8, and the prediction is the one
    `harness emulate --shape input=8,4,8,8` gives for the same artifact, not batch 1's."""
    from harness.emulator import emulate
    from harness.profiles import load_profile

    suite = _dynamic_suite(tmp_path, tiny_model)
    run_dir = run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",),
                                 backends=("emulated",), shapes=(("input", (8, 4, 8, 8)),)),
                        executor=InlineExecutor())
    (m,) = results.load_run(run_dir).measurements
    assert m.status == "ok", m.reason
    assert m.predicted.detail["input_shapes"] == {"input": [8, 4, 8, 8]}
    assert m.predicted.detail["fixed_dims"] == []        # nothing assumed
    assert m.artifact and m.artifact.path
    profile = load_profile("snapdragon8gen3")
    at8 = emulate(Path(m.artifact.path), profile, input_shapes={"input": [8, 4, 8, 8]})
    at1 = emulate(Path(m.artifact.path), profile)
    assert m.predicted.latency_ms == pytest.approx(at8.latency_ms)
    assert at8.latency_ms > at1.latency_ms
    assert results.load_run(run_dir).manifest["shapes"] == {"tiny": {"input": [8, 4, 8, 8]}}


def test_host_work_once_per_artifact(tmp_path: Path, suite: Path) -> None:
    """Two devices and the host backend: each artifact is timed, evaluated and compared once.
    The Pi's case comes first but runs under the 8 Gen 3's smaller app cap (the smallest cap
    of the cases sharing the artifact): a pass there is a pass for both, so the 8 Gen 3 and
    the host backend (no cap) reuse it, and every reusing row names the run."""
    from harness.profiles import load_profile

    caps = {d: load_profile(d).memory.app_cap_mb.value for d in ("snapdragon8gen3",
                                                                  "raspberrypi5")}
    assert caps["snapdragon8gen3"] < caps["raspberrypi5"]
    run_dir = run_bench(_options(tmp_path, suite, devices=("raspberrypi5", "snapdragon8gen3"),
                                 backends=("emulated", "host"), quant=("fp32",)),
                        executor=InlineExecutor())
    ms = {m.case_id: m for m in results.load_run(run_dir).measurements}
    pi = ms["tiny/fp32/prune-0/raspberrypi5"]
    sd = ms["tiny/fp32/prune-0/snapdragon8gen3"]
    host = ms["tiny/fp32/prune-0@host"]
    assert all(m.status == "ok" for m in ms.values()), {k: m.reason for k, m in ms.items()}
    assert pi.measured and pi.measured.origin is None
    assert pi.measured.memory_cap_mb == caps["snapdragon8gen3"]
    assert sd.measured and sd.measured.origin == pi.case_id
    assert host.measured and host.measured.origin == pi.case_id
    assert host.samples_ns() == pi.samples_ns() == sd.samples_ns()
    assert sd.predicted.latency_ms != pi.predicted.latency_ms  # predictions stay per device


def test_host_runs_reuse_rule() -> None:
    from harness.backends.base import HostRuns

    runs = HostRuns()
    runs.store("a", 100.0, {"status": "ok"}, "first")
    assert runs.lookup("a", 200.0) == ({"status": "ok"}, "first")
    assert runs.lookup("a", None) is not None
    assert runs.lookup("a", 50.0) is None
    runs.store("b", 100.0, {"status": "oom"}, "x")
    assert runs.lookup("b", 50.0) is not None and runs.lookup("b", 200.0) is None
    runs.store("c", 100.0, {"status": "error"}, "y")
    assert runs.lookup("c", 100.0) is not None and runs.lookup("c", 200.0) is None
    assert runs.lookup("missing", 100.0) is None


def test_paced_emulated_runs_follow_the_thermal_model(tmp_path: Path, suite: Path) -> None:
    """--pace with the emulated backend: the host run is held to the device's latency, the
    row keeps the per-inference targets, temperature and clock, and a plot shows them."""
    from harness.report.frame import summary_frame
    from harness.report.plots import build_figures
    from harness.sweep import MeasureOverrides

    run_dir = run_bench(_options(tmp_path, suite, devices=("snapdragon8gen3",),
                                 backends=("emulated",), quant=("fp32",),
                                 overrides=MeasureOverrides(pace=True)),
                        executor=InlineExecutor())
    run = results.load_run(run_dir)
    (m,) = run.measurements
    assert m.status == "ok", m.reason
    pace = m.measured.pace if m.measured else None
    assert pace and len(pace["target_ms"]) == len(m.samples_ns()) == 5
    assert pace["target_ms"][0] == pytest.approx(m.predicted.latency_ms, abs=1e-6)
    assert len(pace["temp_c"]) == len(pace["clock_fraction"]) == 5
    assert m.measured and m.measured.origin is None      # paced runs are never shared
    names = [n for n, _, _ in build_figures(run, summary_frame(run))]
    assert "paced-snapdragon8gen3" in names
