"""Published on-device measurements and device facts, as calibration targets.

Reads ``published_latency.csv`` (Qualcomm AI Hub model cards: one row per model, device, runtime,
precision, compute unit, metric and release) and ``device_specs.csv`` from the calibration
directory: ``$HARNESS_CALIBRATION_DIR``, else the copy packaged with the project in
``harness/calibration/data/`` (it ships in the wheel; ``data/SOURCES.md`` says where the rows come
from).

:func:`calibration_targets` keeps the trustworthy rows (NPU rows of the TFLITE and QNN_DLC
runtimes by default: the calibration README, ``data/README.md``, warns that quantized ONNX rows
are often ~100x off) and groups them by model, device profile, runtime and precision: several
phones can stand for one profile (Galaxy S25 and the 8 Elite QRD) and every release of the model
cards repeats the measurement, so each :class:`Target` keeps the median with n, min and max to
show the noise. A group whose releases disagree far beyond that noise (:data:`RELEASE_SPLIT`) is
fitted on its newest release only: the first model cards (v0.3.0, February 2024) have a few
times 2-11x slower than every later release of the same model on the same phone (vit on the
S23 Ultra: 135.8 ms against 12.5 ms), the toolchain of the day rather than the phone, and the
median of such a pair is neither.
"""

from __future__ import annotations

import csv
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from harness.errors import InputError, unknown_name

ENV_DIR = "HARNESS_CALIBRATION_DIR"
# The published figures ship inside the package (copied, sources per row: data/SOURCES.md).
DEFAULT_DIR = Path(__file__).resolve().parent / "data"
LATENCY_FILE = "published_latency.csv"
SPECS_FILE = "device_specs.csv"
LATENCY_COLUMNS = ("model", "device", "soc", "runtime", "precision", "compute_unit", "metric",
                   "value", "unit", "source")
SPECS_COLUMNS = ("device", "soc", "spec", "value", "unit", "source")
COMPUTE_UNITS = ("CPU", "GPU", "NPU")

# AI Hub's reference phones -> our profiles (calibration README, "How to read the AI Hub rows").
DEVICE_PROFILES: Mapping[str, str] = MappingProxyType({
    "Samsung Galaxy S24": "snapdragon8gen3",
    "Samsung Galaxy S23": "snapdragon8gen2",
    "Samsung Galaxy S23 Ultra": "snapdragon8gen2",
    "Samsung Galaxy S25": "snapdragon8elite",          # Snapdragon 8 Elite for Galaxy
    "Snapdragon 8 Elite QRD": "snapdragon8elite",
    "Snapdragon 7 Gen 4 QRD": "snapdragon7gen4",
})

# Fallback by the soc column, for devices the table above does not name. Keys are normalized
# by _soc_key ("for Galaxy" variants map to the plain SoC: same NPU, somewhat higher clocks).
SOC_PROFILES: Mapping[str, str] = MappingProxyType({
    "snapdragon 8 gen 3": "snapdragon8gen3",
    "snapdragon 8 gen 2": "snapdragon8gen2",
    "snapdragon 8 elite": "snapdragon8elite",
    "snapdragon 7 gen 4": "snapdragon7gen4",
    "snapdragon 888": "snapdragon888",
    "snapdragon 855": "snapdragon855",
    "dimensity 9300": "dimensity9300",
    "exynos 2400": "exynos2400",
    "google tensor g3": "tensorg3",
    "apple a17 pro": "applea17pro",
    "broadcom bcm2712": "raspberrypi5",
    "nvidia orin (orin nano 8gb)": "jetsonorinnano",
})


@dataclass(frozen=True)
class PrecisionSpec:
    """What an AI Hub precision label means: weight and activation bits, and the arithmetic
    (one of harness.profiles.PRECISIONS) the emulator should run it as on an NPU."""

    label: str
    weight_bits: int
    activation_bits: int | None      # None: not stated by the source
    emulate_as: str
    note: str = ""

    def __post_init__(self) -> None:
        from harness.profiles import PRECISIONS

        if self.emulate_as not in PRECISIONS:
            raise InputError(f"expected one of {', '.join(PRECISIONS)}, got {self.emulate_as!r}",
                             field=f"{self.label}.emulate_as")
        if self.weight_bits not in (4, 8, 16, 32):
            raise InputError(f"expected 4, 8, 16 or 32, got {self.weight_bits!r}",
                             field=f"{self.label}.weight_bits")


_W8A16_NOTE = ("16-bit activations: the published NPU times sit at the fp16 ones (S24, QNN_DLC: "
               "mobilenet_v2 0.57 vs 0.55-0.60 ms, yolov8_det 2.2 vs 2.5-2.7 ms), far from "
               "w8a8; emulate as fp16 with 8-bit weight bytes")
