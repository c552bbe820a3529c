"""Suite files (``suites/*.toml``) and their expansion into cases.

A suite lists workloads x quantization levels x pruning levels, and how to measure::

    schema_version = 1
    description = "What this suite is for"
    workloads = ["digits_cnn",
                 { name = "mine", onnx = "models/mine.onnx",
                   shapes = { input = [1, 3, 320, 320] } },   # inputs with dynamic dimensions
                 { name = "minilm", quant = ["fp32", "int4"] },   # own levels for one workload
                 { name = "edge", tflite = "models/edge.tflite" }]  # measured as given (as-is)
    quant = ["fp32", "int8-dynamic", "int8-static"]
    prune = [0, 50, "2:4", "channel-l2-50"]  # see harness.variants.parse_prune

    [measure]
    warmup = 10                     # untimed runs after the first inference
    iterations = 100                # timed samples (at least)
    min_time_s = 0.2                # ... and more until they span this long
    passes = 1                      # sweeps over the cases; later ones time only (see sweep)
    timeout_s = 300                 # per case, build and measurement each
    threads = 1                     # ONNX Runtime intra-op threads (0 = runtime default)
    sustained_s = 600               # emulated sustained run on the device (simulated seconds)
    period_ms = 33.3                # optional: one inference per period (a 30 fps camera)
    pace = false                    # host runs padded to the predicted device latency

Unknown keys are errors (with close matches), never silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.types import DEFAULT_BACKEND, Case, WorkloadRef
from harness.datafiles import data_dir, find_toml, names_in, read_toml
from harness.errors import InputError, check_keys, expect_type, unknown_name
from harness.variants import PruneSpec, QuantSpec, parse_prune, parse_quant

SCHEMA_VERSION = 1
AS_IS = "as-is"   # the quantization level of a model file measured as given (.tflite)


@dataclass(frozen=True)
class MeasureOptions:
    """How each case is measured."""

    warmup: int = 10
    iterations: int = 100
    timeout_s: float = 300.0
    threads: int = 1
    # The emulated sustained run: simulated device time, so it costs milliseconds. 10 minutes
    # is about the length of the published CPU throttling tests the thermal model is fitted to.
    sustained_s: float = 600.0
    period_ms: float | None = None
    pace: bool = False
    # Keep timing until the samples span this long (at least `iterations` samples either
    # way), as benchmark_model --min_secs: a 12 µs model gets enough samples. 0.2 s adds at
    # most ~14 s to the 68-case default suite.
    min_time_s: float = 0.2
    # Go over the cases this many times: the first pass measures everything, the later ones
    # (in the other order each time) time only and pool their samples into the row, so a slow
    # drift of the host's speed weighs on every level alike (sweep.py, docs/suites.md).
    passes: int = 1

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        # `not 0 < x < inf` also refuses NaN, which compares false with everything.
        if not 0 < self.timeout_s < math.inf:
            raise ValueError(f"timeout_s must be finite and > 0, got {self.timeout_s}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not 0 < self.sustained_s < math.inf:
            raise ValueError(f"sustained_s must be finite and > 0, got {self.sustained_s}")
        if self.period_ms is not None and not 0 < self.period_ms < math.inf:
            raise ValueError(f"period_ms must be finite and > 0, got {self.period_ms}")
        if not 0 <= self.min_time_s < math.inf:
            raise ValueError(f"min_time_s must be finite and >= 0, got {self.min_time_s}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    workloads: tuple[WorkloadRef, ...]
    quant: tuple[QuantSpec, ...]
    prune: tuple[PruneSpec, ...]
    measure: MeasureOptions
    path: Path | None = None
    # workload name -> its own (quant, prune) lists; None where it takes the suite's
    overrides: Mapping[str, tuple[tuple[QuantSpec, ...] | None, tuple[PruneSpec, ...] | None]] \
        = field(default_factory=dict)
    notes: tuple[str, ...] = ()     # warnings about the file (repeated levels, dropped)

    def levels_for(self, workload: str) -> tuple[tuple[QuantSpec, ...], tuple[PruneSpec, ...]]:
        """The quantization and pruning levels one workload is swept over."""
        quant, prune = self.overrides.get(workload, (None, None))
        return quant or self.quant, prune or self.prune


def default_suites_dir() -> Path:
    """Where suites live: $HARNESS_SUITES_DIR, the checkout's suites/, or packaged data."""
    return data_dir("suites", "HARNESS_SUITES_DIR")


