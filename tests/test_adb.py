"""The adb backend end to end through a loopback fake phone (tests/fake_phone.py) that
speaks the real ADB wire protocol: adb-shell connects to it over TCP as to a phone after
`adb tcpip 5555`. Worker tasks run in this process (InlineExecutor) to stay fast."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_phone import FakeAndroid
from sweep_fakes import InlineExecutor

from harness.backends.adb.perf_test import PerfTestOutputError, parse_perf_test
from harness.core.measurement import Measurement
from harness.errors import InputError
from harness.sweep import BenchOptions, MeasureOverrides, run_bench

pytest.importorskip("adb_shell")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME: the backend creates ~/.android/adbkey in it."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    return h


@pytest.fixture(autouse=True)
def quick_cooldown_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cooldown gate reads the fake phone's thermal zones every 50 ms, not every 2 s."""
    monkeypatch.setattr("harness.backends.adb.backend.COOLDOWN_POLL_S", 0.05)
    # and samples its telemetry every 50 ms, not every 200 ms
    monkeypatch.setattr("harness.backends.adb.backend.TELEMETRY_PERIOD_S", 0.05)


@pytest.fixture
def phone() -> Iterator[FakeAndroid]:
    with FakeAndroid() as p:
        yield p


def _suite(tmp_path: Path, model: Path, *, name: str = "tiny") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        'schema_version = 1\ndescription = "adb test"\n'
        f'workloads = [{{ name = "{name}", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32", "int8-dynamic"]\nprune = [0]\n'
        '[measure]\nwarmup = 1\niterations = 20\ntimeout_s = 20\nthreads = 1\n'
        'min_time_s = 0\nsustained_s = 10\n')
    return path


def _run(tmp_path: Path, suite: Path, phone: FakeAndroid, runner: Path,
         devices: tuple[str, ...] = ("snapdragon8gen3",), **kw: Any) -> list[Measurement]:
    options = BenchOptions(devices=devices, backends=("adb",), suite=suite,
                           results_dir=tmp_path / "results", cache_dir=tmp_path / "cache",
                           command_line=("test",), adb=phone.address, runner=runner, **kw)
    run_dir = run_bench(options, executor=InlineExecutor())
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    return [Measurement.from_row(r) for r in rows]


def test_a_sweep_on_the_phone_gives_its_latency(tmp_path: Path, tiny_model: Path,
                                                phone: FakeAndroid, runner: Path,
                                                home: Path) -> None:
    ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner)
    assert [m.case_id for m in ms] == ["tiny/fp32/prune-0/snapdragon8gen3@adb",
                                       "tiny/int8-dynamic/prune-0/snapdragon8gen3@adb"]
    assert all(m.status == "ok" and m.reason == "" for m in ms), [m.reason for m in ms]
    for m in ms:
        assert m.measured is not None
        assert m.measured.where == phone.address
        forward = m.measured.phase("forward")
        assert forward is not None and forward.samples == ()   # none invented
        s = forward.summary or {}
        assert s["count"] == 20
        assert 1e6 < s["mean_ns"] < 1e7 and s["p50_ns"] <= s["p90_ns"] <= s["p99_ns"]
        assert m.measured.peak_memory_mb is not None and m.measured.peak_memory_mb > 29
        assert m.measured.cold_start is not None
        extra = m.measured.extra or {}
        assert extra["soc_model"] == "SM8650"
        assert any("not measured on the phone" in n for n in extra["notes"])
        assert extra["thermal_after_c"]["cpu-0-0-0"] > extra["thermal_before_c"]["cpu-0-0-0"]
        assert m.quality is None and m.prediction is None
        assert (m.provenance.backend_version or "").startswith("adb-shell")
    # the runner was pushed once and made executable; each artifact pushed once, by key
    assert phone.pushes.count("/data/local/tmp/edge-harness/bin/onnxruntime_perf_test") == 1
    models = [p for p in phone.pushes if p.endswith(".onnx")]
    assert len(models) == 2 and all(p.startswith("/data/local/tmp/edge-harness/")
                                    for p in models)
    assert [r[0] for r in phone.runs] == ["/data/local/tmp/edge-harness/bin/"
                                          "onnxruntime_perf_test"] * 2
    key = home / ".android" / "adbkey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.with_suffix(".pub").exists()
    # the report reads the runner's printed statistics (there are no raw samples)
    from harness.report.frame import row_stats

    row = row_stats(ms[0])
    s0 = ms[0].measured.phase("forward").summary if ms[0].measured else None
    assert s0 and row["host_p50_ms"] == s0["p50_ns"] / 1e6 and row["host_mean_ms"] > 0


