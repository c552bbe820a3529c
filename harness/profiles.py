"""Device profiles: the versioned, validated schema of ``devices/*.toml``.

Every number in a profile is a :class:`Figure` that carries its provenance: where it was
published, or how it was derived, assumed or fitted. A profile that lacks a source for a figure,
has a field of the wrong type or an unknown key is rejected with an error that names the file
and the field.

File format (``schema_version = 1``)::

    schema_version = 1
    name = "snapdragon8gen3"              # must equal the file stem
    display_name = "Qualcomm Snapdragon 8 Gen 3"
    soc = "Snapdragon 8 Gen 3"
    reference_devices = ["Samsung Galaxy S24"]
    adb_soc_model = "SM8650"              # getprop ro.soc.model, for the adb backend

    [memory]
    ram_mb = { value = 8192, basis = "published", source = "..." }
    app_cap_mb = { ... }                  # what one app may allocate before it is killed
    bandwidth_gb_s = { ... }              # peak DRAM bandwidth
    runtime_overhead_mb = { ... }         # runtime + process baseline, added to footprints

    dram_pj_per_byte = { ... }            # energy per byte of DRAM traffic (v2)
    bandwidth_efficiency = { ... }        # optional (v2): share of peak bandwidth reached

    [power]
    idle_w = { ... }
    battery_wh = { ... }                  # optional: phones; for inferences per % battery

    [thermal]                             # lumped model, see harness/emulator/thermal.py
    ambient_c = { ... }
    sustained_fraction = { ... }          # sustained / burst performance under long load
    thermal_resistance_c_per_w = { ... }  # steady-state rise per watt (v2)
    time_constant_s = { ... }             # how fast the temperature follows the power (v2)
    throttle_start_c = { ... }            # clocks start to drop here (v2)
    throttle_end_c = { ... }              # ... and reach min_clock_fraction here (v2)
    min_clock_fraction = { ... }          # (v2)

    [[units]]                             # one per compute unit: cpu, gpu, npu
    name = "npu"
    kind = "npu"
    ops = ["Conv", "MatMul", ...]         # ONNX op types it runs; ["*"] for all
    peak_gops = { int8 = { ... }, fp16 = { ... } }   # per precision; 1 MAC = 2 ops
    efficiency = { ... }                  # share of peak reached on real layers
    dispatch_us = { ... }                 # fixed cost per node
    active_power_w = { ... }              # at full clock and full utilisation
    handoff_us = { ... }                  # cost of a tensor entering or leaving this unit (v2)
    op_efficiency = { depthwise = { ... } }   # optional, per op class (v2); else `efficiency`
    energy_pj_per_op = { int8 = { ... } }     # optional (v2); else derived from active power
    sparse_2_4 = true                     # optional (v2): skips the zeros of 2:4 sparse weights
    static_shapes = true                  # optional (v2): cannot run nodes of unknown shape
    fp32_as = "fp16"                      # optional (v2): runs fp32 nodes at this precision
    onchip_mb = { ... }                   # optional (v2): local memory that keeps activations

A figure's ``basis`` is one of ``published`` (a spec sheet or measurement, cited), ``derived``
(computed from published figures; the source says how), ``assumed`` (no published figure; the
source says what the assumption rests on: such figures are *uncalibrated*) or ``fitted``
(calibrated on ``harness/calibration/data/``; the source says on what).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import schema
from harness.datafiles import data_dir, find_toml, names_in, read_toml
from harness.errors import InputError, check_keys, expect_type, unknown_name

SCHEMA_VERSION = 2
PRECISIONS = ("fp32", "fp16", "int8", "int4")
UNIT_KINDS = ("cpu", "gpu", "npu")
BASES = ("published", "derived", "assumed", "fitted")
# Op classes with their own efficiency: units reach very different shares of peak on them
# (a depthwise conv has little reuse per weight; elementwise ops are bandwidth-bound).
OP_CLASSES = ("conv", "depthwise", "matmul", "elementwise", "other")

# Upgrade functions: UPGRADES[v] turns a version-v document into version v + 1.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True)
class Figure:
    """One number with its provenance. The unit is in the name of the field that holds it."""

    value: float
    basis: str
    source: str

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {self.basis!r}")
        if not self.source.strip():
            raise ValueError("every figure needs a source")

    @property
    def calibrated(self) -> bool:
        """False for figures that rest on an assumption rather than a publication or a fit."""
        return self.basis != "assumed"


@dataclass(frozen=True)
class ComputeUnit:
    """A CPU, GPU or NPU with its peak throughput per precision."""

    name: str
    kind: str
    ops: tuple[str, ...]
    peak_gops: Mapping[str, Figure]
    efficiency: Figure
    dispatch_us: Figure
    active_power_w: Figure
    handoff_us: Figure
    op_efficiency: Mapping[str, Figure] = field(default_factory=dict)
    energy_pj_per_op_given: Mapping[str, Figure] = field(default_factory=dict)
    sparse_2_4: bool = False
    static_shapes: bool = False
    # Local memory (an NPU's TCM): a node whose activations fit stays off DRAM for them.
    onchip_mb: Figure | None = None
    # A unit without an fp32 rate whose runtime runs fp32 nodes at this precision instead of
    # refusing them (ONNX Runtime's QNN EP: enable_htp_fp16_precision, on by default).
    fp32_as: str | None = None

    def __post_init__(self) -> None:
        if self.fp32_as is not None and self.fp32_as not in self.peak_gops:
            raise InputError(f"expected a precision this unit has a peak for "
                             f"({', '.join(self.peak_gops)}), got {self.fp32_as!r}",
                             field=f"units.{self.name}.fp32_as")

    def efficiency_for(self, op_class: str) -> float:
        """Share of peak reached on ``op_class`` (the unit's default when not given)."""
        fig = self.op_efficiency.get(op_class)
        return (fig or self.efficiency).value

    def energy_pj_per_op(self, precision: str) -> Figure:
        """Energy per op at full clock: given in the profile, or derived from active power.

        Derived as active_power_w / (peak x efficiency): the unit at full load spends its
        active power on its effective throughput.
        """
        if precision in self.energy_pj_per_op_given:
            return self.energy_pj_per_op_given[precision]
        gops = self.effective_gops(precision)
        return Figure(value=self.active_power_w.value / gops * 1e3, basis="derived",
                      source=f"derived: active_power_w {self.active_power_w.value:g} W / "
                             f"(peak {self.peak_gops[precision].value:g} GOPS x efficiency "
                             f"{self.efficiency.value:g}) = pJ per op at full load")

    def supports_op(self, op_type: str) -> bool:
        return "*" in self.ops or op_type in self.ops

    def supports_precision(self, precision: str) -> bool:
        return precision in self.peak_gops

    def effective_gops(self, precision: str) -> float:
        """Peak throughput at ``precision`` times the unit's efficiency, in GOPS."""
        return self.peak_gops[precision].value * self.efficiency.value


@dataclass(frozen=True)
class MemorySpec:
    """MB are MiB (2**20 bytes); GB/s are 1e9 bytes per second."""

    ram_mb: Figure
    app_cap_mb: Figure
    bandwidth_gb_s: Figure
    runtime_overhead_mb: Figure
    dram_pj_per_byte: Figure
    # Share of the peak bandwidth real kernels reach (1 when not given); calibration fits it.
    bandwidth_efficiency: Figure | None = None

    @property
    def effective_bandwidth_gb_s(self) -> float:
        eff = self.bandwidth_efficiency.value if self.bandwidth_efficiency else 1.0
        return self.bandwidth_gb_s.value * eff


@dataclass(frozen=True)
class PowerSpec:
    idle_w: Figure
    battery_wh: Figure | None = None


@dataclass(frozen=True)
class ThermalSpec:
    ambient_c: Figure
    sustained_fraction: Figure
    thermal_resistance_c_per_w: Figure
    time_constant_s: Figure
    throttle_start_c: Figure
    throttle_end_c: Figure
    min_clock_fraction: Figure


@dataclass(frozen=True)
class DeviceProfile:
    """One device: compute units, memory, power and thermal figures, each with a source."""

    name: str
    display_name: str
    soc: str
    reference_devices: tuple[str, ...]
    adb_soc_model: str
    memory: MemorySpec
    power: PowerSpec
    thermal: ThermalSpec
    units: tuple[ComputeUnit, ...]
    path: Path | None = field(default=None, compare=False)

    def unit(self, name: str) -> ComputeUnit:
        for u in self.units:
            if u.name == name:
                return u
        raise unknown_name("compute unit", name, [u.name for u in self.units], file=self.path)

    def figures(self) -> dict[str, Figure]:
        """Every figure in the profile keyed by its dotted field path (for listing sources)."""
        out: dict[str, Figure] = {}
        for section in ("memory", "power", "thermal"):
            obj = getattr(self, section)
            for key, value in vars(obj).items():
                if value is not None:
                    out[f"{section}.{key}"] = value
        for u in self.units:
            for prec, fig in u.peak_gops.items():
                out[f"units.{u.name}.peak_gops.{prec}"] = fig
            for key in ("efficiency", "dispatch_us", "active_power_w", "handoff_us",
                        "onchip_mb"):
                if getattr(u, key) is not None:
                    out[f"units.{u.name}.{key}"] = getattr(u, key)
            for cls, fig in u.op_efficiency.items():
                out[f"units.{u.name}.op_efficiency.{cls}"] = fig
            for prec, fig in u.energy_pj_per_op_given.items():
                out[f"units.{u.name}.energy_pj_per_op.{prec}"] = fig
        return out

    def uncalibrated(self) -> list[str]:
        """Field paths of figures that rest on assumptions."""
        return [k for k, f in self.figures().items() if not f.calibrated]

    def provenance(self) -> dict[str, str | None]:
        """What a prediction on this profile was made with: a hash of every field the
        emulator reads (figures with the calibration overlay merged, op sets, precisions) and
        of the overlay file, so a recalibration is told apart from a model change."""
        import dataclasses
        import hashlib
        import json

        data = dataclasses.asdict(self)
        data.pop("path", None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        # the shared overlay, then this profile's phone refit if any (the hash of the shared
        # one alone is what runs before phone refits recorded: it stays comparable)
        overlays = [] if self.path is None else [
            p for p in (self.path.parent / FITTED_OVERLAY,
                        phone_overlay_path(self.path.parent, self.name)) if p.is_file()]
        return {"profile_sha256": hashlib.sha256(blob).hexdigest(),
                "overlay_sha256": hashlib.sha256(b"".join(p.read_bytes() for p in overlays))
                .hexdigest() if overlays else None}


# --------------------------------------------------------------------------- loading


def default_devices_dir() -> Path:
    """Where profiles live: $HARNESS_DEVICES_DIR, the checkout's devices/, or packaged data."""
    return data_dir("devices", "HARNESS_DEVICES_DIR")


def list_profiles(devices_dir: Path | None = None) -> list[str]:
    """Names of the profiles in ``devices_dir`` (default: :func:`default_devices_dir`)."""
    return names_in(devices_dir or default_devices_dir())


def load_profile(name_or_path: str | Path, *, devices_dir: Path | None = None,
                 fitted: bool = True) -> DeviceProfile:
    """Load and validate a profile by name (``snapdragon8gen3``) or by path to a TOML file.

    ``fitted=False`` leaves out the calibration overlay: the hand-written figures alone, which
    ``harness calibrate`` starts from so that its result does not depend on an earlier fit.
    """
    path = find_toml(name_or_path, devices_dir or default_devices_dir(), kind="device")
    data = upgrade(read_toml(path, kind="device profile"), file=path)
    overlay = path.parent / FITTED_OVERLAY
    if fitted and overlay.is_file():
        data = apply_overlay(data, overlay)
    phone = phone_overlay_path(path.parent, str(data.get("name") or path.stem))
    if fitted and phone.is_file():
        # a refit on this device's own phone is more specific than the shared fit: last
        data = apply_overlay(data, phone)
    return parse_profile(data, file=path)


# Fitted figures live in a generated file beside the hand-written profiles (which keep their
# comments): `harness calibrate --write` rewrites it; load_profile merges it in.
FITTED_OVERLAY = Path("fitted") / "calibration.toml"


def phone_overlay_path(devices_dir: Path, name: str) -> Path:
    """Where ``harness calibrate --from-run RUN --write`` keeps profile ``name``'s refit on a
    real phone (``fitted/phone-<name>.toml``): one file per profile, merged after the shared
    overlay; deleting it undoes the refit."""
    return devices_dir / "fitted" / f"phone-{name}.toml"


def calibration_fidelity(profile: DeviceProfile) -> dict[str, Any] | None:
    """The fitted overlay's error figures for ``profile``'s fitted unit (the NPU), or None
    when no fit applies to it (no overlay beside it, no NPU, an overlay without them)."""
    if profile.path is None:
        return None
    overlay = profile.path.parent / FITTED_OVERLAY
    if not overlay.is_file():
        return None
    doc = read_toml(overlay, kind="fitted overlay")
    fid = doc.get("fidelity")
    if not isinstance(fid, dict) or profile.name not in (doc.get("profiles") or {}):
        return None
    if not any(u.name == fid.get("unit") for u in profile.units):
        return None
    return {k: v for k, v in fid.items() if isinstance(v, int | float | str | list | dict)}


def apply_overlay(data: dict[str, Any], overlay: Path) -> dict[str, Any]:
    """``data`` with the overlay's figures for this profile merged over it.

    The overlay holds ``[profiles.<name>.<section>.<field>]`` figure tables; units are
    addressed by name (``[profiles.<name>.units.npu.op_efficiency.conv]``).
    """
    doc = read_toml(overlay, kind="fitted overlay")
    if doc.get("schema_version") != 1:
        raise InputError(f"expected schema version 1, got {doc.get('schema_version')!r}",
                         file=overlay, field="schema_version")
    patch = doc.get("profiles", {}).get(data.get("name"))
    if not patch:
        return data
    out = dict(data)
    for key, value in patch.items():
        if key == "units":
            units = [dict(u) for u in out.get("units", [])]
            for uname, upatch in value.items():
                target = next((u for u in units if u.get("name") == uname), None)
                if target is None:
                    raise unknown_name("compute unit", uname, [str(u.get("name")) for u in units],
                                       file=overlay, field=f"profiles.{data['name']}.units")
                target.update(_deep_merge(target, upatch))
            out["units"] = units
        else:
            out[key] = _deep_merge(out.get(key, {}), value)
    return out


def _deep_merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict) or "value" in patch:
        return patch
    merged = dict(base)
    for k, v in patch.items():
        merged[k] = _deep_merge(base.get(k), v)
    return merged


def upgrade(data: dict[str, Any], *, file: Any) -> dict[str, Any]:
    """Bring a profile document to :data:`SCHEMA_VERSION` through the upgrade functions."""
    return schema.upgrade(data, UPGRADES, current=SCHEMA_VERSION, file=file)


def parse_profile(data: dict[str, Any], *, file: Path | str | None = None) -> DeviceProfile:
    """Validate a profile document (already parsed from TOML) and build the dataclasses."""
    data = upgrade(dict(data), file=file)
    check_keys(
        data,
        allowed={"schema_version", "name", "display_name", "soc", "reference_devices",
                 "adb_soc_model", "memory", "power", "thermal", "units"},
        required={"name", "display_name", "soc", "adb_soc_model", "memory", "power",
                  "thermal", "units"},
        file=file,
    )
    name = expect_type(data["name"], str, "a string", file=file, field="name")
    if file is not None and Path(file).stem != name:
        raise InputError(f"expected the file stem {Path(file).stem!r}, got {name!r}",
                         file=file, field="name")
    refs = expect_type(data.get("reference_devices", []), list, "a list of strings",
                       file=file, field="reference_devices")
    memory = _section(data, "memory", MemorySpec, file, {
        "ram_mb": _memory_mb, "app_cap_mb": _memory_mb, "bandwidth_gb_s": _bandwidth,
        "runtime_overhead_mb": _overhead_mb, "dram_pj_per_byte": _pj},
        optional={"bandwidth_efficiency": _fraction})
    power = _section(data, "power", PowerSpec, file, {"idle_w": _watts},
                     optional={"battery_wh": _battery_wh})
    thermal = _section(data, "thermal", ThermalSpec, file, {
        "ambient_c": _ambient_c, "sustained_fraction": _fraction,
        "thermal_resistance_c_per_w": _c_per_w, "time_constant_s": _seconds,
        "throttle_start_c": _throttle_c, "throttle_end_c": _throttle_c,
        "min_clock_fraction": _fraction})
    if thermal.throttle_end_c.value <= thermal.throttle_start_c.value:
        raise InputError(f"expected more than throttle_start_c "
                         f"({thermal.throttle_start_c.value:g}), got "
                         f"{thermal.throttle_end_c.value:g}", file=file,
                         field="thermal.throttle_end_c.value")
    if thermal.min_clock_fraction.value > thermal.sustained_fraction.value:
        raise InputError(f"expected at most sustained_fraction "
                         f"({thermal.sustained_fraction.value:g}): the throttle curve must be "
                         f"able to reach the sustained level, got "
                         f"{thermal.min_clock_fraction.value:g}", file=file,
                         field="thermal.min_clock_fraction.value")
    if memory.app_cap_mb.value > memory.ram_mb.value:
        raise InputError(f"expected at most ram_mb ({memory.ram_mb.value:g}), got "
                         f"{memory.app_cap_mb.value:g}", file=file, field="memory.app_cap_mb.value")
    units_raw = expect_type(data["units"], list, "a list of [[units]] tables", file=file,
                            field="units")
    if not units_raw:
        raise InputError("expected at least one compute unit", file=file, field="units")
    units = tuple(_unit(u, i, file) for i, u in enumerate(units_raw))
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise InputError(f"unit names must be unique, got {names}", file=file, field="units")
    return DeviceProfile(
        name=name,
        display_name=expect_type(data["display_name"], str, "a string", file=file,
                                 field="display_name"),
        soc=expect_type(data["soc"], str, "a string", file=file, field="soc"),
        reference_devices=tuple(expect_type(r, str, "a string", file=file,
                                            field=f"reference_devices[{i}]")
                                for i, r in enumerate(refs)),
        adb_soc_model=expect_type(data["adb_soc_model"], str, "a string", file=file,
                                  field="adb_soc_model"),
        memory=memory, power=power, thermal=thermal, units=units,
        path=Path(file) if file is not None else None,
    )


# --------------------------------------------------------------------------- helpers

Check = Callable[[float], str | None]


def _between(lo: float, hi: float, *, open_lo: bool = False, what: str = "a number"
             ) -> Check:
    """A check accepting ``lo <= v <= hi`` (``lo < v`` with ``open_lo``).

    Every figure has a physical range: a value outside it (an efficiency of 5e-324, a peak of
    1e-308 GOPS, an ambient of 1e300 C) is a typo or a unit mistake, and would reach the
    emulator as an infinite latency or a NaN temperature.
    """
    bracket = "(" if open_lo else "["

    def check(v: float) -> str | None:
        ok = (lo < v if open_lo else lo <= v) and v <= hi
        return None if ok else f"{what} in {bracket}{lo:g}, {hi:g}]"
    return check


# Physical ranges (every shipped profile and the fitted overlay lie well inside them).
_fraction = _between(1e-4, 1.0, what="a fraction")              # efficiencies, clock shares
_gops = _between(1e-3, 1e7, what="GOPS")                        # peak throughput per unit
_bandwidth = _between(1e-3, 1e7, what="GB/s")
_memory_mb = _between(1.0, 1e8, what="MiB")                     # RAM, app cap: 1 MiB..95 TiB
_overhead_mb = _between(0.0, 1e8, what="MiB")
_onchip_mb = _between(0.0, 1e5, what="MiB")
_pj = _between(0.0, 1e6, what="pJ")                             # per byte of DRAM traffic
_pj_per_op = _between(1e-6, 1e6, open_lo=True, what="pJ per op")
_watts = _between(0.0, 1e4, what="W")                           # idle and active power
_battery_wh = _between(1e-3, 1e5, what="Wh")
_ambient_c = _between(-40.0, 60.0, what="degrees Celsius")
_throttle_c = _between(0.0, 150.0, what="degrees Celsius")
_c_per_w = _between(1e-3, 1e4, what="C per W")
_seconds = _between(1e-3, 1e6, what="seconds")
_us = _between(0.0, 1e7, what="microseconds")                   # per-node costs: up to 10 s


def _figure(raw: Any, *, file: Any, field: str, check: Check) -> Figure:
    expect_type(raw, dict, "a table {value, basis, source}", file=file, field=field)
    check_keys(raw, allowed={"value", "basis", "source"}, required={"value", "basis", "source"},
               file=file, prefix=field + ".")
    value = expect_type(raw["value"], (int, float), "a number", file=file, field=field + ".value")
    if not math.isfinite(value):  # TOML allows nan and inf; no device figure is either
        raise InputError(f"expected a finite number, got {value!r}", file=file,
                         field=field + ".value")
    problem = check(float(value))
    if problem:
        raise InputError(f"expected {problem}, got {value!r}", file=file, field=field + ".value")
    basis = expect_type(raw["basis"], str, "a string", file=file, field=field + ".basis")
    if basis not in BASES:
        raise unknown_name("basis", basis, BASES, file=file, field=field + ".basis")
    source = expect_type(raw["source"], str, "a string", file=file, field=field + ".source")
    if not source.strip():
        raise InputError("expected a non-empty source (a citation, or how the value was "
                         "derived)", file=file, field=field + ".source")
    return Figure(value=float(value), basis=basis, source=source.strip())


def _section(data: dict[str, Any], name: str, cls: type, file: Any,
             checks: dict[str, Check], *, optional: dict[str, Check] | None = None) -> Any:
    optional = optional or {}
    raw = expect_type(data[name], dict, "a table", file=file, field=name)
    check_keys(raw, allowed={*checks, *optional}, required=checks, file=file,
               prefix=name + ".")
    every = {**checks, **optional}
    return cls(**{k: _figure(raw[k], file=file, field=f"{name}.{k}", check=c)
                  for k, c in every.items() if k in raw})


def _figure_table(raw: Any, *, file: Any, field: str, keys: tuple[str, ...], kind: str,
                  check: Check) -> dict[str, Figure]:
    table = expect_type(raw, dict, f"a table of {kind} = figure", file=file, field=field)
    out = {}
    for key, fig in table.items():
        if key not in keys:
            raise unknown_name(kind, key, keys, file=file, field=f"{field}.{key}")
        out[key] = _figure(fig, file=file, field=f"{field}.{key}", check=check)
    return out


OPSETS_DIR = "opsets"


def _expand_op_sets(ops: list[Any], *, file: Any, field: str) -> list[Any]:
    """Replace ``@name`` entries with the ops of ``opsets/<name>.toml``.

    Shared op sets keep one cited list for a family of units (every Hexagon NPU) instead of
    copies that drift apart. An op set is looked up beside the profile first (``opsets/``
    next to it), then among the shipped ones, so a user's own profile anywhere on disk can
    name ``@qnn_htp``.
    """
    out: list[Any] = []
    dirs = []
    if file is not None:
        dirs.append(Path(file).parent / OPSETS_DIR)
    shipped = default_devices_dir() / OPSETS_DIR
    if shipped not in dirs:
        dirs.append(shipped)
    for entry in ops:
        if not (isinstance(entry, str) and entry.startswith("@")):
            out.append(entry)
            continue
        path = next((d / f"{entry[1:]}.toml" for d in dirs
                     if (d / f"{entry[1:]}.toml").is_file()), None)
        if path is None:
            names = sorted({f"@{p.stem}" for d in dirs for p in d.glob("*.toml")})
            raise unknown_name("op set", entry, names, file=file, field=field)
        doc = read_toml(path, kind="op set")
        check_keys(doc, allowed={"schema_version", "source", "ops"},
                   required={"schema_version", "source", "ops"}, file=path)
        opset = expect_type(doc["ops"], list, "a list of op types", file=path, field="ops")
        out.extend(opset)
    return out


def _unit(raw: Any, i: int, file: Any) -> ComputeUnit:
    where = f"units[{i}]"
    expect_type(raw, dict, "a table", file=file, field=where)
    keys = {"name", "kind", "ops", "peak_gops", "efficiency", "dispatch_us", "active_power_w",
            "handoff_us"}
    check_keys(raw, allowed=keys | {"op_efficiency", "energy_pj_per_op", "sparse_2_4",
                                    "static_shapes", "onchip_mb", "fp32_as"},
               required=keys, file=file, prefix=where + ".")
    flags = {k: expect_type(raw.get(k, False), bool, "true or false", file=file,
                            field=f"{where}.{k}") for k in ("sparse_2_4", "static_shapes")}
    kind = expect_type(raw["kind"], str, "a string", file=file, field=where + ".kind")
    if kind not in UNIT_KINDS:
        raise unknown_name("unit kind", kind, UNIT_KINDS, file=file, field=where + ".kind")
    ops = expect_type(raw["ops"], list, "a list of ONNX op types (or [\"*\"])", file=file,
                      field=where + ".ops")
    ops = _expand_op_sets(ops, file=file, field=where + ".ops")
    if not ops or not all(isinstance(o, str) for o in ops):
        raise InputError(f"expected a non-empty list of op type strings, got {ops!r}",
                         file=file, field=where + ".ops")
    peaks = _figure_table(raw["peak_gops"], file=file, field=where + ".peak_gops",
                          keys=PRECISIONS, kind="precision", check=_gops)
    if not peaks:
        raise InputError("expected at least one precision", file=file, field=where + ".peak_gops")
    energy = _figure_table(raw.get("energy_pj_per_op", {}), file=file,
                           field=where + ".energy_pj_per_op", keys=tuple(peaks),
                           kind="precision of this unit", check=_pj_per_op)
    op_eff = _figure_table(raw.get("op_efficiency", {}), file=file,
                           field=where + ".op_efficiency", keys=OP_CLASSES, kind="op class",
                           check=_fraction)
    return ComputeUnit(
        name=expect_type(raw["name"], str, "a string", file=file, field=where + ".name"),
        kind=kind,
        ops=tuple(ops),
        peak_gops=peaks,
        efficiency=_figure(raw["efficiency"], file=file, field=where + ".efficiency",
                           check=_fraction),
        dispatch_us=_figure(raw["dispatch_us"], file=file, field=where + ".dispatch_us",
                            check=_us),
        active_power_w=_figure(raw["active_power_w"], file=file, field=where + ".active_power_w",
                               check=_watts),
        handoff_us=_figure(raw["handoff_us"], file=file, field=where + ".handoff_us",
                           check=_us),
        op_efficiency=op_eff,
        energy_pj_per_op_given=energy,
        onchip_mb=_figure(raw["onchip_mb"], file=file, field=where + ".onchip_mb",
                          check=_onchip_mb) if "onchip_mb" in raw else None,
        fp32_as=_fp32_as(raw, peaks, file=file, field=where + ".fp32_as"),
        **flags,
    )


def _fp32_as(raw: Mapping[str, Any], peaks: Mapping[str, Figure], *, file: Any,
             field: str) -> str | None:
    if "fp32_as" not in raw:
        return None
    value = expect_type(raw["fp32_as"], str, "a precision", file=file, field=field)
    if value not in peaks:
        raise unknown_name("precision of this unit", value, tuple(peaks), file=file,
                           field=field)
    return value


# --------------------------------------------------------------------------- upgrades


def _assumed(value: float, why: str) -> dict[str, Any]:
    return {"value": value, "basis": "assumed",
            "source": f"assumed: {why} (added by the schema 1 -> 2 upgrade); uncalibrated"}


# What a v1 profile lacks, filled with explicit assumptions (marked as such, so they show as
# uncalibrated): the lumped thermal model, DRAM energy and the cost of moving between units.
_V2_THERMAL = {
    "thermal_resistance_c_per_w": (8.0, "8 C/W, a phone-sized chassis order of magnitude"),
    "time_constant_s": (90.0, "90 s, minutes-scale heating of a phone SoC and chassis"),
    "throttle_start_c": (65.0, "65 C, where mobile governors typically start to cap clocks"),
    "throttle_end_c": (95.0, "95 C, near the junction limit"),
    "min_clock_fraction": (0.3, "0.3 of the top clock at the junction limit"),
}
_V2_HANDOFF_US = {"cpu": 0.0, "gpu": 50.0, "npu": 100.0}


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    # Missing or malformed sections are left as they are, for validation to report.
    out = {**data, "schema_version": 2}
    if isinstance(data.get("memory"), dict):
        out["memory"] = {"dram_pj_per_byte": _assumed(
            40.0, "40 pJ per byte of LPDDR traffic, a typical order of magnitude"),
            **data["memory"]}
    if isinstance(data.get("thermal"), dict):
        thermal = dict(data["thermal"])
        for key, (value, why) in _V2_THERMAL.items():
            thermal.setdefault(key, _assumed(value, why))
        sustained = thermal.get("sustained_fraction", {})
        if isinstance(sustained, dict) and isinstance(sustained.get("value"), int | float) \
                and thermal["min_clock_fraction"]["value"] > sustained["value"]:
            thermal["min_clock_fraction"] = _assumed(
                sustained["value"], "the published sustained fraction, so the curve reaches it")
        out["thermal"] = thermal
    if isinstance(data.get("units"), list):
        units = []
        for u in data["units"]:
            if isinstance(u, dict) and "handoff_us" not in u:
                cost = _V2_HANDOFF_US.get(u.get("kind", ""), 50.0)
                u = {**u, "handoff_us": _assumed(
                    cost, f"{cost:g} us to hand a tensor to or from a {u.get('kind')} unit")}
            units.append(u)
        out["units"] = units
    return out


UPGRADES[1] = _upgrade_v1
