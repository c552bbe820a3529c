"""The result of one case: a typed, frozen :class:`Measurement` and its row format.

Every backend returns a Measurement and every reader (progress lines, tables, compare,
recommend, export, plots) reads one; only :meth:`Measurement.to_row` and
:meth:`Measurement.from_row` know the JSON layout of a row in ``cases.jsonl``.

Row layout, schema version 2 (see docs/results-format.md)::

    case_id, workload, quant, precision, prune, prune_method, device, backend,
    status, reason, started_at, duration_s,
    artifact    {key, sha256, format, path, runtime, size_bytes, params, zero_params, sparsity, ...}
    measured    {where, runtime, runtime_version, providers, threads, warmup_runs, pace,
                 phases: [{name, unit, samples, tokens_per_sample, summary}],
                 cold_start: {load_ns, first_inference_ns}, peak_memory_mb,
                 memory_before_load_mb, extra, telemetry}
    quality     {metric, value, n_examples, higher_is_better, extra}
    fidelity    {cosine, top1_agreement, sqnr_db, identical, reference_sha256} | {error}
    prediction  {latency_ms, sustained_latency_ms, peak_memory_mb, app_cap_mb, fits,
                 energy_mj, avg_power_w, ...} | {error}
    trace       {time_s, latency_ms, temp_c, clock_fraction, power_w, ...}
    provenance  {emulator_version, profile_sha256, overlay_sha256, artifact_key, host,
                 backend_version}

Version 1 rows (before backends existed) are upgraded by :func:`upgrade_row_v1`: their
measured block was called ``host``, the prediction ``device_prediction`` (memory as
``footprint_mb``), the trace ``device_trace``; they carry no provenance.

Raw samples are kept with their unit; statistics are computed when reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

# device_lost: the phone (or the Ray node holding it) went away during the case, or before it
# could start and no other phone of its SoC was left (the reason starts "not run:")
STATUSES = ("ok", "oom", "unsupported", "timeout", "error", "device_lost")
ROW_SCHEMA_VERSION = 2
# The phase of a single-shot model: one forward pass per sample. A generative model adds
# "prefill" (one sample per prompt) and "decode" (one sample per token).
FORWARD = "forward"
SAMPLE_UNITS = ("ns",)


def _frozen_map(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(m or {})


@dataclass(frozen=True)
class Phase:
    """Raw latency samples of one phase of inference, with their unit."""

    name: str
    samples: tuple[int | float, ...]
    unit: str = "ns"
    tokens_per_sample: int | None = None  # generative phases: tokens one sample covers
    # back-to-back calls one sample timed (a model of a few µs is timed in loops, as pyperf
    # does); readers divide: :attr:`samples_ns` is per call
    calls_per_sample: int = 1
    # what a runner printed when it gives no raw samples (adb: onnxruntime_perf_test prints
    # only percentiles): {"count", "mean_ns", "min_ns", "max_ns", "p50_ns", "p90_ns",
    # "p95_ns", "p99_ns", "p999_ns"}, any subset; samples then stay empty (never invented)
    summary: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a phase needs a name")
        if self.unit not in SAMPLE_UNITS:
            raise ValueError(f"phase {self.name!r}: unit must be one of {SAMPLE_UNITS}, "
                             f"got {self.unit!r}")
        object.__setattr__(self, "samples", tuple(self.samples))
        if any(not isinstance(s, int | float) or isinstance(s, bool) or s < 0
               for s in self.samples):
            raise ValueError(f"phase {self.name!r}: samples must be non-negative numbers")
        if self.calls_per_sample < 1:
            raise ValueError(f"phase {self.name!r}: calls_per_sample must be >= 1")

    @property
    def samples_ns(self) -> tuple[float, ...]:
        """Per call, in ns (the raw samples divided by the calls each one timed)."""
        k = self.calls_per_sample
        return tuple(float(s) / k for s in self.samples)

    def to_row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit,
                               "samples": list(self.samples)}
        if self.tokens_per_sample is not None:
            out["tokens_per_sample"] = self.tokens_per_sample
        if self.calls_per_sample != 1:
            out["calls_per_sample"] = self.calls_per_sample
        if self.summary is not None:
            out["summary"] = dict(self.summary)
        return out

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Phase:
        return cls(name=d["name"], samples=tuple(d.get("samples") or ()),
                   unit=d.get("unit", "ns"), tokens_per_sample=d.get("tokens_per_sample"),
                   calls_per_sample=int(d.get("calls_per_sample", 1)),
                   summary=d.get("summary"))


@dataclass(frozen=True)
class ColdStart:
    """Loading the artifact (session creation) and the first inference, in ns."""

    load_ns: int
    first_inference_ns: int

    @property
    def total_ms(self) -> float:
        return (self.load_ns + self.first_inference_ns) / 1e6


@dataclass(frozen=True)
class DeviceTelemetry:
    """What a phone's own sensors said during a case (adb: sampled on the phone, see
    docs/adb.md); the per-sample series is the row's ``trace``. None: not readable."""

    samples: int
    period_s: float
    duration_s: float | None = None         # first to last sample
    start_temp_c: float | None = None       # the SoC (hottest SoC zone)
    end_temp_c: float | None = None
    max_temp_c: float | None = None
    start_clock_fraction: float | None = None   # fastest CPU policy / its cpuinfo_max_freq
    end_clock_fraction: float | None = None
    min_clock_fraction: float | None = None
    avg_power_w: float | None = None        # battery |I|·V, time-weighted over the case
    energy_mj: float | None = None          # avg_power_w * mean inference time (mJ)
    charging: bool | None = None            # on USB/AC power or charging: None if unknown
    energy_meaningful: bool = False         # only off the charger
    skipped_lines: int = 0                  # stream lines that were not a record
    note: str = ""                          # what is missing and why

    def to_row(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> DeviceTelemetry:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**{"samples": 0, "period_s": 0.0, **known})