def test_a_second_run_pushes_nothing_again(tmp_path: Path, tiny_model: Path,
                                           phone: FakeAndroid, runner: Path) -> None:
    suite = _suite(tmp_path, tiny_model)
    _run(tmp_path, suite, phone, runner)
    pushed = len(phone.pushes)
    ms = _run(tmp_path, suite, phone, runner)
    assert all(m.status == "ok" for m in ms)
    assert len(phone.pushes) == pushed   # the same sha256 on the phone: skipped
    assert all(m.measured and m.measured.extra and not m.measured.extra["artifact_pushed"]
               for m in ms)
    # checked by the phone's sha256sum: of sync's file service only SEND is used (a device
    # side that answers no STAT works as well)
    assert set(phone.sync_requests) <= {"SEND", "DATA", "DONE", "QUIT"}, phone.sync_requests


def test_a_case_after_a_hot_run_waits_for_the_soc_to_cool(tmp_path: Path, tiny_model: Path,
                                                          runner: Path) -> None:
    # a run heats the SoC by ~20.8 °C; it cools back with a 1 s time constant
    with FakeAndroid(run_heat_mc=20000.0, cool_tau_s=1.0) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_c=3.0)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    first, second = (m.measured.extra or {} for m in ms if m.measured)
    assert first["soc_idle_c"] == 37.0            # the hottest SoC zone at connect
    assert first["cooldown_wait_s"] < 0.2 and first["started_hot"] is False
    # the second case found the SoC still hot (the int8 build between the runs takes a
    # moment) and waited for it: about ln(20.8 / 3) = 1.9 s after the first run in all
    assert 0.2 < second["cooldown_wait_s"] < 5, second["cooldown_wait_s"]
    assert second["started_hot"] is False and second["soc_idle_c"] == 37.0
    assert second["soc_start_c"] <= 37.0 + 3.0
    assert second["thermal_before_c"]["cpu-1-0-0"] == second["soc_start_c"]


def test_the_cooldown_bound_marks_a_hot_start(tmp_path: Path, tiny_model: Path,
                                              runner: Path) -> None:
    with FakeAndroid(run_heat_mc=10000.0, cool_tau_s=60.0) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_c=3.0,
                  cooldown_max_s=0.3)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    second = ms[1].measured.extra if ms[1].measured else None
    assert second is not None and second["started_hot"] is True
    assert 0.3 <= second["cooldown_wait_s"] < 2
    assert second["soc_start_c"] > second["soc_idle_c"] + 3.0


def test_a_zero_cooldown_bound_disables_the_gate(tmp_path: Path, tiny_model: Path,
                                                 runner: Path) -> None:
    with FakeAndroid(run_heat_mc=10000.0, cool_tau_s=60.0) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_max_s=0)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    second = ms[1].measured.extra if ms[1].measured else None
    assert second is not None
    assert "cooldown_wait_s" not in second and "started_hot" not in second
    assert second["soc_start_c"] > second["soc_idle_c"] + 3.0   # recorded, not waited for
    assert ms[1].duration_s < 2


def test_cooldown_options_are_checked() -> None:
    with pytest.raises(InputError, match="--cooldown-c >= 0"):
        BenchOptions(devices=("snapdragon8gen3",), cooldown_c=-1.0)
    with pytest.raises(InputError, match="--cooldown-max-s >= 0"):
        BenchOptions(devices=("snapdragon8gen3",), cooldown_max_s=float("nan"))


def test_an_unauthorized_computer_gets_a_clear_error_row(tmp_path: Path, tiny_model: Path,
                                                         runner: Path) -> None:
    with FakeAndroid(accepted_keys=[]) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner,
                  adb_connect_timeout_s=1.0)
    assert [m.status for m in ms] == ["error", "error"]
    assert all("did not accept this computer's key" in m.reason and "Allow" in m.reason
               for m in ms)
    assert phone.runs == []