PRECISIONS: Mapping[str, PrecisionSpec] = MappingProxyType({p.label: p for p in (
    PrecisionSpec("float", 16, 16, "fp16",
                  "float models run in fp16 on the NPU (data/README.md; AI Hub compiles with "
                  "--quantize_full_type float16); fp32 on the CPU: see emulated_precision"),
    PrecisionSpec("w8a8", 8, 8, "int8", "static int8 weights and activations"),
    PrecisionSpec("w8a8_mixed_int16", 8, 8, "int8",
                  "w8a8 with a share of layers (AI Hub: 10%) kept at int16"),
    PrecisionSpec("w8a8_mixed_fp16", 8, 8, "int8",
                  "w8a8 with a share of layers kept at fp16"),
    PrecisionSpec("w8a16", 8, 16, "fp16", _W8A16_NOTE),
    PrecisionSpec("w8a16_mixed_int16", 8, 16, "fp16", _W8A16_NOTE),
    PrecisionSpec("w8a16_mixed_fp16", 8, 16, "fp16", _W8A16_NOTE),
    PrecisionSpec("w4a16", 4, 16, "fp16",
                  "4-bit weights, 16-bit activations: fp16 arithmetic, 4-bit weight bytes"),
    PrecisionSpec("w4", 4, None, "int4", "4-bit weights (LLM rows; activations not stated)"),
)})


def precision_spec(label: str) -> PrecisionSpec:
    """The meaning of an AI Hub precision label; InputError (with close matches) if unknown."""
    try:
        return PRECISIONS[label]
    except KeyError:
        raise unknown_name("precision", label, PRECISIONS, field="precision") from None


def emulated_precision(label: str, compute_unit: str = "NPU") -> str:
    """The emulator precision of a label on a compute unit: ``float`` is fp32 on a CPU."""
    spec = precision_spec(label)
    if compute_unit.upper() == "CPU" and spec.emulate_as == "fp16" and label == "float":
        return "fp32"
    return spec.emulate_as


def _soc_key(soc: str) -> str:
    key = soc.lower().replace("®", "").replace("(soc)", "")
    key = re.sub(r"\s+for galaxy\b", "", key)
    return re.sub(r"\s+", " ", key).strip()


def profile_for(device: str, soc: str = "") -> str | None:
    """Our profile name for a CSV device (by name, else by its SoC), None if there is none."""
    if device in DEVICE_PROFILES:
        return DEVICE_PROFILES[device]
    return SOC_PROFILES.get(_soc_key(soc)) if soc else None


@dataclass(frozen=True)
class PublishedRow:
    """One row of published_latency.csv."""

    model: str
    device: str
    soc: str
    runtime: str
    precision: str
    compute_unit: str
    metric: str
    value: float
    unit: str
    source: str

    def __post_init__(self) -> None:
        for name in ("model", "device", "runtime", "precision", "metric", "unit", "source"):
            if not getattr(self, name):
                raise InputError("must not be empty", field=name)
        if self.compute_unit not in COMPUTE_UNITS:
            raise unknown_name("compute unit", self.compute_unit, COMPUTE_UNITS,
                               field="compute_unit")
        if not (math.isfinite(self.value) and self.value >= 0):
            raise InputError(f"expected a finite non-negative number, got {self.value!r}",
                             field="value")

    @property
    def release(self) -> str:
        """The model-card release the row comes from ('v0.46.0'), '' if the source has none."""
        m = re.search(r"\((v[0-9][0-9.]*)", self.source)
        return m.group(1) if m else ""

    @property
    def profile(self) -> str | None:
        return profile_for(self.device, self.soc)


@dataclass(frozen=True)
class DeviceSpec:
    """One row of device_specs.csv (``value`` stays text: some specs are descriptions)."""

    device: str
    soc: str
    spec: str
    value: str
    unit: str
    source: str

    @property
    def number(self) -> float | None:
        """The value as a number, None for text values."""
        try:
            return float(self.value)
        except ValueError:
            return None

    @property
    def profile(self) -> str | None:
        return SOC_PROFILES.get(_soc_key(self.soc))