def list_suites(suites_dir: Path | None = None) -> list[str]:
    return names_in(suites_dir or default_suites_dir())


def load_suite(name_or_path: str | Path, *, suites_dir: Path | None = None) -> Suite:
    """Load a suite by name (``default``) or path, validating every field."""
    path = find_toml(name_or_path, suites_dir or default_suites_dir(), kind="suite")
    return parse_suite(read_toml(path, kind="suite"), file=path)


def parse_suite(data: dict[str, Any], *, file: Path | None = None) -> Suite:
    """Validate a suite document and build a :class:`Suite`."""
    check_keys(data, allowed={"schema_version", "description", "workloads", "quant", "prune",
                              "measure"},
               required={"schema_version", "workloads", "quant", "prune"}, file=file)
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise InputError(f"expected schema version {SCHEMA_VERSION}, got {version!r}",
                         file=file, field="schema_version")
    base = file.parent if file else Path.cwd()
    parsed = [_workload(w, i, file, base) for i, w in enumerate(
        _nonempty_list(data, "workloads", file))]
    workloads = tuple(ref for ref, _ in parsed)
    overrides = {ref.name: levels for ref, levels in parsed if levels != (None, None)}
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise InputError(f"workload names must be unique, got {names}", file=file,
                         field="workloads")
    notes: list[str] = []
    quant = _unique(tuple(_parsed(parse_quant, q, file, f"quant[{i}]")
                          for i, q in enumerate(_nonempty_list(data, "quant", file))),
                    "quant", notes)
    prune = _unique(tuple(_parsed(parse_prune, p, file, f"prune[{i}]")
                          for i, p in enumerate(_nonempty_list(data, "prune", file))),
                    "prune", notes)
    overrides = {name: (_unique(q, f"{name}.quant", notes) if q else q,
                        _unique(p, f"{name}.prune", notes) if p else p)
                 for name, (q, p) in overrides.items()}
    measure = MeasureOptions()
    if "measure" in data:
        raw = expect_type(data["measure"], dict, "a table", file=file, field="measure")
        check_keys(raw, allowed={"warmup", "iterations", "timeout_s", "threads", "sustained_s",
                                 "period_ms", "pace", "min_time_s", "passes"},
                   file=file,
                   prefix="measure.")
        for key in ("warmup", "iterations", "threads", "passes"):
            if key in raw:
                expect_type(raw[key], int, "an integer", file=file, field=f"measure.{key}")
        for key in ("timeout_s", "sustained_s", "period_ms", "min_time_s"):
            if key in raw:
                expect_type(raw[key], (int, float), "a number", file=file,
                            field=f"measure.{key}")
        if "pace" in raw:
            expect_type(raw["pace"], bool, "true or false", file=file, field="measure.pace")
        try:
            measure = replace(measure, **raw)
        except ValueError as exc:
            raise InputError(str(exc), file=file, field="measure") from exc
    return Suite(
        name=file.stem if file else "inline",
        description=str(data.get("description", "")),
        workloads=workloads, quant=quant, prune=prune, measure=measure, path=file,
        overrides=overrides, notes=tuple(f"{file or 'suite'}: {n}" for n in notes),
    )


