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
# The shared calibration data sits next to the checkout in the project workspace; tests that
# cross-check citations against it skip when it is absent (e.g. in a bare clone).
SPECS_CSV = REPO.parent / "shared" / "calibration" / "device_specs.csv"

EXPECTED = {
    "snapdragon8gen3": {"units": {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}, "adb": "SM8650"},
    "snapdragon8gen2": {"units": {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}, "adb": "SM8550"},
    "raspberrypi5": {"units": {"cpu": "cpu"}, "adb": "BCM2712"},
}


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
    assert set(EXPECTED) <= set(list_profiles())


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


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_uncalibrated_lists_only_assumed_figures(name: str) -> None:
    p = load_profile(name)
    figures = p.figures()
    unc = p.uncalibrated()
    assert unc
    assert set(unc) == {k for k, f in figures.items() if f.basis == "assumed"}
    published = {k for k, f in figures.items() if f.basis == "published"}
    assert published
    assert not published & set(unc)


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


@pytest.mark.parametrize("name", ["snapdragon8gen3", "snapdragon8gen2"])
def test_phone_accelerators(name: str) -> None:
    p = load_profile(name)
    npu, gpu = p.unit("npu"), p.unit("gpu")
    assert "*" not in npu.ops and "*" not in gpu.ops
    for op in ("Conv", "MatMul", "Add", "Relu"):
        assert npu.supports_op(op) and gpu.supports_op(op)
    assert npu.supports_precision("int8") and npu.supports_precision("fp16")
    assert not npu.supports_precision("fp32")  # float models run in fp16 on the NPU
    assert not gpu.supports_precision("int8")  # GPU delegates dequantize int8
    # The NPU is the fastest unit at int8; fp16 is assumed at half its int8 rate.
    assert npu.peak_gops["int8"].value > p.unit("cpu").peak_gops["int8"].value
    assert npu.peak_gops["fp16"].value == pytest.approx(npu.peak_gops["int8"].value / 2, rel=1e-3)


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


@pytest.mark.skipif(not SPECS_CSV.is_file(), reason="shared/calibration not next to the checkout")
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
    bad.write_text(text.replace("schema_version = 1\n", f"schema_version = {SCHEMA_VERSION + 1}\n"))
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
