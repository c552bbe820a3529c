"""Device profiles: the shipped devices/*.toml load and are sourced; bad profiles are rejected
with messages that name the file, the field and close matches."""

from __future__ import annotations

import copy
import csv
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.emulator.thermal import PowerAtClock, ThermalModel, fit_thermal_resistance
from harness.errors import InputError
from harness.profiles import (
    PRECISIONS,
    SCHEMA_VERSION,
    DeviceProfile,
    default_devices_dir,
    list_profiles,
    load_profile,
    parse_profile,
)

REPO = Path(__file__).resolve().parents[1]
DEVICES = REPO / "devices"
# The published device specs ship with the package; profiles' "published" figures cite its rows.
SPECS_CSV = REPO / "harness" / "calibration" / "data" / "device_specs.csv"

PHONE_UNITS = {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}
EXPECTED = {
    "snapdragon8gen3": {"units": PHONE_UNITS, "adb": "SM8650"},
    "snapdragon8gen2": {"units": PHONE_UNITS, "adb": "SM8550"},
    "snapdragon8elite": {"units": PHONE_UNITS, "adb": "SM8750"},
    "snapdragon7gen4": {"units": PHONE_UNITS, "adb": "SM7750"},
    "snapdragon888": {"units": PHONE_UNITS, "adb": "SM8350"},
    "snapdragon855": {"units": PHONE_UNITS, "adb": "SM8150"},
    "dimensity9300": {"units": PHONE_UNITS, "adb": "MT6989"},
    "exynos2400": {"units": PHONE_UNITS, "adb": "s5e9945"},
    "tensorg3": {"units": PHONE_UNITS, "adb": "zuma"},
    "applea17pro": {"units": PHONE_UNITS, "adb": "Apple A17 Pro"},
    "raspberrypi5": {"units": {"cpu": "cpu"}, "adb": "BCM2712"},
    "jetsonorinnano": {"units": {"cpu": "cpu", "gpu": "gpu"}, "adb": "NVIDIA Orin Nano"},
}
PHONES = sorted(n for n, e in EXPECTED.items() if "npu" in e["units"])
# The unit whose active power heats the device in its sustained-performance evidence: a CPU
# throttling test for most, a GPU stress loop for the A17 Pro; the Jetson's assumed steady state
# is checked under its GPU (its largest load).
THERMAL_LOAD = {name: "cpu" for name in EXPECTED} | {"applea17pro": "gpu", "jetsonorinnano": "gpu"}
# Thermal resistances fitted on a sustained-performance row of device_specs.csv.
FITTED_R = {"snapdragon8gen3", "snapdragon8gen2", "dimensity9300", "exynos2400", "applea17pro"}
# device_specs.csv has no row for the 7 Gen 4 at all, so every figure of it is assumed.
NOTHING_PUBLISHED = {"snapdragon7gen4"}


@pytest.fixture(autouse=True)
def _default_devices_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # Load by name from the checkout's devices/, whatever the caller's environment says.
    monkeypatch.delenv("HARNESS_DEVICES_DIR", raising=False)