@dataclass(frozen=True)
class Measured:
    """What a backend measured by running the artifact (on the host or on a phone)."""

    where: str                                   # "host" or a device serial / name
    phases: tuple[Phase, ...] = ()
    cold_start: ColdStart | None = None
    peak_memory_mb: float | None = None          # peak resident set of the measuring process
    memory_before_load_mb: float | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    providers: tuple[str, ...] = ()
    threads: int | None = None
    warmup_runs: int | None = None
    pace: Mapping[str, Any] | None = None        # {"target_ms", "overruns"} when paced
    # the case whose run these figures come from, when this row reuses another case's run
    # (host work depends on the artifact, not the device: it is measured once per artifact)
    origin: str | None = None
    memory_cap_mb: float | None = None           # the memory cap the worker ran under
    # facts only one backend has (adb: the SoC, thermal zones before and after the run,
    # the runner, notes such as "quality not measured on the device"); see docs/adb.md
    extra: Mapping[str, Any] | None = None
    # the phone's temperature, clocks and power during the case (adb)
    telemetry: DeviceTelemetry | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))
        object.__setattr__(self, "providers", tuple(self.providers))
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")

    def phase(self, name: str = FORWARD) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def samples_ns(self, name: str = FORWARD) -> tuple[float, ...]:
        p = self.phase(name)
        return p.samples_ns if p else ()

    def to_row(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "runtime": self.runtime, "runtime_version": self.runtime_version,
            "providers": list(self.providers), "threads": self.threads,
            "warmup_runs": self.warmup_runs,
            "phases": [p.to_row() for p in self.phases],
            "cold_start": None if self.cold_start is None else {
                "load_ns": self.cold_start.load_ns,
                "first_inference_ns": self.cold_start.first_inference_ns},
            "peak_memory_mb": self.peak_memory_mb,
            "memory_before_load_mb": self.memory_before_load_mb,
            "pace": None if self.pace is None else dict(self.pace),
            "origin": self.origin,
            "memory_cap_mb": self.memory_cap_mb,
            **({"extra": dict(self.extra)} if self.extra is not None else {}),
            **({"telemetry": self.telemetry.to_row()} if self.telemetry is not None
               else {}),
        }

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Measured:
        cold = d.get("cold_start")
        return cls(
            where=d.get("where", "host"),
            phases=tuple(Phase.from_row(p) for p in d.get("phases") or ()),
            cold_start=ColdStart(int(cold["load_ns"]), int(cold["first_inference_ns"]))
            if cold else None,
            peak_memory_mb=d.get("peak_memory_mb"),
            memory_before_load_mb=d.get("memory_before_load_mb"),
            runtime=d.get("runtime"), runtime_version=d.get("runtime_version"),
            providers=tuple(d.get("providers") or ()), threads=d.get("threads"),
            warmup_runs=d.get("warmup_runs"), pace=d.get("pace"), origin=d.get("origin"),
            memory_cap_mb=d.get("memory_cap_mb"), extra=d.get("extra"),
            telemetry=DeviceTelemetry.from_row(d["telemetry"])
            if isinstance(d.get("telemetry"), Mapping) else None)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class Prediction:
    """The emulator's figures for the artifact on the device profile (or why there are none).

    The named fields are what readers use; ``detail`` keeps the rest of the emulator's summary
    (work, bytes, per-unit times, notes, fixed dimensions...) as it wrote it.
    """

    latency_ms: float | None = None
    sustained_latency_ms: float | None = None
    peak_memory_mb: float | None = None
    app_cap_mb: float | None = None
    fits: bool | None = None
    energy_mj: float | None = None
    avg_power_w: float | None = None
    battery_wh: float | None = None
    breakdown_file: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    _NAMED = ("latency_ms", "sustained_latency_ms", "peak_memory_mb", "app_cap_mb", "fits",
              "energy_mj", "avg_power_w", "battery_wh", "breakdown_file")

    def to_row(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        out = dict(self.detail)
        out.update({k: getattr(self, k) for k in self._NAMED if getattr(self, k) is not None})
        return out

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Prediction:
        if "error" in d:
            return cls(error=str(d["error"]))
        fits = d.get("fits")
        return cls(
            latency_ms=_num(d.get("latency_ms")),
            sustained_latency_ms=_num(d.get("sustained_latency_ms")),
            peak_memory_mb=_num(d.get("peak_memory_mb")),
            app_cap_mb=_num(d.get("app_cap_mb")),
            fits=fits if isinstance(fits, bool) else None,
            energy_mj=_num(d.get("energy_mj")), avg_power_w=_num(d.get("avg_power_w")),
            battery_wh=_num(d.get("battery_wh")), breakdown_file=d.get("breakdown_file"),
            detail={k: v for k, v in d.items() if k not in cls._NAMED})


@dataclass(frozen=True)
class Quality:
    """A quality measurement on the host (the same artifact, the workload's eval split)."""

    metric: str
    value: float
    n_examples: int
    higher_is_better: bool = True
    extra: Mapping[str, float] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "n_examples": self.n_examples,
                "higher_is_better": self.higher_is_better, "extra": dict(self.extra)}

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Quality:
        return cls(metric=d["metric"], value=d["value"], n_examples=d.get("n_examples", 0),
                   higher_is_better=d.get("higher_is_better", True),
                   extra=_frozen_map(d.get("extra")))