def _unique(levels: tuple[Any, ...], field: str, notes: list[str]) -> tuple[Any, ...]:
    """``levels`` without repeats (``[0, "0", 0.0]`` is one level): each would run the same
    cases again. Each repeat is noted."""
    seen: dict[str, Any] = {}
    for lvl in levels:
        if lvl.name in seen:
            notes.append(f"{field}: level {lvl.name!r} is listed more than once; it runs once")
        seen.setdefault(lvl.name, lvl)
    return tuple(seen.values())


def expand(
    suite: Suite,
    *,
    devices: Sequence[str],
    workloads: Sequence[str] | None = None,
    quant: Sequence[str] | None = None,
    prune: Sequence[str] | None = None,
    backends: Mapping[str, bool] | None = None,
) -> list[Case]:
    """The sweep product, narrowed by the --workload / --quant / --prune filters.

    ``backends`` maps each backend to whether it needs a device profile (default: the
    emulated backend alone); a backend that does not (``host``) gets one case per variant,
    with no device. A filter value that matches nothing in the suite is an error that lists
    what the suite has, so a typo never silently runs an empty sweep.
    """
    backends = backends if backends is not None else {DEFAULT_BACKEND: True}
    ws = _narrow("workload", suite.workloads, workloads, key=lambda w: w.name)
    want_q = [parse_quant(q).name for q in quant] if quant else None
    want_p = [parse_prune(p).name for p in prune] if prune else None
    # A filter value must name a level some selected workload is swept over.
    for kind, wanted, pick in (("quantization level", want_q, 0), ("pruning level", want_p, 1)):
        offered = {lvl.name for w in ws for lvl in suite.levels_for(w.name)[pick]}
        for name in wanted or ():
            if name not in offered:
                raise unknown_name(f"{kind} (not in this suite)", name, sorted(offered))
    cases = []
    for backend, needs_device in backends.items():
        for d in (devices if needs_device else [None]):
            for w in ws:
                qs, ps = suite.levels_for(w.name)
                cases += [Case(workload=w, quant=q, prune=p, device=d, backend=backend)
                          for p in ps if want_p is None or p.name in want_p
                          for q in qs if want_q is None or q.name in want_q]
    return cases


# --------------------------------------------------------------------------- helpers


def _narrow(kind: str, items: tuple[Any, ...], wanted: Sequence[str] | None, *,
            key: Any) -> list[Any]:
    if not wanted:
        return list(items)
    names = [key(i) for i in items]
    for w in wanted:
        if w not in names:
            raise unknown_name(f"{kind} (not in this suite)", w, names)
    return [i for i in items if key(i) in wanted]


def _nonempty_list(data: dict[str, Any], key: str, file: Any,
                   where: str | None = None) -> list[Any]:
    value = expect_type(data[key], list, "a list", file=file, field=where or key)
    if not value:
        raise InputError("expected at least one entry", file=file, field=where or key)
    return value


def _parsed(fn: Any, value: Any, file: Any, field: str) -> Any:
    try:
        return fn(value)
    except InputError as exc:
        raise InputError(str(exc), file=file, field=field) from exc