def test_the_phone_vanishing_after_the_first_case(tmp_path: Path, tiny_model: Path,
                                                  runner: Path) -> None:
    with FakeAndroid(vanish_after_runs=1) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner,
                  adb_connect_timeout_s=1.0, overrides=MeasureOverrides(timeout_s=2.0))
    assert len(ms) == 2                      # every case recorded
    assert ms[0].status == "ok"
    assert ms[1].status == "error"
    # the closed connection is noticed at once ("lost"); silence would be a timeout first
    assert "lost the phone" in ms[1].reason or "no longer answers" in ms[1].reason, \
        ms[1].reason


def test_a_crashing_runner_is_an_error_row(tmp_path: Path, tiny_model: Path,
                                           runner: Path) -> None:
    with FakeAndroid(runner_mode="crash") as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner)
    assert [m.status for m in ms] == ["error", "error"]
    assert "status 139 (killed by signal 11)" in ms[0].reason
    assert "Segmentation fault" in ms[0].reason


def test_a_hung_runner_times_out(tmp_path: Path, tiny_model: Path, runner: Path) -> None:
    with FakeAndroid(runner_mode="hang", hang_s=30) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner,
                  overrides=MeasureOverrides(timeout_s=1.0))
    assert [m.status for m in ms] == ["timeout", "timeout"]
    assert "no answer from the phone" in ms[0].reason


def test_a_hostile_file_name_is_quoted(tmp_path: Path, phone: FakeAndroid,
                                       tiny_model: Path) -> None:
    runner = tmp_path / "perf test; rm -rf $HOME 'x'"
    runner.write_bytes(b"\x7fELF")
    ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner)
    assert all(m.status == "ok" for m in ms), [m.reason for m in ms]
    # the phone saw one runner invocation with the whole name as one word, and nothing else
    assert phone.runs[0][0] == "/data/local/tmp/edge-harness/bin/perf test; rm -rf $HOME 'x'"
    assert "x" not in phone.executed
    # the only rm run is the harness's own: each case's telemetry flag file, after its run,
    # and the sweep's end removing any temporary file left (none here: the glob stays)
    assert len(phone.removed) == 3 and all(
        p.startswith("/data/local/tmp/edge-harness/telemetry-") for p in phone.removed)
    assert phone.removed[-1] == "/data/local/tmp/edge-harness/telemetry-*"


def test_a_phone_with_another_soc_is_refused(tmp_path: Path, tiny_model: Path,
                                             runner: Path) -> None:
    with FakeAndroid() as phone:
        phone.props["ro.soc.model"] = "SM8550"
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner)
    assert all(m.status == "error" and "has SoC SM8550" in m.reason and "--device" in m.reason
               for m in ms)


def test_no_phone_is_a_clear_error_row(tmp_path: Path, tiny_model: Path,
                                       runner: Path) -> None:
    with FakeAndroid() as phone:
        pass   # closed: nothing listens on its port any more
    ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, adb_connect_timeout_s=1.0)
    assert all(m.status == "error" and "refused the connection" in m.reason for m in ms)


def test_adb_options_are_checked(tmp_path: Path, runner: Path) -> None:
    def opts(**kw: Any) -> BenchOptions:
        return BenchOptions(devices=("snapdragon8gen3",), **kw)

    with pytest.raises(InputError, match="needs the phone"):
        opts(backends=("adb",), runner=runner)
    with pytest.raises(InputError, match="expected --adb HOST:PORT"):
        opts(backends=("adb",), adb="phone", runner=runner)
    with pytest.raises(InputError, match="needs --runner"):
        opts(backends=("adb",), adb="10.0.0.2:5555")
    with pytest.raises(InputError, match="no such file"):
        opts(backends=("adb",), adb="10.0.0.2:5555", runner=tmp_path / "nope")
    with pytest.raises(InputError, match="add --backend adb"):
        opts(backends=("host",), adb="10.0.0.2:5555")
    assert opts(backends=("adb",), serial="R5CT", runner=runner).backend_options.serial == \
        "R5CT"


def test_perf_test_output_is_parsed() -> None:
    text = ("Session creation time cost: 0.2179 s\nFirst inference time cost: 196 ms\n"
            "Total inference requests: 50\n"
            "Average inference time cost total: 98.96 ms\n"
            "Peak working set size: 271122432 bytes\nMin Latency: 0.0958 s\n"
            "P50 Latency: 0.0987 s\nP99 Latency: 0.11 s\n")
    r = parse_perf_test(text)
    assert r.summary == {"mean_ns": pytest.approx(98.96e6), "count": 50,
                         "min_ns": pytest.approx(95.8e6), "p50_ns": pytest.approx(98.7e6),
                         "p99_ns": pytest.approx(110e6)}
    assert r.load_ns == 217_900_000 and r.first_inference_ns == 196_000_000
    assert r.peak_memory_bytes == 271122432
    assert parse_perf_test("Average inference time cost: 1.857 ms\nP50 Latency is 0.0587sec\n"
                           ).summary["p50_ns"] == pytest.approx(58.7e6)
    with pytest.raises(PerfTestOutputError):
        parse_perf_test("Segmentation fault\n")