def calibration_dir() -> Path:
    """$HARNESS_CALIBRATION_DIR, else the packaged copy in ``harness/calibration/data/``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return DEFAULT_DIR


def _missing_hint(name: str) -> str:
    if os.environ.get(ENV_DIR):
        return (f" ${ENV_DIR} is set to {calibration_dir()}, which should hold {name}; point it "
                f"at a directory that does, or unset it to use the packaged "
                f"harness/calibration/data/.")
    return (f" The packaged calibration data (harness/calibration/data/, expected at "
            f"{DEFAULT_DIR}) lacks {name}: reinstall the package, or set ${ENV_DIR} to a "
            f"directory holding {name}.")


def _csv_path(name: str, path: Path | None) -> Path:
    found = Path(path) if path is not None else calibration_dir() / name
    if not found.is_file():
        hint = "" if path is not None else _missing_hint(name)
        raise InputError(f"calibration file not found.{hint}", file=found)
    return found


def _read_csv(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in columns:
            if col not in header:
                raise InputError(f"missing column (header: {', '.join(header) or 'empty'})",
                                 file=path, field=col)
        return [(reader.line_num, row) for row in reader]


def load_published_latency(path: Path | None = None) -> list[PublishedRow]:
    """Every row of published_latency.csv (default: in :func:`calibration_dir`)."""
    path = _csv_path(LATENCY_FILE, path)
    rows = []
    for line, raw in _read_csv(path, LATENCY_COLUMNS):
        where = f"{path}:{line}"
        try:
            value = float(raw["value"])
        except (TypeError, ValueError):
            raise InputError(f"expected a number, got {raw['value']!r}", file=where,
                             field="value") from None
        fields = {c: (raw[c] or "").strip() for c in LATENCY_COLUMNS if c != "value"}
        try:
            rows.append(PublishedRow(value=value, **fields))
        except InputError as exc:
            raise InputError(str(exc), file=where) from None
    return rows


def load_device_specs(path: Path | None = None) -> list[DeviceSpec]:
    """Every row of device_specs.csv (default: in :func:`calibration_dir`)."""
    path = _csv_path(SPECS_FILE, path)
    return [DeviceSpec(**{c: (raw[c] or "").strip() for c in SPECS_COLUMNS})
            for _, raw in _read_csv(path, SPECS_COLUMNS)]


# max/min of one group's values beyond which its releases are taken to disagree: data/README.md
# puts release-to-release drift at a median of 8% and at most 1.31x over the whole file, so 2x
# is no longer noise.
RELEASE_SPLIT = 2.0


def _release_key(release: str) -> tuple[int, ...]:
    """'v0.37.0' -> (0, 37, 0) for ordering releases; () when the source names none."""
    return tuple(int(p) for p in release.lstrip("v").split(".") if p.isdigit())


@dataclass(frozen=True)
class Target:
    """One published latency to fit: the median over the rows of one model, profile, runtime
    and precision (several releases, and every phone that stands for the profile).

    ``value`` is what a fit aims at: the median, or, when the group's spread exceeds
    :data:`RELEASE_SPLIT`, the median of its newest release's rows (``from_release`` says which).
    """

    model: str
    profile: str
    runtime: str
    precision: str                   # the CSV label (float, w8a8, w8a16, ...)
    emulated_precision: str          # the emulator's arithmetic for it (fp16, int8, ...)
    compute_unit: str
    metric: str
    unit: str
    median: float
    n: int
    min_value: float
    max_value: float
    values: tuple[float, ...]
    devices: tuple[str, ...]
    releases: tuple[str, ...]
    value: float = math.nan          # nan: the median
    from_release: str = ""           # the release ``value`` comes from; "" = all of them

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            object.__setattr__(self, "value", self.median)
        if self.n != len(self.values) or self.n < 1:
            raise InputError(f"n={self.n} does not match {len(self.values)} values", field="n")

    @property
    def spread(self) -> float:
        """max / min of the grouped values (1.0 for one row; data/README.md: 1.31 is noise)."""
        return self.max_value / self.min_value if self.min_value > 0 else math.inf


def calibration_targets(*, runtimes: Iterable[str] = ("TFLITE", "QNN_DLC"),
                        compute_unit: str = "NPU", metric: str = "inference_ms",
                        rows: Iterable[PublishedRow] | None = None,
                        max_spread: float | None = None) -> list[Target]:
    """One :class:`Target` per (model, profile, runtime, precision) with the median value
    (the newest release's median when releases disagree beyond :data:`RELEASE_SPLIT`).

    ``rows`` defaults to :func:`load_published_latency`. Rows whose device has no profile or
    whose precision label is unknown are left out (:func:`unmapped` lists them). ``max_spread``
    drops groups whose max/min exceeds it (an anomalous release among normal ones).
    """
    runtimes = tuple(runtimes)
    rows = load_published_latency() if rows is None else rows
    groups: dict[tuple[str, str, str, str], list[PublishedRow]] = defaultdict(list)
    for row in rows:
        profile = row.profile
        if (row.runtime not in runtimes or row.compute_unit != compute_unit
                or row.metric != metric or profile is None or row.precision not in PRECISIONS):
            continue
        groups[(row.model, profile, row.runtime, row.precision)].append(row)
    targets = []
    for (model, profile, runtime, precision), members in sorted(groups.items()):
        values = tuple(sorted(r.value for r in members))
        target = Target(
            model=model, profile=profile, runtime=runtime, precision=precision,
            emulated_precision=emulated_precision(precision, compute_unit),
            compute_unit=compute_unit, metric=metric, unit=members[0].unit,
            median=statistics.median(values), n=len(values), min_value=values[0],
            max_value=values[-1], values=values,
            devices=tuple(sorted({r.device for r in members})),
            releases=tuple(sorted({r.release for r in members}, key=_release_key)))
        if target.spread > RELEASE_SPLIT and len(target.releases) > 1:
            newest = target.releases[-1]
            target = replace(target, from_release=newest, value=statistics.median(
                r.value for r in members if r.release == newest))
        if max_spread is None or target.spread <= max_spread:
            targets.append(target)
    return targets


def unmapped(rows: Iterable[PublishedRow]) -> dict[str, list[str]]:
    """Devices without a profile and precision labels without a meaning, to report them."""
    rows = list(rows)
    devices = sorted({r.device for r in rows if r.profile is None})
    precisions = sorted({r.precision for r in rows if r.precision not in PRECISIONS})
    return {"devices": devices, "precisions": precisions}