def _workload(raw: Any, i: int, file: Any, base: Path
              ) -> tuple[WorkloadRef, tuple[tuple[QuantSpec, ...] | None,
                                           tuple[PruneSpec, ...] | None]]:
    from harness.workloads import registered

    field = f"workloads[{i}]"
    if isinstance(raw, str):
        if raw not in registered():
            raise unknown_name("workload", raw, registered(), file=file, field=field)
        return WorkloadRef(name=raw), (None, None)
    expect_type(raw, dict, "a workload name or a table {name, onnx or tflite, quant, prune}",
                file=file, field=field)
    check_keys(raw, allowed={"name", "onnx", "tflite", "quant", "prune", "shapes"},
               required={"name"}, file=file, prefix=field + ".")
    name = expect_type(raw["name"], str, "a string", file=file, field=field + ".name")
    if not name or "/" in name:
        raise InputError(f"expected a non-empty name without '/', got {name!r}", file=file,
                         field=field + ".name")
    quant = tuple(_parsed(parse_quant, q, file, f"{field}.quant[{j}]")
                  for j, q in enumerate(_nonempty_list(raw, "quant", file, field + ".quant"))
                  ) if "quant" in raw else None
    prune = tuple(_parsed(parse_prune, p, file, f"{field}.prune[{j}]")
                  for j, p in enumerate(_nonempty_list(raw, "prune", file, field + ".prune"))
                  ) if "prune" in raw else None
    if "onnx" in raw and "tflite" in raw:
        raise InputError("a workload is one model file: give onnx = ... or tflite = ..., not "
                         "both (two entries with two names compare them)", file=file,
                         field=field + ".tflite")
    if "tflite" in raw:
        return _tflite_workload(raw, name, field, file, base, quant, prune)
    if "onnx" not in raw:
        if name not in registered():
            raise unknown_name("workload", name, registered(), file=file, field=field + ".name")
        if "shapes" in raw:
            raise InputError("shapes apply to a workload given as an ONNX file (onnx = ...); "
                             f"built-in workload {name!r} times its own inputs", file=file,
                             field=field + ".shapes")
        return WorkloadRef(name=name), (quant, prune)
    onnx_path = Path(expect_type(raw["onnx"], str, "a path", file=file, field=field + ".onnx"))
    if not onnx_path.is_absolute():
        onnx_path = (base / onnx_path).resolve()
    if not onnx_path.is_file():
        raise InputError(f"no such ONNX file: {onnx_path}", file=file, field=field + ".onnx")
    shapes = _shapes(raw.get("shapes", {}), file=file, field=field + ".shapes")
    return WorkloadRef(name=name, onnx=onnx_path, shapes=shapes), (quant, prune)


def _tflite_workload(raw: dict[str, Any], name: str, field: str, file: Any, base: Path,
                     quant: tuple[QuantSpec, ...] | None, prune: tuple[PruneSpec, ...] | None
                     ) -> tuple[WorkloadRef, tuple[tuple[QuantSpec, ...] | None,
                                                  tuple[PruneSpec, ...] | None]]:
    """A ``{ name, tflite = "path" }`` entry: the file, checked to be a TFLite FlatBuffer.

    Its one level is ``as-is`` (the harness neither quantizes nor prunes a .tflite file), so
    without its own ``quant`` it takes that rather than the suite's ONNX levels; levels it is
    given anyway end ``unsupported`` with the reason.
    """
    from harness.artifacts.tflite import has_identifier

    if "shapes" in raw:
        raise InputError("shapes apply to a workload given as an ONNX file; a .tflite model "
                         "is timed at the input shapes stored in it", file=file,
                         field=field + ".shapes")
    where = field + ".tflite"
    path = Path(expect_type(raw["tflite"], str, "a path", file=file, field=where))
    if not path.is_absolute():
        path = (base / path).resolve()
    if not path.is_file():
        raise InputError(f"no such .tflite file: {path}", file=file, field=where)
    if not has_identifier(path):
        raise InputError(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier at "
                         "bytes 4..8)", file=file, field=where)
    if path.suffix != ".tflite":
        # the cache and the runners tell formats apart by suffix
        raise InputError(f"{path.name}: a TFLite model file must end in .tflite", file=file,
                         field=where)
    return (WorkloadRef(name=name, tflite=path),
            (quant or (QuantSpec(AS_IS),), prune))


def _shapes(raw: Any, *, file: Any, field: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``{ input = [1, 3, 320, 320], ... }`` -> sorted (name, dims) pairs, validated."""
    expect_type(raw, dict, "a table { input_name = [d1, d2, ...] }", file=file, field=field)
    out = []
    for name, dims in raw.items():
        expect_type(dims, list, "a list of dimensions", file=file, field=f"{field}.{name}")
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                               for d in dims):
            raise InputError(f"expected a non-empty list of integers >= 1, got {dims!r}",
                             file=file, field=f"{field}.{name}")
        out.append((name, tuple(dims)))
    return tuple(sorted(out))