def test_the_key_is_private(home: Path) -> None:
    from harness.backends.adb.device import adb_key_path

    path = adb_key_path()
    assert path == home / ".android" / "adbkey"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert adb_key_path() == path    # kept, not regenerated


def test_without_device_the_profile_comes_from_the_phone(tmp_path: Path, tiny_model: Path,
                                                         runner: Path) -> None:
    with FakeAndroid() as phone:
        phone.props["ro.soc.model"] = "SM8550"
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, devices=())
    assert [m.case_id for m in ms] == ["tiny/fp32/prune-0/snapdragon8gen2@adb",
                                       "tiny/int8-dynamic/prune-0/snapdragon8gen2@adb"]
    assert all(m.status == "ok" for m in ms), [m.reason for m in ms]


def test_an_unknown_soc_without_device_says_how_to_choose(tmp_path: Path, tiny_model: Path,
                                                          runner: Path) -> None:
    with FakeAndroid() as phone:
        phone.props["ro.soc.model"] = "SM9999"
        with pytest.raises(InputError, match=r"SoC 'SM9999'.*give --device NAME"):
            _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, devices=())
        assert phone.runs == []
    assert not (tmp_path / "results").exists()    # refused before any run was created


def test_no_phone_without_device_is_an_input_error(tmp_path: Path, tiny_model: Path,
                                                   runner: Path) -> None:
    with FakeAndroid() as phone:
        pass
    with pytest.raises(InputError, match=r"could not read the phone's SoC.*--device NAME"):
        _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, devices=(),
             adb_connect_timeout_s=1.0)


def test_every_profile_soc_maps_back_to_its_profile() -> None:
    from harness.backends.adb.profile import profile_for_soc
    from harness.profiles import list_profiles, load_profile

    profiles = [load_profile(n) for n in list_profiles()]
    for p in profiles:
        assert profile_for_soc(p.adb_soc_model.lower(), profiles) == p.name
    assert profile_for_soc("SM0000", profiles) is None