@dataclass(frozen=True)
class Fidelity:
    """Outputs against the fp32 dense artifact's, on the evaluation inputs."""

    cosine: float | None = None
    top1_agreement: float | None = None
    sqnr_db: float | None = None        # None also when identical (JSON has no infinity)
    identical: bool = False
    reference_sha256: str | None = None
    error: str | None = None

    @property
    def sqnr_db_or_inf(self) -> float | None:
        return math.inf if self.identical else self.sqnr_db

    def to_row(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {"cosine": self.cosine, "top1_agreement": self.top1_agreement,
                "sqnr_db": self.sqnr_db, "identical": self.identical,
                "reference_sha256": self.reference_sha256}

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Fidelity:
        if "error" in d:
            return cls(error=str(d["error"]))
        return cls(cosine=_num(d.get("cosine")), top1_agreement=_num(d.get("top1_agreement")),
                   sqnr_db=_num(d.get("sqnr_db")), identical=bool(d.get("identical")),
                   reference_sha256=d.get("reference_sha256"))


@dataclass(frozen=True)
class ArtifactFacts:
    """What the artifact is: its content key, format, size and sparsity."""

    key: str | None                     # its key in the artifact store (what tasks name it by)
    sha256: str | None = None           # content hash of its files
    format: str | None = None           # artifact format name ("onnx", "torch")
    path: str | None = None
    runtime: str | None = None
    size_bytes: int | None = None
    params: int | None = None
    zero_params: int | None = None
    sparsity: float | None = None
    sparsity_pattern: str | None = None
    is_2_4: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)   # quantizer metadata

    _NAMED = ("sha256", "format", "path", "runtime", "size_bytes", "params", "zero_params",
              "sparsity", "sparsity_pattern", "is_2_4")

    def to_row(self) -> dict[str, Any]:
        out = {"key": self.key, **{k: getattr(self, k) for k in self._NAMED}}
        out.update(self.extra)
        return out

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> ArtifactFacts:
        return cls(key=d.get("key"), **{k: d.get(k) for k in cls._NAMED},
                   extra={k: v for k, v in d.items() if k not in (*cls._NAMED, "key")})


