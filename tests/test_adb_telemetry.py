"""Telemetry of the adb backend: the loop the phone runs (checked with a real ``sh``), the
parser of its stream (a property test: nothing crashes it), the figures (by hand), and the
stream end to end through the fake phone, including a phone lost mid-case."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_phone import FakeAndroid
from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import InlineExecutor

from harness.backends.adb.telemetry import (
    Sample,
    StreamParser,
    TelemetryStream,
    parse_lines,
    summarize,
    telemetry_script,
)
from harness.core.measurement import DeviceTelemetry, Measured, Measurement
from harness.errors import InputError
from harness.sweep import BenchOptions, MeasureOverrides, run_bench

pytest.importorskip("adb_shell")

PERIOD_S = 0.05


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME (the backend creates ~/.android/adbkey), quick polls and samples."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setattr("harness.backends.adb.backend.COOLDOWN_POLL_S", 0.05)
    monkeypatch.setattr("harness.backends.adb.backend.TELEMETRY_PERIOD_S", PERIOD_S)
    return h


def _suite(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        'schema_version = 1\ndescription = "adb telemetry test"\n'
        f'workloads = [{{ name = "tiny", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32", "int8-dynamic"]\nprune = [0]\n'
        '[measure]\nwarmup = 1\niterations = 20\ntimeout_s = 20\nthreads = 1\n'
        'min_time_s = 0\nsustained_s = 10\n')
    return path


def _run(tmp_path: Path, phone: FakeAndroid, model: Path, runner: Path,
         **kw: Any) -> list[Measurement]:
    options = BenchOptions(devices=("snapdragon8gen3",), backends=("adb",),
                           suite=_suite(tmp_path, model), results_dir=tmp_path / "results",
                           cache_dir=tmp_path / "cache", command_line=("test",),
                           adb=phone.address, runner=runner, cooldown_max_s=0, **kw)
    run_dir = run_bench(options, executor=InlineExecutor())
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    return [Measurement.from_row(r) for r in rows]


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "adb-telemetry" and t.is_alive()]


def _no_telemetry_threads_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _telemetry_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _telemetry_threads()


# --------------------------------------------------------------------------- the loop


def _tree(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text + "\n")


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this host")
def test_the_loop_is_real_shell_and_its_output_parses(tmp_path: Path) -> None:
    """The script the phone gets, run by this host's sh on a copy of the sysfs files it
    reads (a zone that is missing and a status with a space included)."""
    _tree(tmp_path, {
        "/proc/uptime": "1234.50 999.00",
        "/sys/class/thermal/thermal_zone0/type": "cpu-0-0-0",
        "/sys/class/thermal/thermal_zone0/temp": "41500",
        "/sys/class/thermal/thermal_zone1/type": "battery",
        "/sys/class/thermal/thermal_zone1/temp": "30000",
        "/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq": "2000000",
        "/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq": "1500000",
        "/sys/class/power_supply/battery/current_now": "-500000",
        "/sys/class/power_supply/battery/voltage_now": "4000000",
        "/sys/class/power_supply/battery/status": "Not charging",
        "/sys/class/power_supply/usb/online": "0"})
    script = telemetry_script(["thermal_zone0", "thermal_zone1", "thermal_zone7"], ["policy0"],
                              period_s=0.01, max_samples=3, root=str(tmp_path))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                         check=True)
    assert out.stderr == ""          # `exec 2>/dev/null`: the missing zone is silent
    parsed = parse_lines(out.stdout.splitlines())
    assert parsed.skipped == 0 and parsed.pid is not None
    assert parsed.zone_types == {0: "cpu-0-0-0", 1: "battery"}
    assert parsed.max_freq_khz == {0: 2000000}
    assert len(parsed.samples) == 3        # the loop's own bound
    s = parsed.samples[0]
    assert s == Sample(uptime_s=1234.5, zones_mc={0: 41500, 1: 30000}, freq_khz={0: 1500000},
                       current_ua=-500000, voltage_uv=4000000, usb_online=False,
                       ac_online=None, status="Not charging")
    tele, trace = summarize(parsed, period_s=0.01, mean_inference_ms=2.0)
    assert tele.start_temp_c == 41.5 and tele.end_clock_fraction == 0.75
    # with a flag file: the loop creates it, and ends after the first sample that finds it
    # gone (here: removed by the third sample's time, the loop takes no fourth)
    flag = tmp_path / "run.on"
    script = telemetry_script(["thermal_zone0"], [], period_s=0.2, max_samples=1000,
                              flag="/run.on", root=str(tmp_path))
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    flag.unlink()
    out2, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert 2 <= len(parse_lines(out2.splitlines()).samples) <= 4
    assert tele.charging is False and tele.energy_meaningful
    assert tele.avg_power_w == 2.0 and tele.energy_mj == 4.0   # 0.5 A x 4 V; 2 W x 2 ms
    assert trace is not None and trace["temp_c"] == [41.5] * 3


# --------------------------------------------------------------------------- the parser

_VALID = st.builds(
    lambda t, z, f, c, s: f"S {t:.2f} z0={z} f0={f} c={c} v=4000000 u=0 a= s={s}",
    st.floats(0, 1e6, allow_nan=False), st.integers(-40000, 150000),
    st.integers(0, 4_000_000), st.integers(-5_000_000, 5_000_000),
    st.sampled_from(["Discharging", "Charging", "Not charging", "Full", ""]))
_GARBAGE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["S", "S x", "S 12.5 z0", "S 12.5 z0=abc", "S nan", "S -1 z0=1",
                     "S 1e999", "HZ", "HZ x cpu", "HF 0 -5", "HF 0 zero", "P", "P 12x",
                     "S 1.0 q=3", "S 1.0 =3", "\x00\x00", "S 1.0 z0=1 z0=", "S inf"]),
    _VALID.map(lambda line: line[: len(line) // 2]))   # a line cut in the middle


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _VALID, _GARBAGE), max_size=30),
       st.lists(st.integers(1, 40), max_size=10))
def test_the_parser_never_crashes_and_keeps_every_good_line(
        lines: list[tuple[bool, str, str]], cuts: list[int]) -> None:
    """Any interleaving of good and garbled lines, in chunks cut anywhere, never raises;
    every good line is a sample, in order; what is skipped is counted and shown."""
    stream = "".join((good if keep else bad.replace("\n", " ")) + "\n"
                     for keep, good, bad in lines).encode()
    parser = StreamParser()
    at = 0
    for n in [*cuts, len(stream)]:           # the adb packets' arbitrary boundaries
        parser.feed(stream[at:at + n])
        at += n
    parser.feed(stream[at:])
    parser.finish()
    reference = parse_lines(stream.decode("utf-8", "replace").split("\n"))
    assert parser.samples == reference.samples and parser.skipped == reference.skipped
    good = [float(g.split()[1]) for keep, g, _ in lines if keep]
    uptimes = [s.uptime_s for s in parser.samples]
    it = iter(uptimes)      # the good lines are a subsequence (garbage may parse too)
    assert all(any(abs(u - g) < 0.01 for u in it) for g in good)
    tele, _ = summarize(parser, period_s=0.2, mean_inference_ms=1.0)
    assert tele.samples == len(parser.samples)
    if parser.skipped:
        assert f"{parser.skipped} telemetry line(s) skipped" in tele.note
    if not parser.samples:
        assert "no telemetry sample arrived" in tele.note


def test_garbled_lines_are_skipped_with_a_clear_note() -> None:
    parsed = parse_lines(["P 77", "HZ 0 cpu-0", "S 10.0 z0=40000", "S 10.5 z0=4##00",
                          "Segmentation fault", "S 11.0 z0=42000"])
    assert parsed.pid == 77 and len(parsed.samples) == 2 and parsed.skipped == 2
    tele, _ = summarize(parsed, period_s=0.5, mean_inference_ms=None)
    assert tele.start_temp_c == 40.0 and tele.end_temp_c == 42.0
    assert "2 telemetry line(s) skipped, e.g. 'S 10.5 z0=4##00'" in tele.note
    empty, trace = summarize(parse_lines([]), period_s=0.5, mean_inference_ms=1.0)
    assert empty.samples == 0 and trace is None and empty.energy_mj is None
    assert "no telemetry sample arrived from the phone" in empty.note


# --------------------------------------------------------------------------- figures


def _charging(*fields: str) -> bool | None:
    tele, _ = summarize(parse_lines([f"S {i}.0 c=-1000000 v=4000000 {f}"
                                     for i, f in enumerate(fields)]),
                        period_s=1.0, mean_inference_ms=1.0)
    assert tele.energy_meaningful is (tele.charging is False)
    return tele.charging


def test_the_charging_flag() -> None:
    assert _charging("u=0 a=0 s=Discharging") is False
    assert _charging("u=0 s=Not charging") is False
    assert _charging("s=Charging") is True
    assert _charging("s=Full") is True
    assert _charging("u=1 s=Discharging") is True        # USB power, whatever the status
    assert _charging("a=1") is True
    assert _charging("u=0 s=Discharging", "u=1 s=Charging") is True   # plugged mid-case
    assert _charging("") is None                           # nothing says: unknown
    assert _charging("u=0") is False


def test_energy_by_hand() -> None:
    """Power |I|·V per sample, its trapezoid time-mean, times the mean inference time."""
    # 0.25 A x 4 V = 1 W at t=0, 3 W at t=1 and t=3 (uneven: a late sample)
    parsed = parse_lines(["S 100.0 c=250000 v=4000000 s=Discharging",
                          "S 101.0 c=-750000 v=4000000 s=Discharging",
                          "S 103.0 c=-750000 v=4000000 s=Discharging"])
    tele, trace = summarize(parsed, period_s=1.0, mean_inference_ms=5.0)
    # area = (1+3)/2 * 1 + (3+3)/2 * 2 = 8 J over 3 s
    assert tele.avg_power_w == pytest.approx(8 / 3, abs=1e-4)
    assert tele.energy_mj == pytest.approx(8 / 3 * 5.0, abs=1e-3)     # W x ms = mJ
    assert tele.duration_s == 3.0 and tele.energy_meaningful
    assert trace is not None and trace["time_s"] == [0.0, 1.0, 3.0]
    assert trace["power_w"] == [1.0, 3.0, 3.0]
    # a sample without current is left out of the mean, not taken as zero
    gap = parse_lines(["S 0.0 c=500000 v=4000000", "S 1.0 c= v=4000000",
                       "S 2.0 c=500000 v=4000000"])
    assert summarize(gap, period_s=1.0, mean_inference_ms=1.0)[0].avg_power_w == 2.0
    # a phone reporting mA (500 mA read as 500 µA): said, not silently 1000 times too low
    milli = summarize(parse_lines(["S 0.0 c=-500 v=4000000 s=Discharging"]), period_s=1.0,
                      mean_inference_ms=1.0)[0]
    assert milli.avg_power_w == 0.002 and "current_now in mA" in milli.note


def test_clocks_and_power_come_from_the_samples_inside_the_run() -> None:
    """Phone uptimes placed on the host clock by the soonest delivery; the idle samples
    before and after the run count for temperatures only."""
    p = StreamParser()
    p.feed("HF 0 1000000\n", now=49.0)
    for uptime, got, freq, amps in ((100.0, 50.0, 300000, 250000),   # before the run
                                    (101.0, 51.3, 1000000, 1250000),  # arrived late
                                    (102.0, 52.0, 900000, 1250000),
                                    (103.0, 53.0, 300000, 250000)):   # after it
        p.feed(f"S {uptime} z0={int(uptime * 100)} f0={freq} c=-{amps} v=4000000 "
               f"s=Discharging\n", now=got)
    tele, trace = summarize(p, period_s=1.0, mean_inference_ms=2.0,
                            run_window=(50.5, 52.5))
    assert trace is not None and trace["during_run"] == [False, True, True, False]
    assert tele.start_temp_c == 10.0 and tele.end_temp_c == 10.3     # the whole case
    assert tele.start_clock_fraction == 1.0 and tele.end_clock_fraction == 0.9
    assert tele.min_clock_fraction == 0.9
    assert tele.avg_power_w == 5.0 and tele.energy_mj == 10.0        # 1.25 A x 4 V; x 2 ms
    assert tele.note == ""
    # a run shorter than a period: no sample inside, the whole case is used, and said
    short, _ = summarize(p, period_s=1.0, mean_inference_ms=2.0, run_window=(50.1, 50.2))
    # 1, 5, 5, 1 W a second apart: trapezoids (1+5)/2 + (5+5)/2 + (5+1)/2 = 11 J over 3 s
    assert short.avg_power_w == pytest.approx(11 / 3, abs=1e-4)
    assert "no telemetry sample fell inside the run" in short.note


def test_clock_fraction_is_the_fastest_policy_against_its_top() -> None:
    parsed = parse_lines(["HF 0 2000000", "HF 1 3000000",
                          "S 1.0 f0=600000 f1=3000000", "S 2.0 f0=2000000 f1=1500000"])
    tele, trace = summarize(parsed, period_s=1.0, mean_inference_ms=None)
    assert tele.start_clock_fraction == 1.0 and tele.end_clock_fraction == 1.0
    assert trace is not None
    assert trace["clock_fraction_by_policy"] == {"policy0": [0.3, 1.0], "policy1": [1.0, 0.5]}
    assert tele.min_clock_fraction == 1.0


def test_telemetry_round_trips_through_a_row() -> None:
    tele = DeviceTelemetry(samples=3, period_s=0.2, start_temp_c=36.0, end_temp_c=41.0,
                           avg_power_w=4.2, energy_mj=7.1, charging=False,
                           energy_meaningful=True, note="x")
    m = Measured(where="127.0.0.1:5555", telemetry=tele)
    assert Measured.from_row(json.loads(json.dumps(m.to_row()))).telemetry == tele
    assert "telemetry" not in Measured(where="host").to_row()


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def unplugged() -> Iterator[FakeAndroid]:
    """A phone over Wi-Fi off its charger whose runner takes 0.4 s and heats it."""
    # cooling slowly (tau 2 s): the sample after the run still shows the run's heat however
    # late a loaded test machine takes it
    with FakeAndroid(run_s=0.4, cool_tau_s=2.0, battery_status="Discharging",
                     usb_online=False) as p:
        yield p


def test_each_case_has_its_telemetry_from_the_phone(tmp_path: Path, tiny_model: Path,
                                                    unplugged: FakeAndroid,
                                                    runner: Path) -> None:
    ms = _run(tmp_path, unplugged, tiny_model, runner)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    for m in ms:
        tele = m.measured.telemetry if m.measured else None
        assert tele is not None and tele.note == "", tele
        assert tele.samples >= 0.4 / PERIOD_S / 2          # sampled through the run
        assert tele.end_temp_c is not None and tele.start_temp_c is not None
        assert tele.end_temp_c > tele.start_temp_c + 1.0    # the run heated the SoC
        assert tele.charging is False and tele.energy_meaningful
        # the runner's draw (1.25 A at 4.213 V = 5.27 W) from the samples inside the run (a
        # sample in the instant between the host's start and the fake runner's may be idle)
        assert tele.avg_power_w is not None and 4.0 < tele.avg_power_w < 5.3
        fwd = m.measured.phase("forward") if m.measured else None
        mean_ms = (fwd.summary or {})["mean_ns"] / 1e6 if fwd else 0.0
        assert tele.energy_mj == pytest.approx(tele.avg_power_w * mean_ms, rel=1e-3)
        # clocks: the cluster at its top while the runner runs, below it as it heats
        assert tele.max_temp_c is not None and tele.min_clock_fraction is not None
        trace = m.trace or {}
        assert trace["source"] == "adb telemetry"
        assert trace["time_s"] == sorted(trace["time_s"])
        assert len(trace["time_s"]) == tele.samples
        assert max(trace["clock_fraction"]) > 0.9 and min(trace["clock_fraction"]) < 0.5
        # the sample before the run is not in it; inside, the cluster is at its top (but at
        # the very edges, where the runner starts and exits)
        assert trace["during_run"][0] is False
        running = [c for c, d in zip(trace["clock_fraction"], trace["during_run"],
                                     strict=True) if d]
        assert len(running) >= 3 and all(c > 0.9 for c in running[1:-1]), trace
        assert set(trace["clock_fraction_by_policy"]) == {"policy0", "policy1", "policy2"}
    # the rows match the published row schema (tests/test_schemas.py: the other backends)
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas"
                         / "result-row.v2.schema.json").read_text())
    for m in ms:
        jsonschema.validate(m.to_row(), schema)
    # one loop per case, each ended by itself when its run removed its flag file (a sample
    # after the run, then out); none left running, no flag file left on the phone
    assert unplugged.loops_started == 2 and unplugged.loops_ended == ["ended", "ended"]
    assert not [f for f in unplugged.files if "telemetry-" in f]
    assert _no_telemetry_threads_within(5.0)
    # the report shows it in its power table
    from harness.report.frame import row_stats

    row = row_stats(ms[0])
    tele0 = ms[0].measured.telemetry if ms[0].measured else None
    assert tele0 is not None and row["energy_mj"] == tele0.energy_mj
    assert row["device_end_temp_c"] == tele0.end_temp_c and row["on_charger"] == "no"


def test_on_usb_power_energy_is_marked_not_meaningful(tmp_path: Path, tiny_model: Path,
                                                       runner: Path) -> None:
    with FakeAndroid(run_s=0.2) as phone:      # the fake's default: charging over USB
        ms = _run(tmp_path, phone, tiny_model, runner)
    for m in ms:
        tele = m.measured.telemetry if m.measured else None
        assert m.status == "ok" and tele is not None and tele.samples > 0
        assert tele.charging is True and not tele.energy_meaningful
        assert tele.energy_mj is not None          # kept in the row, but marked
        assert "charging (USB power): energy is not meaningful" in tele.note
    from harness.report.frame import row_stats

    row = row_stats(ms[0])
    assert row["energy_mj"] is None and row["avg_power_w"] is None   # not shown as a figure
    assert row["on_charger"] == "yes"


def test_the_phone_lost_mid_case_ends_the_stream(tmp_path: Path, tiny_model: Path,
                                                 runner: Path) -> None:
    """The fake's socket closes 0.3 s into the second case's run, telemetry flowing: that
    case is an error row, quickly, and the reader thread is gone."""
    with FakeAndroid(run_s=0.4, vanish_after_runs=1, vanish_after_s=0.3,
                     battery_status="Discharging", usb_online=False) as phone:
        t0 = time.monotonic()
        ms = _run(tmp_path, phone, tiny_model, runner, adb_connect_timeout_s=1.0,
                  overrides=MeasureOverrides(timeout_s=2.0))
        took = time.monotonic() - t0
    assert [m.status for m in ms] == ["ok", "error"]
    assert "lost the phone" in ms[1].reason or "no longer answers" in ms[1].reason
    assert ms[0].measured and ms[0].measured.telemetry and ms[0].measured.telemetry.samples
    assert phone.loops_started == 2
    assert phone.loops_ended[0] == "ended"
    assert took < 20, took
    assert _no_telemetry_threads_within(5.0)


def test_spooled_telemetry_needs_one_connection(tmp_path: Path, tiny_model: Path,
                                                unplugged: FakeAndroid, runner: Path) -> None:
    """--telemetry file (the default over USB, which has one connection): the loop runs in
    the background of the runner's own shell, writes its samples to a file on the phone, and
    the same command prints it after the run: no second connection, no call per sample."""
    ms = _run(tmp_path, unplugged, tiny_model, runner, telemetry="file")
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    for m in ms:
        assert m.measured is not None and m.measured.extra is not None
        assert m.measured.extra["telemetry_form"] == "loop (file)"
        tele = m.measured.telemetry
        assert tele is not None and tele.note == "", tele
        assert tele.samples >= 0.4 / PERIOD_S / 2
        assert tele.start_temp_c is not None and tele.end_temp_c is not None
        assert tele.end_temp_c > tele.start_temp_c + 1.0
        assert tele.avg_power_w is not None and 4.0 < tele.avg_power_w < 5.3
        trace = m.trace or {}
        assert trace["during_run"][0] is False and any(trace["during_run"])
    # each loop ended by itself; its flag and its file are gone from the phone
    assert unplugged.loops_started == 2 and unplugged.loops_ended == ["ended", "ended"]
    assert not [f for f in unplugged.files if "telemetry-" in f]


def test_the_sweep_leaves_no_temporary_file_on_the_phone(
        tmp_path: Path, tiny_model: Path, unplugged: FakeAndroid, runner: Path) -> None:
    """A flag left by an earlier sweep that failed (or an abandoned form) is removed when
    the sweep ends; the pushed model and runner stay for the next run."""
    from harness.backends.adb.device import REMOTE_ROOT

    unplugged.shell(f"mkdir -p {REMOTE_ROOT}; touch {REMOTE_ROOT}/telemetry-0123456789ab.on")
    ms = _run(tmp_path, unplugged, tiny_model, runner)
    assert all(m.status == "ok" for m in ms)
    assert not [f for f in unplugged.files if "telemetry-" in f]
    assert any(f.endswith("/model.onnx") for f in unplugged.files)
    assert any(f.endswith("/bin/" + runner.name) for f in unplugged.files)


def test_telemetry_modes(tmp_path: Path, tiny_model: Path, unplugged: FakeAndroid,
                         runner: Path) -> None:
    from harness.backends.adb.backend import AdbBackend
    from harness.backends.base import BackendContext, BackendOptions

    def mode(**kw: Any) -> str:
        b = AdbBackend()
        b.open(None, BackendContext(options=BackendOptions(runner=tmp_path / "r", **kw)))
        return b._telemetry_mode()

    assert mode(adb="127.0.0.1:5555") == "stream" and mode(serial="R5CT1") == "file"
    assert mode(adb="127.0.0.1:5555", telemetry="file") == "file"
    ms = _run(tmp_path, unplugged, tiny_model, runner, telemetry="off")
    assert all(m.status == "ok" for m in ms) and unplugged.loops_started == 0
    tele = ms[0].measured.telemetry if ms[0].measured else None
    assert tele is not None and tele.samples == 0 and "telemetry off" in tele.note
    with pytest.raises(InputError, match="--telemetry"):
        BenchOptions(backends=("adb",), devices=("snapdragon8gen3",), adb="127.0.0.1:5555",
                     runner=runner, telemetry="sometimes")


def test_over_usb_the_stream_is_refused_and_the_row_says_why(tmp_path: Path) -> None:
    """Over USB a live stream would share the runner's one connection; adb-shell reading both
    from two threads was seen to stall the runner's command (with the fake multiplexing
    streams as adbd does): --telemetry stream over USB starts none, and the note says so
    (auto spools to a file over USB instead, above)."""
    from harness.backends.adb.backend import AdbBackend
    from harness.backends.adb.device import Phone
    from harness.backends.base import BackendContext, BackendOptions

    backend = AdbBackend()
    backend.open(None, BackendContext(options=BackendOptions(serial="R5CT1234567",
                                                             runner=tmp_path / "r")))
    with FakeAndroid() as fake:
        phone = Phone.connect(adb=fake.address, serial=None, timeout_s=5.0)
        try:
            stream, note = backend._start_telemetry(phone, 10.0)
        finally:
            phone.close()
    assert stream is None and fake.loops_started == 0
    assert "telemetry not started" in note and "--adb HOST:PORT (TCP) only" in note


def _endless_loop(device: Any) -> TelemetryStream:
    """A fast loop (one zone, one policy) with no flag and no practical bound, streamed."""
    script = telemetry_script(["thermal_zone0"], ["policy0"], period_s=0.05,
                              max_samples=100000)
    return TelemetryStream(device, script, owns_device=True, read_timeout_s=30.0)


def test_a_loop_that_does_not_end_by_itself_is_killed(tmp_path: Path) -> None:
    """No flag file (or one the run could not remove): stop kills the loop by its pid."""
    from harness.backends.adb.device import Phone

    with FakeAndroid() as fake:
        phone = Phone.connect(adb=fake.address, serial=None, timeout_s=5.0)
        side = Phone.connect(adb=fake.address, serial=None, timeout_s=5.0)
        try:
            stream = _endless_loop(side.device)
            assert stream.parser.wait_for_samples(2, 5.0)
            assert not stream.wait_done(0.2)            # it would go on
            stream.stop(lambda cmd: phone.sh(cmd, timeout_s=5.0))
            assert not stream.alive and fake.loops_ended == ["killed"]
        finally:
            phone.close()


def test_stop_without_a_kill_cuts_the_stream_in_bounded_time(tmp_path: Path) -> None:
    """The kill cannot be sent (the main connection is wedged): stop closes the stream's
    own connection under the reader, and the loop on the phone ends with it."""
    from harness.backends.adb.device import Phone

    with FakeAndroid() as fake:
        phone = Phone.connect(adb=fake.address, serial=None, timeout_s=5.0)
        try:
            stream = _endless_loop(phone.device)
            assert stream.parser.wait_for_samples(3, 5.0)
            t0 = time.monotonic()
            stream.stop(None, grace_s=2.0)
            assert time.monotonic() - t0 < 3.0 and not stream.alive
            deadline = time.monotonic() + 5
            while not fake.loops_ended and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake.loops_ended == ["stream closed or phone gone"]
        finally:
            phone.close()


def test_the_emulator_vs_device_table_has_the_phones_energy_off_the_charger(
        tmp_path: Path, tiny_model: Path, unplugged: FakeAndroid, runner: Path) -> None:
    """With the phone on its battery, the emulator-vs-device pairs carry the phone's measured
    energy per inference beside the prediction, and the report shows the columns."""
    from harness.report.frame import device_pairs
    from harness.report.tables import write_report
    from harness.results import load_run

    options = BenchOptions(devices=("snapdragon8gen3",), backends=("emulated", "adb"),
                           suite=_suite(tmp_path, tiny_model), results_dir=tmp_path / "results",
                           cache_dir=tmp_path / "cache", command_line=("test",),
                           adb=unplugged.address, runner=runner, cooldown_max_s=0)
    run_dir = run_bench(options, executor=InlineExecutor())
    run = load_run(run_dir)
    phone_rows = {m.case_id: m for m in run.measurements if m.backend == "adb"}
    pairs = device_pairs(run)
    assert len(pairs) == 2
    for p in pairs:
        m = phone_rows[p.cell_id + "@adb"]
        tele = m.measured.telemetry if m.measured else None
        assert tele is not None and tele.energy_meaningful
        assert p.measured_energy_mj == tele.energy_mj and p.measured_energy_mj > 0
    table = write_report(run_dir, width=200)
    md = (run_dir / "report.md").read_text()
    assert "measured energy (mJ)" in md.split("## Emulator vs device")[1]
    assert "measured energy (mJ)" in table


# --------------------------------------------------------------------------- other shells


def test_simple_forms_records_parse_in_step_and_skip_what_is_out_of_step(
        tmp_path: Path) -> None:
    """The simple forms' ``C`` records: one line per readable file, checked with a real
    ``sh`` running the loop (only ``echo``, ``cat``, ``sleep``); a record that lost a line or
    got an error message instead of a number is skipped, never misread."""
    import os
    import signal

    from harness.backends.adb.telemetry import SampleLayout, simple_loop_script

    files = {"/proc/uptime": "1234.50 99.0", "/z0": "41500", "/f0": "1500000",
             "/c": "-500000", "/v": "4000000", "/s": "Not charging"}
    for name, value in files.items():
        (tmp_path / name.strip("/").replace("/", "_")).write_text(value + "\n")
    paths = [str(tmp_path / n.strip("/").replace("/", "_")) for n in files]
    keys = ["t", "z0", "f0", "c", "v", "s"]
    proc = subprocess.Popen(["sh", "-c", simple_loop_script(paths, period_s=0.05)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(0.4)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    parsed = parse_lines(out.splitlines(), keys)
    assert parsed.pid is not None and parsed.skipped == 0 and len(parsed.samples) >= 2
    assert parsed.samples[0] == Sample(uptime_s=1234.5, zones_mc={0: 41500},
                                       freq_khz={0: 1500000}, current_ua=-500000,
                                       voltage_uv=4000000, status="Not charging")
    bad = parse_lines(["C", "1.0 2.0", "cat: /z0: Permission denied", "1", "2", "3", "ok",
                       "C", "2.0 3.0", "41000",                 # lost its other lines
                       "C", "3.0 4.0", "42000", "1", "-2", "3", "Full"], keys)
    assert [s.uptime_s for s in bad.samples] == [3.0] and bad.skipped == 2
    # without the uptime among the files: timed by the host as the lines arrive
    layout = SampleLayout.of(["thermal_zone0"], [], lambda ps: {
        p: "40000" for p in ps if p.endswith("/temp")} | {
        "/sys/class/thermal/thermal_zone0/type": "cpu-0-0-usr"})
    assert layout.keys == ("z0",) and layout.zone_types == {0: "cpu-0-0-usr"}
    parser = layout.parser()
    parser.feed("C\n40000\n", now=100.0)
    parser.feed("C\n45000\n", now=100.2)
    assert parser.host_clock and [s.uptime_s for s in parser.samples] == [100.0, 100.2]
    tele, _ = summarize(parser, period_s=0.2, mean_inference_ms=1.0,
                        run_window=(100.1, 100.3), run_uptime=(5.0, 6.0))
    assert tele.start_temp_c == 40.0 and tele.end_temp_c == 45.0


@pytest.mark.parametrize(("lacks", "form"), [
    (frozenset({"read", "[", "sha256sum"}), "simple loop"),
    (frozenset({"while"}), "polling")])
def test_a_shell_that_does_not_run_the_loop_is_sampled_by_a_simpler_form(
        tmp_path: Path, tiny_model: Path, runner: Path, lacks: frozenset[str],
        form: str) -> None:
    """A shell without ``read``/``[`` (or any ``while``): the loop prints only errors, the
    backend leaves it at once for the simple loop (or polling), keeps that form for the next
    case, and the rows carry the same figures, saying which form gave them."""
    with FakeAndroid(run_s=0.4, cool_tau_s=2.0, battery_status="Discharging",
                     usb_online=False, lacks=lacks) as phone:
        t0 = time.monotonic()
        ms = _run(tmp_path, phone, tiny_model, runner)
        took = time.monotonic() - t0
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    for i, m in enumerate(ms):
        assert m.measured is not None and m.measured.telemetry is not None
        tele = m.measured.telemetry
        assert m.measured.extra["telemetry_form"] == form
        assert f"telemetry sampled by the {form} form" in tele.note
        # only the first case tried the loop (and, for polling, the simple loop) first
        assert ("the loop form gave no sample" in tele.note) == (i == 0), tele.note
        assert tele.start_temp_c is not None and tele.end_temp_c is not None
        assert tele.end_temp_c > tele.start_temp_c + 1.0
        assert tele.avg_power_w is not None and 4.0 < tele.avg_power_w < 5.3
        assert tele.energy_meaningful and tele.energy_mj
        assert set((m.trace or {})["clock_fraction_by_policy"]) == {
            "policy0", "policy1", "policy2"}
        if "sha256sum" in lacks:     # the artifact cannot be checked: pushed again
            assert m.measured.extra["artifact_pushed"] is True
    assert took < 20, took
    assert _no_telemetry_threads_within(5.0)


def test_without_uptime_polled_samples_are_timed_on_arrival(
        tmp_path: Path, tiny_model: Path, runner: Path) -> None:
    """No loop and no readable /proc/uptime: the polled samples are placed by the host's
    clock, and the run's window still picks the run's samples."""
    with FakeAndroid(run_s=0.4, cool_tau_s=2.0, battery_status="Discharging",
                     usb_online=False, lacks=frozenset({"while"}),
                     unreadable=frozenset({"/proc/uptime"})) as phone:
        ms = _run(tmp_path, phone, tiny_model, runner)
    assert [m.status for m in ms] == ["ok", "ok"], [m.reason for m in ms]
    tele = ms[1].measured.telemetry if ms[1].measured else None
    assert tele is not None and tele.samples >= 3
    assert tele.avg_power_w is not None and 4.0 < tele.avg_power_w < 5.3
    assert any((ms[1].trace or {})["during_run"])