def test_emulator_vs_device_in_the_report(tmp_path: Path, tiny_model: Path, phone: FakeAndroid,
                                          runner: Path) -> None:
    from harness.report.frame import cell_id, device_pairs, pair_errors
    from harness.report.tables import write_report
    from harness.results import load_run

    options = BenchOptions(devices=("snapdragon8gen3",), backends=("emulated", "adb"),
                           suite=_suite(tmp_path, tiny_model), results_dir=tmp_path / "results",
                           cache_dir=tmp_path / "cache", command_line=("test",),
                           adb=phone.address, runner=runner)
    run_dir = run_bench(options, executor=InlineExecutor())
    run = load_run(run_dir)
    assert {m.backend for m in run.measurements} == {"emulated", "adb"}
    pairs = device_pairs(run)
    assert [p.cell_id for p in pairs] == ["tiny/fp32/prune-0/snapdragon8gen3",
                                          "tiny/int8-dynamic/prune-0/snapdragon8gen3"]
    by_case = {m.case_id: m for m in run.measurements}
    for p in pairs:
        adb, emu = by_case[p.cell_id + "@adb"], by_case[p.cell_id]
        assert cell_id(adb) == cell_id(emu) == p.cell_id
        # compared on the unit the phone ran (ORT's CPU provider), not the emulator's choice
        assert adb.measured is not None and adb.measured.providers == ("CPUExecutionProvider",)
        assert p.unit == "cpu"
        assert p.predicted_ms == emu.predicted.detail["latency_ms_by_unit"]["cpu"]
        phase = adb.measured.phase("forward") if adb.measured else None
        assert phase is not None and phase.summary
        assert p.measured_ms == pytest.approx(phase.summary["p50_ns"] / 1e6)
        assert p.error_pct == pytest.approx(100 * (p.predicted_ms / p.measured_ms - 1))
        # beside latency: the phone's peak working set against the predicted footprint, and
        # energy where the phone was off the charger
        assert adb.measured is not None and p.measured_memory_mb == adb.measured.peak_memory_mb
        assert p.predicted_memory_mb == emu.predicted.peak_memory_mb
        tele = adb.measured.telemetry
        assert p.measured_energy_mj == (tele.energy_mj if tele and tele.energy_meaningful
                                        else None)
        # the emulator's energy is for its own placement: shown only where that is the unit
        assert (p.predicted_energy_mj is None) == (p.unit != emu.predicted.detail.get("unit"))
    median = pair_errors(pairs)["median_pct"]
    table = write_report(run_dir, width=200)
    assert "Emulator vs device on snapdragon8gen3: median error" in table
    # emulated rows timed on this host, adb rows on the phone: the summary says "measured"
    assert "measured p50 (ms)" in table.splitlines()[1] and "host p50" not in table
    assert f"{median:+.1f}%" in table
    md = (run_dir / "report.md").read_text()
    assert "## Emulator vs device" in md and "measured p50 (ms)" in md
    # memory was measured on the phone: its columns are there; energy was not (on the charger)
    assert "measured memory (MB)" in md and "measured memory (MB)" in table
    assert "energy (mJ)" not in md.split("## Emulator vs device")[1]
    assert f"Median error {median:+.1f}%" in md
    html = (run_dir / "report.html").read_text()
    assert 'id="emulator-vs-device"' in html and "measured p50 (ms)" in html
    assert 'id="plot-emulator-vs-device-snapdragon8gen3"' in html
    assert (run_dir / "plots" / "emulator-vs-device-snapdragon8gen3.svg").is_file()

    # harness calibrate --from-run: the same pairs, one scale that removes the median error
    from harness.calibrate import fit_from_run
    from harness.cli import main

    (fit,) = fit_from_run(run_dir)
    assert fit.device == "snapdragon8gen3" and fit.unit == "cpu"
    assert [r["case"] for r in fit.rows] == [p.cell_id for p in pairs]
    fitted = [r for r in fit.rows if r["fitted"]]
    if fitted:   # the emulator predicted these on the CPU, the unit the phone ran
        import math

        ratios = [r["predicted_ms"] / r["measured_ms"] for r in fitted]
        assert fit.scale == pytest.approx(math.exp(float(np.median(np.log(ratios)))))
        assert abs(fit.errors(after=True)["median_pct"]) < abs(
            fit.errors(after=False)["median_pct"])
    assert main(["calibrate", "--from-run", str(run_dir)]) == 0
    # --write: tests/test_adb_calibrate.py (on a copy of devices/)