def raw(name: str = "raspberrypi5") -> dict[str, Any]:
    """A shipped profile as a plain dict, to be broken in one place by a test."""
    with (DEVICES / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


def error_of(data: dict[str, Any], file: Path | str | None = None) -> InputError:
    with pytest.raises(InputError) as exc_info:
        parse_profile(data, file=file)
    return exc_info.value


# --------------------------------------------------------------------------- shipped profiles


def test_default_devices_dir_is_the_checkout() -> None:
    assert default_devices_dir() == DEVICES


def test_all_expected_profiles_are_listed() -> None:
    assert set(EXPECTED) == set(list_profiles())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_file_is_schema_2_with_every_v2_field_written(name: str) -> None:
    # The shipped files must not lean on the v1 upgrade's generic assumptions.
    data = raw(name)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert "dram_pj_per_byte" in data["memory"]
    assert {"thermal_resistance_c_per_w", "time_constant_s", "throttle_start_c",
            "throttle_end_c", "min_clock_fraction"} <= set(data["thermal"])
    assert ("battery_wh" in data["power"]) == (name in PHONES)
    for u in data["units"]:
        assert {"handoff_us", "sparse_2_4", "static_shapes"} <= set(u), u["name"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_loads_with_expected_units(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, DeviceProfile)
    assert p.name == name
    assert p.path == DEVICES / f"{name}.toml"
    assert {u.name: u.kind for u in p.units} == EXPECTED[name]["units"]
    assert p.adb_soc_model == EXPECTED[name]["adb"]
    assert p.reference_devices
    assert p.display_name and p.soc
    # Loading by path gives the same profile.
    assert load_profile(DEVICES / f"{name}.toml") == p


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_figure_has_a_source_that_matches_its_basis(name: str) -> None:
    figures = load_profile(name).figures()
    assert figures
    for path, fig in figures.items():
        assert fig.source.strip(), path
        assert math.isfinite(fig.value), path
        if fig.basis == "published":
            assert "device_specs.csv: " in fig.source, path
        elif fig.basis == "derived":
            assert fig.source.startswith("derived:"), path
        elif fig.basis == "assumed":
            assert fig.source.startswith("assumed:"), path
            assert "uncalibrated" in fig.source.lower(), path
        else:
            assert fig.basis == "fitted" and fig.source.startswith("fitted:"), path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_uncalibrated_lists_only_assumed_figures(name: str) -> None:
    p = load_profile(name)
    figures = p.figures()
    unc = p.uncalibrated()
    assert unc
    assert set(unc) == {k for k, f in figures.items() if f.basis == "assumed"}
    calibrated = {k for k, f in figures.items() if f.basis != "assumed"}
    from_specs = {k for k, f in figures.items() if f.basis in ("published", "derived")}
    assert bool(from_specs) == (name not in NOTHING_PUBLISHED)
    assert not calibrated & set(unc)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cpu_runs_every_op_and_peaks_are_ordered(name: str) -> None:
    p = load_profile(name)
    cpu = p.unit("cpu")
    assert cpu.supports_op("Conv") and cpu.supports_op("SomeCustomOp")
    assert set(cpu.peak_gops) == {"fp32", "fp16", "int8"}
    peaks = {k: f.value for k, f in cpu.peak_gops.items()}
    # FP16 doubles the fp32 lanes, SDOT does 4 int8 MACs per fp32 lane: int8 = 4 x fp32.
    assert peaks["fp16"] == pytest.approx(2 * peaks["fp32"])
    assert peaks["int8"] == pytest.approx(4 * peaks["fp32"])
    for u in p.units:
        assert set(u.peak_gops) <= set(PRECISIONS)
        assert 0 < u.efficiency.value <= 1
        assert u.effective_gops(next(iter(u.peak_gops))) > 0
    assert p.memory.app_cap_mb.value <= p.memory.ram_mb.value


@pytest.mark.parametrize("name", PHONES)
def test_phone_accelerators(name: str) -> None:
    p = load_profile(name)
    npu, gpu = p.unit("npu"), p.unit("gpu")
    assert "*" not in npu.ops and "*" not in gpu.ops
    for op in ("Conv", "MatMul", "Add", "Relu"):
        assert npu.supports_op(op) and gpu.supports_op(op)
    assert npu.supports_precision("int8")
    assert not npu.supports_precision("fp32")  # float models run in fp16 on the NPU
    assert not gpu.supports_precision("int8")  # GPU delegates dequantize int8
    assert npu.peak_gops["int8"].value > p.unit("cpu").peak_gops["int8"].value
    # Hexagon HTPs before v69 (888, 855) run quantized models only.
    assert npu.supports_precision("fp16") == (name not in {"snapdragon888", "snapdragon855"})
    if npu.supports_precision("fp16"):
        fp16 = npu.peak_gops["fp16"]
        if fp16.basis == "assumed":  # half the int8 rate, until calibration fits the share
            assert fp16.value == pytest.approx(npu.peak_gops["int8"].value / 2, rel=1e-3)
        else:
            assert fp16.basis == "fitted" and 0 < fp16.value < npu.peak_gops["int8"].value
    # NPU compilers need fixed shapes; depthwise convs get their own (lower) efficiency.
    assert npu.static_shapes and not npu.sparse_2_4
    assert npu.efficiency_for("depthwise") < npu.efficiency_for("conv") == npu.efficiency.value
    assert not gpu.static_shapes and not gpu.sparse_2_4


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unit_flags_and_handoff(name: str) -> None:
    p = load_profile(name)
    for u in p.units:
        assert u.static_shapes == (u.kind == "npu"), u.name
        # Only Ampere tensor cores (Jetson) are known to skip 2:4 structured zeros.
        assert u.sparse_2_4 == (name == "jetsonorinnano" and u.kind == "gpu"), u.name
        assert (u.handoff_us.value == 0) == (u.kind == "cpu"), u.name
    assert p.thermal.min_clock_fraction.value <= p.thermal.sustained_fraction.value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_thermal_steady_state_reproduces_sustained_fraction(name: str) -> None:
    """Under its sustained load, the lumped model ends at the profile's sustained fraction.

    For fitted resistances this checks the fit; for assumed ones, that the profile agrees with
    itself."""
    p = load_profile(name)
    load_w = p.unit(THERMAL_LOAD[name]).active_power_w.value
    model = ThermalModel.from_profile(p)
    _, fraction = model.steady_state(PowerAtClock(idle_w=p.power.idle_w.value, active_w=load_w))
    assert fraction == pytest.approx(p.thermal.sustained_fraction.value, abs=0.02)
    r = p.thermal.thermal_resistance_c_per_w
    assert (r.basis == "fitted") == (name in FITTED_R)
    if r.basis == "fitted":
        assert r.value == pytest.approx(fit_thermal_resistance(p, load_active_w=load_w),
                                        rel=0.005)
        # The source states the load it was fitted under.
        assert f"load_active_w = {load_w:g} W" in r.source
        assert f"the {THERMAL_LOAD[name].upper()} unit's active_power_w" in r.source


def _clock_after(p: DeviceProfile, load_w: float, seconds: float) -> float:
    """Clock fraction after a closed-loop run from ambient under a full load."""
    model = ThermalModel.from_profile(p)
    temp, dt = model.ambient_c, 0.5
    for _ in range(int(seconds / dt)):
        f = model.clock_fraction(temp)
        temp = model.step(temp, PowerAtClock(idle_w=p.power.idle_w.value, active_w=load_w)(f),
                          dt)
    return model.clock_fraction(temp)


@pytest.mark.parametrize(("name", "seconds", "fraction"), [
    # Vivo X100 Pro: 46 % "after 2 min" (cpu_throttling_test_pct_of_max_after_2min).
    ("dimensity9300", 120, 0.46),
    # iPhone 15 Pro Max: 36.6 % below the first run at run 4 of 1-minute loops, 40 % at the end.
    ("applea17pro", 240, 1 - 0.366),
    ("applea17pro", 1200, 0.60),
])
def test_time_constants_match_the_timed_evidence(name: str, seconds: float,
                                                 fraction: float) -> None:
    p = load_profile(name)
    load_w = p.unit(THERMAL_LOAD[name]).active_power_w.value
    assert _clock_after(p, load_w, seconds) == pytest.approx(fraction, abs=0.02)


def test_v1_documents_still_load_through_the_upgrade() -> None:
    # The shipped files are v2; a v1 document (the v2 fields removed) still loads, with the
    # upgrade's generic figures marked assumed.
    data = raw("snapdragon8gen3")
    data["schema_version"] = 1
    del data["memory"]["dram_pj_per_byte"]
    for key in ("thermal_resistance_c_per_w", "time_constant_s", "throttle_start_c",
                "throttle_end_c", "min_clock_fraction"):
        del data["thermal"][key]
    for u in data["units"]:
        for key in ("handoff_us", "sparse_2_4", "static_shapes", "op_efficiency"):
            u.pop(key, None)
    p = parse_profile(data)
    assert p.thermal.thermal_resistance_c_per_w.basis == "assumed"
    assert "schema 1 -> 2 upgrade" in p.memory.dram_pj_per_byte.source
    assert p.unit("npu").handoff_us.value == 100 and not p.unit("npu").static_shapes


def test_key_figures() -> None:
    g3, g2, pi = (load_profile(n) for n in ("snapdragon8gen3", "snapdragon8gen2", "raspberrypi5"))
    # Units: GOPS, 1 MAC = 2 ops; 45 TOPS = 45000 GOPS.
    assert g3.unit("npu").peak_gops["int8"].value == 45000
    assert g3.unit("npu").peak_gops["int8"].basis == "published"
    assert g2.unit("npu").peak_gops["int8"].value == pytest.approx(45000 / 1.98, abs=1)
    assert g2.unit("npu").peak_gops["int8"].basis == "derived"
    assert g2.unit("npu").supports_precision("int4")  # the CSV states INT4 support for 8 Gen 2
    assert g3.memory.bandwidth_gb_s.value == 76.8
    assert g3.thermal.sustained_fraction.value == 0.82
    assert g2.thermal.sustained_fraction.value == 0.80
    assert g3.unit("gpu").active_power_w.value == 12.6
    assert g3.unit("gpu").active_power_w.basis == "published"
    assert pi.unit("cpu").peak_gops["fp32"].value == pytest.approx(4 * 2.4 * 16)
    assert pi.memory.bandwidth_gb_s.value == 17
    assert pi.memory.ram_mb.value == 8192
    # HPL (fp64) over the fp64 peak (half the fp32 peak).
    assert pi.unit("cpu").efficiency.value == pytest.approx(36.737 / (4 * 2.4 * 8), abs=1e-3)
    assert pi.unit("cpu").active_power_w.value + pi.power.idle_w.value == pytest.approx(12.0)
    assert all(p.thermal.ambient_c.value == 25 for p in (g3, g2, pi))
    elite, d93, exy, a17, orin = (load_profile(n) for n in (
        "snapdragon8elite", "dimensity9300", "exynos2400", "applea17pro", "jetsonorinnano"))
    # 8 Elite: the 8 Gen 3's 45 TOPS x the vendor's "45% faster NPU".
    assert elite.unit("npu").peak_gops["int8"].value == pytest.approx(45000 * 1.45)
    assert elite.memory.bandwidth_gb_s.value == 84.8
    assert d93.thermal.sustained_fraction.value == 0.46
    assert d93.unit("gpu").active_power_w.value == 12.7
    assert exy.thermal.sustained_fraction.value == 0.72
    assert exy.unit("gpu").active_power_w.value == 10.1
    assert a17.unit("npu").peak_gops["int8"].value == 35000
    assert a17.thermal.sustained_fraction.value == pytest.approx(1 - 0.40)
    # Jetson: 67 TOPS is a 2:4-sparse figure; the profile keeps dense peaks and the flag.
    gpu = orin.unit("gpu")
    assert gpu.peak_gops["int8"].value == 67000 / 2 and gpu.sparse_2_4
    assert gpu.peak_gops["fp32"].value == pytest.approx(1024 * 2 * 1.02)
    assert orin.memory.bandwidth_gb_s.value == 102


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_figures_cite_real_rows(name: str) -> None:
    with SPECS_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for path, fig in load_profile(name).figures().items():
        if fig.basis != "published":
            continue
        spec = fig.source.split("device_specs.csv: ", 1)[1].split(" ", 1)[0]
        matching = [r for r in rows if r["spec"] == spec and r["device"] in fig.source]
        assert matching, f"{path}: no row {spec!r} for a device named in the source"
        assert any(r["source"] in fig.source for r in matching), path


# --------------------------------------------------------------------------- error cases


def test_unknown_device_name_suggests_close_match() -> None:
    with pytest.raises(InputError) as exc_info:
        load_profile("snapdragon8gen")
    msg = str(exc_info.value)
    assert "unknown device 'snapdragon8gen'" in msg
    assert "Did you mean" in msg and "'snapdragon8gen3'" in msg


def test_unknown_device_in_explicit_dir(tmp_path: Path) -> None:
    (tmp_path / "raspberrypi5.toml").write_text((DEVICES / "raspberrypi5.toml").read_text())
    assert load_profile("raspberrypi5", devices_dir=tmp_path).name == "raspberrypi5"
    with pytest.raises(InputError, match="raspberrypi5"):
        load_profile("raspberrypi", devices_dir=tmp_path)


def test_string_where_a_number_belongs_names_file_and_field(tmp_path: Path) -> None:
    text = (DEVICES / "raspberrypi5.toml").read_text()
    assert text.count("value = 17\n") == 1
    bad = tmp_path / "raspberrypi5.toml"
    bad.write_text(text.replace("value = 17\n", 'value = "17"\n'))
    with pytest.raises(InputError) as exc_info:
        load_profile(bad)
    err = exc_info.value
    assert err.file == str(bad) and str(bad) in str(err)
    assert err.field == "memory.bandwidth_gb_s.value"
    assert "memory.bandwidth_gb_s.value" in str(err)
    assert "expected a number" in str(err) and "'17'" in str(err)


def test_bool_is_not_a_number() -> None:
    data = raw()
    data["memory"]["ram_mb"]["value"] = True
    assert error_of(data).field == "memory.ram_mb.value"


def test_unknown_top_level_key_suggests_close_match() -> None:
    data = raw()
    data["memroy"] = data.pop("memory")
    err = error_of(data, file="raspberrypi5.toml")
    assert err.field == "memroy"
    assert "unknown key 'memroy'" in str(err) and "Did you mean 'memory'" in str(err)
    assert "raspberrypi5.toml" in str(err)


def test_unknown_key_in_a_figure_suggests_close_match() -> None:
    data = raw()
    fig = data["memory"]["bandwidth_gb_s"]
    fig["vaule"] = fig.pop("value")
    err = error_of(data)
    assert err.field == "memory.bandwidth_gb_s.vaule"
    assert "Did you mean 'value'" in str(err)


def test_unknown_key_in_a_unit_suggests_close_match() -> None:
    data = raw()
    data["units"][0]["effciency"] = data["units"][0].pop("efficiency")
    err = error_of(data)
    assert err.field == "units[0].effciency"
    assert "Did you mean 'efficiency'" in str(err)


def test_unknown_precision_is_rejected() -> None:
    data = raw()
    data["units"][0]["peak_gops"]["fp8"] = copy.deepcopy(data["units"][0]["peak_gops"]["fp32"])
    err = error_of(data)
    assert err.field == "units[0].peak_gops.fp8"
    assert "unknown precision 'fp8'" in str(err)


def test_unknown_basis_is_rejected() -> None:
    data = raw()
    data["power"]["idle_w"]["basis"] = "guessed"
    err = error_of(data)
    assert err.field == "power.idle_w.basis" and "unknown basis" in str(err)


def test_missing_source_is_rejected() -> None:
    data = raw()
    del data["power"]["idle_w"]["source"]
    err = error_of(data)
    assert err.field == "power.idle_w.source"
    assert "missing" in str(err)


def test_blank_source_is_rejected() -> None:
    data = raw()
    data["units"][0]["peak_gops"]["int8"]["source"] = "   "
    err = error_of(data)
    assert err.field == "units[0].peak_gops.int8.source"
    assert "non-empty source" in str(err)


def test_missing_section_is_rejected() -> None:
    data = raw()
    del data["thermal"]
    err = error_of(data)
    assert err.field == "thermal" and "missing" in str(err)


def test_newer_schema_version_is_rejected(tmp_path: Path) -> None:
    data = raw()
    data["schema_version"] = SCHEMA_VERSION + 1
    err = error_of(data)
    assert err.field == "schema_version"
    assert "newer" in str(err)
    # Through a file too: the message names it.
    text = (DEVICES / "raspberrypi5.toml").read_text()
    bad = tmp_path / "raspberrypi5.toml"
    assert "schema_version = 2\n" in text
    bad.write_text(text.replace("schema_version = 2\n", f"schema_version = {SCHEMA_VERSION + 1}\n"))
    with pytest.raises(InputError, match="newer") as exc_info:
        load_profile(bad)
    assert str(bad) in str(exc_info.value)


def test_non_integer_schema_version_is_rejected() -> None:
    data = raw()
    data["schema_version"] = "1"
    assert error_of(data).field == "schema_version"


def test_app_cap_above_ram_is_rejected() -> None:
    data = raw()
    data["memory"]["app_cap_mb"]["value"] = data["memory"]["ram_mb"]["value"] + 1
    err = error_of(data)
    assert err.field == "memory.app_cap_mb.value"
    assert "at most ram_mb" in str(err)


def test_out_of_range_fraction_is_rejected() -> None:
    data = raw()
    data["thermal"]["sustained_fraction"]["value"] = 1.5
    err = error_of(data)
    assert err.field == "thermal.sustained_fraction.value" and "fraction" in str(err)


def test_duplicate_unit_names_are_rejected() -> None:
    data = raw()
    data["units"].append(copy.deepcopy(data["units"][0]))
    assert error_of(data).field == "units"


def test_name_must_match_file_stem(tmp_path: Path) -> None:
    bad = tmp_path / "mypi.toml"
    bad.write_text((DEVICES / "raspberrypi5.toml").read_text())
    with pytest.raises(InputError) as exc_info:
        load_profile(bad)
    assert exc_info.value.field == "name" and "'mypi'" in str(exc_info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('schema_version = 1\nname = "broken\n')
    with pytest.raises(InputError) as exc_info:
        load_profile(bad)
    assert exc_info.value.file == str(bad)
    assert str(bad) in str(exc_info.value) and "not valid TOML" in str(exc_info.value)


def test_missing_profile_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.toml"
    with pytest.raises(InputError) as exc_info:
        load_profile(missing)
    assert str(missing) in str(exc_info.value)


def test_the_fitted_overlay_can_be_left_out() -> None:
    # calibrate starts from the hand-written figures, so its fit does not depend on the last one
    shipped = load_profile("snapdragon8gen3").unit("npu")
    hand = load_profile("snapdragon8gen3", fitted=False).unit("npu")
    assert shipped.dispatch_us.basis == "fitted"
    assert hand.dispatch_us.basis != "fitted"


def test_a_profile_outside_devices_finds_the_shipped_op_sets(tmp_path) -> None:
    """A user's own profile anywhere on disk can name a shipped op set (@qnn_htp)."""
    from harness.profiles import default_devices_dir, load_profile

    text = (default_devices_dir() / "snapdragon8gen3.toml").read_text()
    assert '"@qnn_htp"' in text
    mine = tmp_path / "elsewhere" / "myphone.toml"
    mine.parent.mkdir()
    mine.write_text(text.replace('name = "snapdragon8gen3"', 'name = "myphone"', 1))
    prof = load_profile(mine)
    assert prof.name == "myphone" and prof.unit("npu").supports_op("MatMul")


def test_fitted_profiles_carry_their_calibration_error() -> None:
    """The error to expect travels with every prediction the fitted NPU figures make; boards
    without the fitted unit get none (their CPU/GPU efficiencies are not fitted)."""
    from harness.profiles import calibration_fidelity, load_profile

    fid = calibration_fidelity(load_profile("snapdragon8gen3"))
    assert fid is not None and fid["unit"] == "npu" and fid["targets"] > 50
    assert 0 < fid["in_sample_median_pct"] <= fid["leave_one_model_out_median_pct"] < 100
    assert calibration_fidelity(load_profile("raspberrypi5")) is None


def test_a_prediction_range_comes_from_the_calibration_spread() -> None:
    from harness.predict import _range

    fid = {"unit": "npu", "ratio_p10": 0.7, "ratio_p90": 1.6,
           "by_precision": {"int8": {"ratio_p10": 0.8, "ratio_p90": 1.25, "rows": 30}},
           "by_device": {"snapdragon8gen3": {"int8": {"ratio_p10": 0.5, "ratio_p90": 1.0,
                                                      "rows": 10}}}}
    assert _range(fid, {"unit": "npu", "precision": "int8"}) == (0.8, 1.25)
    # that phone at that precision has its own spread; another phone takes the precision's
    assert _range(fid, {"unit": "npu", "precision": "int8", "device": "snapdragon8gen3"}) == (
        1.0, 2.0)
    assert _range(fid, {"unit": "npu", "precision": "int8", "device": "tensorg3"}) == (
        0.8, 1.25)
    lo, hi = _range(fid, {"unit": "npu", "precision": "fp16"}) or (0, 0)
    assert (lo, hi) == (1 / 1.6, 1 / 0.7)       # no rows of that precision: the overall spread
    assert _range(fid, {"unit": "cpu", "precision": "int8"}) is None   # not a fitted unit
