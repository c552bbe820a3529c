"""``harness calibrate --from-run RUN --write``: a run with emulated and adb (fake phone)
rows of the same cells refits the profile's CPU efficiency into its own phone overlay
(``devices/fitted/phone-<device>.toml``), which the profile then loads. Every test works on a
copy of devices/ ($HARNESS_DEVICES_DIR): the checkout's profiles are never written."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_phone import FakeAndroid
from sweep_fakes import InlineExecutor

from harness.datafiles import data_dir
from harness.sweep import BenchOptions, run_bench

pytest.importorskip("adb_shell")

DEVICE = "snapdragon8gen3"


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = data_dir("devices", "HARNESS_DEVICES_DIR")
    dst = tmp_path / "devices"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("phone-*.toml"))
    monkeypatch.setenv("HARNESS_DEVICES_DIR", str(dst))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr("harness.backends.adb.backend.COOLDOWN_POLL_S", 0.05)
    monkeypatch.setattr("harness.backends.adb.backend.TELEMETRY_PERIOD_S", 0.05)
    return dst


@pytest.fixture
def phone() -> Iterator[FakeAndroid]:
    # a phone slower than the emulator thinks: the fit has something to remove
    with FakeAndroid(base_latency_ms=0.1) as p:
        yield p


def _bench(tmp_path: Path, model: Path, phone: FakeAndroid, name: str) -> Path:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "refit"\n'
        f'workloads = [{{ name = "tiny", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32"]\nprune = [0]\n'
        '[measure]\nwarmup = 1\niterations = 10\ntimeout_s = 20\nthreads = 1\n'
        'min_time_s = 0\nsustained_s = 10\n')
    runner = tmp_path / "onnxruntime_perf_test"
    runner.write_bytes(b"\x7fELF fake runner")
    options = BenchOptions(devices=(DEVICE,), backends=("emulated", "adb"), suite=suite,
                           results_dir=tmp_path / name, cache_dir=tmp_path / "cache",
                           command_line=("test",), adb=phone.address, runner=runner,
                           cooldown_max_s=0)
    return run_bench(options, executor=InlineExecutor())


def test_write_refits_the_device_into_its_own_overlay(
        tmp_path: Path, tiny_model: Path, phone: FakeAndroid, devices: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.calibrate import fit_from_run
    from harness.cli import main
    from harness.profiles import load_profile

    shared = (devices / "fitted" / "calibration.toml").read_bytes()
    before = load_profile(DEVICE)
    hashes_before = before.provenance()
    cpu_before = next(u for u in before.units if u.name == "cpu").efficiency.value
    run_dir = _bench(tmp_path, tiny_model, phone, "run1")
    (fit,) = fit_from_run(run_dir)
    assert fit.scale is not None, "the emulator predicted no case on the phone's unit (cpu)"
    assert fit.phone["serialno"] == "FAKE0001" and fit.phone["soc_model"] == "SM8650"
    assert not fit.profile_changed

    assert main(["calibrate", "--from-run", str(run_dir), "--write"]) == 0
    overlay = devices / "fitted" / f"phone-{DEVICE}.toml"
    assert overlay.is_file()
    assert (devices / "fitted" / "calibration.toml").read_bytes() == shared   # untouched
    doc = tomllib.loads(overlay.read_text())
    meta = doc["phone_fit"]
    assert meta["run_id"] == run_dir.name and meta["serialno"] == "FAKE0001"
    assert meta["soc_model"] == "SM8650" and meta["rows"] == 1
    assert meta["cases"] == [f"tiny/fp32/prune-0/{DEVICE}"]
    assert meta["median_abs_error_after_pct"] < meta["median_abs_error_before_pct"]
    assert meta["scale"] == pytest.approx(fit.scale, rel=1e-5)

    # the profile loads it, as it loads the shared overlay, and says so in its provenance
    after = load_profile(DEVICE)
    eff = next(u for u in after.units if u.name == "cpu").efficiency
    assert eff.value == pytest.approx(cpu_before * fit.scale, rel=1e-5)
    assert eff.basis == "fitted" and run_dir.name in eff.source and "FAKE0001" in eff.source
    assert after.provenance()["overlay_sha256"] != hashes_before["overlay_sha256"]
    assert after.provenance()["profile_sha256"] != hashes_before["profile_sha256"]
    plain = load_profile(DEVICE, fitted=False)          # the hand-written figures alone
    assert next(u for u in plain.units if u.name == "cpu").efficiency.value != eff.value
    other = load_profile("snapdragon8gen2")               # other profiles: as before
    assert other.provenance()["overlay_sha256"] == hashlib.sha256(shared).hexdigest()

    # the same run again would scale the already scaled figure: refused, nothing written
    text = overlay.read_text()
    capsys.readouterr()
    assert main(["calibrate", "--from-run", str(run_dir), "--write"]) == 2
    assert "the profile changed since run" in capsys.readouterr().err
    assert overlay.read_text() == text

    # a new run predicts with the refit: its emulated latency moved by the scale
    run2 = _bench(tmp_path, tiny_model, phone, "run2")
    (fit2,) = fit_from_run(run2)
    assert not fit2.profile_changed
    p1, p2 = fit.rows[0]["predicted_ms"], fit2.rows[0]["predicted_ms"]
    assert (p2 > p1) == (fit.scale < 1)


def test_write_without_a_fit_says_so(tmp_path: Path, devices: Path) -> None:
    from harness.calibrate import RunFit, write_phone_overlay
    from harness.errors import InputError

    fit = RunFit(device=DEVICE, unit="cpu", efficiency=0.5, run_id="r",
                 rows=[{"case": "c", "fitted": False}])
    with pytest.raises(InputError, match="nothing to write"):
        write_phone_overlay(fit)
    assert not (devices / "fitted" / f"phone-{DEVICE}.toml").exists()