@dataclass(frozen=True)
class Provenance:
    """What a prediction and a measurement were made with, so a changed yardstick is told
    apart from a changed model: the profile figures (overlay included) and the emulator."""

    emulator_version: str | None = None
    profile_sha256: str | None = None   # hash of every figure of the profile as used
    overlay_sha256: str | None = None   # the calibration overlay merged into it, if any
    artifact_key: str | None = None
    harness_version: str | None = None
    host: str | None = None
    backend_version: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> Provenance:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Measurement:
    """One finished case: its identity, status, and every figure any backend produced."""

    case_id: str
    workload: str
    quant: str
    prune: str
    device: str | None
    backend: str
    status: str
    reason: str = ""
    precision: str | None = None
    prune_method: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    artifact: ArtifactFacts | None = None
    measured: Measured | None = None
    quality: Quality | None = None
    fidelity: Fidelity | None = None
    prediction: Prediction | None = None
    trace: Mapping[str, Any] | None = None     # sustained run: per-point lists (see emulator)
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.case_id:
            raise ValueError("a measurement needs a case id")

    # ---- what readers ask for
    @property
    def device_label(self) -> str:
        """The device column: the profile name, or the backend for a plain host run."""
        return self.device or self.backend

    def samples_ns(self, phase: str = FORWARD) -> tuple[float, ...]:
        return self.measured.samples_ns(phase) if self.measured else ()

    @property
    def quality_value(self) -> float | None:
        return self.quality.value if self.quality else None

    @property
    def predicted(self) -> Prediction:
        """The prediction, or an empty one (every figure None) when there is none."""
        return self.prediction if self.prediction is not None else _NO_PREDICTION

    # ---- the row format
    def to_row(self) -> dict[str, Any]:
        return {
            "schema_version": ROW_SCHEMA_VERSION,
            "case_id": self.case_id, "workload": self.workload, "quant": self.quant,
            "precision": self.precision, "prune": self.prune,
            "prune_method": self.prune_method, "device": self.device,
            "backend": self.backend, "status": self.status, "reason": self.reason,
            "started_at": self.started_at, "duration_s": self.duration_s,
            "artifact": self.artifact.to_row() if self.artifact else None,
            "measured": self.measured.to_row() if self.measured else None,
            "quality": self.quality.to_row() if self.quality else None,
            "fidelity": self.fidelity.to_row() if self.fidelity else None,
            "prediction": self.prediction.to_row() if self.prediction else None,
            "trace": dict(self.trace) if self.trace else None,
            "provenance": self.provenance.to_row(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Measurement:
        """A measurement from a row of the current version (see :func:`upgrade_row`)."""
        def sub(key: str, typ: Any) -> Any:
            v = row.get(key)
            return typ.from_row(v) if isinstance(v, Mapping) else None

        return cls(
            case_id=row["case_id"], workload=row["workload"], quant=row["quant"],
            prune=str(row["prune"]), device=row.get("device"), backend=row["backend"],
            status=row["status"], reason=row.get("reason") or "",
            precision=row.get("precision"), prune_method=row.get("prune_method"),
            started_at=row.get("started_at"), duration_s=row.get("duration_s"),
            artifact=sub("artifact", ArtifactFacts), measured=sub("measured", Measured),
            quality=sub("quality", Quality), fidelity=sub("fidelity", Fidelity),
            prediction=sub("prediction", Prediction),
            trace=row.get("trace") or None,
            provenance=sub("provenance", Provenance) or Provenance())


_NO_PREDICTION = Prediction()


# --------------------------------------------------------------------------- passes

def passes_of(m: Measurement) -> int:
    """How many passes of the sweep have measured this case (1 for a single-pass run)."""
    extra = m.measured.extra if m.measured else None
    n = (extra or {}).get("passes", 1)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def _merged_phase(a: Phase, b: Phase) -> Phase | None:
    """``a``'s samples followed by ``b``'s; None when they cannot be pooled (a runner's
    printed summary instead of samples, or another unit of work per sample)."""
    if a.summary is not None or b.summary is not None or a.unit != b.unit \
            or a.tokens_per_sample != b.tokens_per_sample:
        return None
    if a.calls_per_sample == b.calls_per_sample:
        return replace(a, samples=a.samples + b.samples)
    # each run chose its own loop length: pool per-call values (a loop's mean per call)
    return replace(a, samples=a.samples_ns + b.samples_ns, calls_per_sample=1)


def with_pass(m: Measurement, later: Measurement, *, pass_no: int) -> Measurement:
    """The row of ``m`` with a later pass of the sweep over the same case pooled into it.

    A sweep with ``passes = N`` measures every case, then goes over the cases again (in the
    other order) N-1 times, timing only: a drift of the host's speed then weighs on every
    level alike instead of on whichever levels ran while it lasted. Samples of each phase are
    appended (``measured.extra.pass_samples`` keeps how many each pass gave), the peak memory
    is the largest of the passes; the first pass's quality, prediction, telemetry and cold
    start stay. A later pass that fails leaves the figures as they were and says so in
    ``measured.extra.pass_notes``.
    """
    if m.measured is None:
        return m
    extra = dict(m.measured.extra or {})
    counts = {k: list(v) for k, v in (extra.get("pass_samples") or {}).items()}
    if not counts:
        counts = {p.name: [len(p.samples)] for p in m.measured.phases}
    notes = list(extra.get("pass_notes") or [])
    phases = list(m.measured.phases)
    peak = m.measured.peak_memory_mb
    if later.status != "ok" or later.measured is None:
        notes.append(f"pass {pass_no}: {later.status}: {later.reason}"[:300])
    else:
        by_name = {p.name: p for p in later.measured.phases}
        for i, p in enumerate(phases):
            q = by_name.pop(p.name, None)
            if q is None:
                continue
            merged = _merged_phase(p, q)
            if merged is None:
                notes.append(f"pass {pass_no}: phase {p.name} not pooled (a summary, "
                             f"or another unit per sample)")
                continue
            phases[i] = merged
            counts.setdefault(p.name, [len(p.samples)]).append(len(q.samples))
        phases += by_name.values()
        for q in by_name.values():
            counts[q.name] = [0] * (pass_no - 1) + [len(q.samples)]
        later_peak = later.measured.peak_memory_mb
        if later_peak is not None:
            peak = later_peak if peak is None else max(peak, later_peak)
    extra.update(passes=pass_no, pass_samples=counts)
    if notes:
        extra["pass_notes"] = notes
    measured = replace(m.measured, phases=tuple(phases), peak_memory_mb=peak, extra=extra)
    duration = None if m.duration_s is None else m.duration_s + (later.duration_s or 0.0)
    return replace(m, measured=measured, duration_s=duration)


# --------------------------------------------------------------------------- upgrades


def upgrade_row_v1(row: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the ``host`` block becomes ``measured`` with one ``forward`` phase,
    ``device_prediction`` becomes ``prediction`` (``footprint_mb`` -> ``peak_memory_mb``),
    ``device_trace`` becomes ``trace``; the artifact's store key is read off its path."""
    out = {k: v for k, v in row.items()
           if k not in ("host", "device_prediction", "device_trace")}
    out["schema_version"] = 2
    out.setdefault("backend", "emulated")
    host = row.get("host")
    if isinstance(host, Mapping):
        cold = host.get("cold_start") or None
        out["measured"] = {
            "where": "host", "runtime": host.get("runtime"),
            "runtime_version": host.get("runtime_version"),
            "providers": list(host.get("providers") or ()), "threads": host.get("threads"),
            "warmup_runs": host.get("warmup_runs"),
            "phases": [{"name": FORWARD, "unit": "ns",
                        "samples": list(host.get("warm_latency_ns") or ())}],
            "cold_start": {"load_ns": cold["session_create_ns"],
                           "first_inference_ns": cold["first_inference_ns"]} if cold else None,
            "peak_memory_mb": host.get("peak_rss_mb"),
            "memory_before_load_mb": host.get("rss_before_session_mb"),
            "pace": host.get("pace")}
    else:
        out["measured"] = None
    pred = row.get("device_prediction")
    if isinstance(pred, Mapping):
        pred = dict(pred)
        if "footprint_mb" in pred:
            pred["peak_memory_mb"] = pred.pop("footprint_mb")
    out["prediction"] = pred
    out["trace"] = row.get("device_trace")
    art = row.get("artifact")
    if isinstance(art, Mapping):
        art = dict(art)
        # v1 rows name the artifact by path only: <cache>/artifacts/<key>/<file>
        art.setdefault("key", PurePath(art["path"]).parent.name if art.get("path") else None)
        art.setdefault("format", {"onnxruntime": "onnx", "torch": "torch"}.get(
            str(art.get("runtime"))))
        out["artifact"] = art
    out["provenance"] = {}
    return out


def measurements(rows: Sequence[Mapping[str, Any]]) -> list[Measurement]:
    """Measurements of already-upgraded rows."""
    return [Measurement.from_row(r) for r in rows]