def test_no_pairs_no_section(tmp_path: Path, tiny_model: Path, phone: FakeAndroid,
                             runner: Path) -> None:
    from harness.report.tables import write_report

    _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner)
    run_dir = next((tmp_path / "results").iterdir())
    table = write_report(run_dir, html=False, plots=False)
    assert "Emulator vs device" not in table
    assert "phone p50 (ms)" in table and "host p50" not in table  # the phone timed every row
    assert "Emulator vs device" not in (run_dir / "report.md").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_real_adb_client_talks_to_the_fake_phone(tmp_path: Path, phone: FakeAndroid,
                                                     home: Path) -> None:
    """Interop: Debian's `adb` (its own server, on a private port) connects to the fake phone,
    reads a property, pushes a file and reads it back, and reads the telemetry loop's stream:
    the fake speaks ADB as adbd does."""
    import shutil
    import subprocess

    adb = shutil.which("adb")
    if adb is None:
        pytest.skip("the adb client is not installed (apt-get install adb)")
    server_port = str(_free_port())
    env = {**os.environ, "HOME": str(home), "ANDROID_SDK_HOME": str(home)}
    env.pop("ADB_SERVER_SOCKET", None)

    def run(*args: str) -> str:
        done = subprocess.run([adb, "-P", server_port, *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    try:
        assert f"connected to {phone.address}" in run("connect", phone.address)
        run("-s", phone.address, "wait-for-device")
        assert run("-s", phone.address, "shell", "getprop", "ro.soc.model").strip() == \
            "SM8650"
        local = tmp_path / "hello.txt"
        local.write_bytes(b"hello from the host\n" * 500)
        run("-s", phone.address, "push", str(local), "/data/local/tmp/hello.txt")
        assert phone.files["/data/local/tmp/hello.txt"].data == local.read_bytes()
        out = run("-s", phone.address, "shell", "cat", "/data/local/tmp/hello.txt")
        assert out.replace("\r\n", "\n") == local.read_text()
        # the telemetry loop, streamed to the real client until its bound ends it
        from harness.backends.adb.telemetry import parse_lines, telemetry_script

        script = telemetry_script(["thermal_zone0", "thermal_zone3"], ["policy0"],
                                  period_s=0.01, max_samples=3)
        parsed = parse_lines(run("-s", phone.address, "shell", script).splitlines())
        assert parsed.skipped == 0 and len(parsed.samples) == 3
        assert parsed.zone_types == {0: "cpu-0-0-0", 1: "battery"}
        assert phone.loops_ended == ["ended"]       # its bound
    finally:
        subprocess.run([adb, "-P", server_port, "kill-server"], env=env,
                       capture_output=True, timeout=30, check=False)


def test_a_phone_lost_after_the_run_keeps_the_runs_row(tmp_path: Path, tiny_model: Path,
                                                       runner: Path,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """The runner's output is in when the phone goes (its temperatures after the run cannot
    be read): the row is ok with its figures and a note, and the next case connects again."""
    from harness.backends.adb.device import AdbError, Phone

    thermal = Phone.thermal
    reads: list[int] = []

    def flaky(self: Phone) -> dict[str, float]:
        reads.append(1)
        if len(reads) == 3:     # connect, before the first run, after it: lost
            raise AdbError("gone", "running 'echo __zone': lost the phone (test)")
        return thermal(self)

    monkeypatch.setattr(Phone, "thermal", flaky)
    with FakeAndroid() as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_max_s=0)
        connects = sum("getprop ro.soc.model" in c for c in phone.commands)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    first = ms[0].measured
    assert first is not None and first.phase("forward") is not None
    assert first.extra["thermal_after_c"] == {}
    assert any("lost after the run" in n for n in first.extra["notes"])
    assert connects == 2       # the second case connected again


def test_a_shell_that_does_not_expand_the_exit_status_still_measures(
        tmp_path: Path, tiny_model: Path, runner: Path) -> None:
    """``echo __rc=$?`` comes back as is: no exit status, taken as success, and the runner's
    output is judged by its content (a run without statistics is still an error row)."""
    with FakeAndroid(lacks=frozenset({"$?"})) as phone:
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_max_s=0)
        phone.runner_mode = "garbage"
        bad = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_max_s=0)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    assert all(m.status == "error" and "Average inference time" in m.reason for m in bad)


def test_a_phone_that_closes_its_connections_between_cases_is_noticed_at_once(
        tmp_path: Path, tiny_model: Path, runner: Path) -> None:
    """The phone drops off between two cases (its sockets closed, its port refusing): with
    the default timeouts the next case is an error row at once, not after a 30 s read
    timeout (adb-shell alone reads the closed connection as silence)."""
    import threading
    import time

    with FakeAndroid() as phone:
        def pull_the_plug() -> None:
            while not phone.runs and not phone.gone:
                time.sleep(0.01)
            time.sleep(0.5)          # the first case's output is in by then
            phone.close()

        threading.Thread(target=pull_the_plug, daemon=True).start()
        t0 = time.monotonic()
        ms = _run(tmp_path, _suite(tmp_path, tiny_model), phone, runner, cooldown_max_s=0)
        took = time.monotonic() - t0
    assert len(ms) == 2 and ms[0].status == "ok", [m.reason for m in ms]
    assert ms[1].status == "error"
    assert "lost the phone" in ms[1].reason or "refused" in ms[1].reason, ms[1].reason
    assert took < 15, took


def test_a_silent_phone_is_looked_for_briefly_after_it_was_found_gone(
        tmp_path: Path, tiny_model: Path, runner: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts but never answers (a phone off the network): the first case waits
    the connect timeout, the later ones only LOST_CONNECT_S each."""
    import socket

    monkeypatch.setattr("harness.backends.adb.backend.LOST_CONNECT_S", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        class Silent:            # what _run needs of a phone
            address = f"127.0.0.1:{port}"

        ms = _run(tmp_path, _suite(tmp_path, tiny_model), Silent(), runner,  # type: ignore[arg-type]
                  adb_connect_timeout_s=1.5)
    assert [m.status for m in ms] == ["error", "error"]
    assert "within 1.5 s" in ms[0].reason and "within 0.3 s" in ms[1].reason, ms[1].reason
