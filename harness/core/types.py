"""The sweep's vocabulary: what a suite names (:class:`WorkloadRef`), one cell of a sweep
(:class:`Case`), an artifact named by its content key (:class:`ArtifactRef`), and the typed,
serialisable tasks an executor runs.

Tasks name artifacts by their key in the content-addressed artifact store, never by a path on
one machine, so an executor may run them anywhere that can reach the store. Each task turns
into the JSON a worker process reads (:meth:`to_worker`); the worker's registry is
:mod:`harness.worker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.variants import PruneSpec, QuantSpec

# The backend whose case ids carry no suffix: every run before backends existed was emulated,
# so old runs and baselines keep joining on the same ids.
DEFAULT_BACKEND = "emulated"


Shape = tuple[int, ...]


@dataclass(frozen=True)
class WorkloadRef:
    """A workload named in a suite: a registered one, or a user's ONNX or ``.tflite`` file.

    ``shapes`` gives a user's ONNX file the full shape of inputs with dynamic dimensions
    (``((input name, (1, 3, 320, 320)), ...)``, sorted by name): the host times exactly these
    and the emulator costs exactly these. A ``.tflite`` file is timed at the shapes stored in
    it.
    """

    name: str
    onnx: Path | None = None
    shapes: tuple[tuple[str, Shape], ...] = ()
    tflite: Path | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"a workload name must be non-empty and contain no '/': {self.name!r}")
        object.__setattr__(self, "shapes", tuple(sorted(
            (str(k), tuple(int(d) for d in v)) for k, v in self.shapes)))
        for k, v in self.shapes:
            if not v or any(d < 1 for d in v):
                raise ValueError(f"shape of input {k!r} must be dimensions >= 1, got {list(v)}")
        if self.shapes and self.onnx is None:
            raise ValueError("input shapes apply to a workload given as an ONNX file")
        if self.onnx is not None and self.tflite is not None:
            raise ValueError("a workload is one file: an ONNX file or a .tflite file, not both")

    @property
    def shape_map(self) -> dict[str, Shape]:
        return dict(self.shapes)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "onnx": str(self.onnx) if self.onnx else None,
               "shapes": {k: list(v) for k, v in self.shapes}}
        if self.tflite is not None:   # absent otherwise: older manifests stay byte-identical
            out["tflite"] = str(self.tflite)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WorkloadRef:
        return cls(name=d["name"], onnx=Path(d["onnx"]) if d.get("onnx") else None,
                   shapes=tuple((k, tuple(v)) for k, v in (d.get("shapes") or {}).items()),
                   tflite=Path(d["tflite"]) if d.get("tflite") else None)


@dataclass(frozen=True)
class Case:
    """One cell of a sweep: workload x quantization x pruning x device x backend.

    ``device`` is None for backends that run without a device profile (``host``).
    """

    workload: WorkloadRef
    quant: QuantSpec
    prune: PruneSpec
    device: str | None
    backend: str = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        if not self.backend or "@" in self.backend or "/" in self.backend:
            raise ValueError(f"a backend name must be non-empty without '@' or '/': "
                             f"{self.backend!r}")

    @property
    def variant_key(self) -> tuple[str, str, str]:
        """What the artifact depends on: the same for every device and backend."""
        return (self.workload.name, self.quant.name, self.prune.name)

    @property
    def cell_id(self) -> str:
        """The cell without its backend: rows of several backends for one cell share it."""
        base = f"{self.workload.name}/{self.quant.name}/prune-{self.prune.name}"
        return base + (f"/{self.device}" if self.device else "")

    @property
    def case_id(self) -> str:
        """Stable id, used by --resume and to join runs in comparisons.

        ``workload/quant/prune-P/device`` for the emulated backend (the id every older run
        used), with ``@backend`` appended for any other backend.
        """
        suffix = "" if self.backend == DEFAULT_BACKEND else f"@{self.backend}"
        return self.cell_id + suffix


@dataclass(frozen=True)
class ArtifactRef:
    """A built artifact, named by its key in the artifact store and its format."""

    key: str
    format: str
    filename: str

    def path(self, cache_dir: Path) -> Path:
        """Where the artifact lies in the store under ``cache_dir``."""
        return cache_dir / "artifacts" / self.key / self.filename

    @classmethod
    def from_path(cls, path: Path, *, format: str) -> ArtifactRef:
        """The reference of an artifact at ``<cache>/artifacts/<key>/<file>``."""
        return cls(key=path.parent.name, format=format, filename=path.name)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "format": self.format, "filename": self.filename}


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class BuildTask:
    """Build (or find in the cache) the artifacts of some variants of one workload."""

    workload: WorkloadRef
    variants: tuple[tuple[QuantSpec, PruneSpec], ...]
    cache_dir: Path
    timeout_s: float
    timed: bool = field(default=False, init=False)

    def to_worker(self) -> dict[str, Any]:
        return {"kind": "build_many", "workload": self.workload.to_json(),
                "cache_dir": str(self.cache_dir),
                "variants": [{"quant": q.name, "prune": {"method": p.method,
                                                         "amount": p.amount}}
                             for q, p in self.variants]}


@dataclass(frozen=True)
class InputsTask:
    """Write a workload's batch-1 timing inputs to the cache, as .npz."""

    workload: WorkloadRef
    out: Path
    timeout_s: float
    timed: bool = field(default=False, init=False)

    def to_worker(self) -> dict[str, Any]:
        return {"kind": "inputs", "workload": self.workload.to_json(), "out": str(self.out)}


@dataclass(frozen=True)
class DescribeTask:
    """Inspect one artifact and predict it on some device profiles (the emulator), at the
    shapes of its workload's timing inputs (``inputs``, the .npz the host times)."""

    artifact: ArtifactRef
    cache_dir: Path
    inputs: Path | None
    devices: tuple[str, ...]
    sustained_s: float
    period_ms: float | None
    breakdown_dir: Path | None
    timeout_s: float
    # the cell the artifact belongs to (workload/quant/prune-P): names its breakdown files
    label: str = ""
    timed: bool = field(default=False, init=False)

    def to_worker(self) -> dict[str, Any]:
        return {"kind": "describe", "artifact": self.artifact.to_json(), "label": self.label,
                "cache_dir": str(self.cache_dir), "devices": list(self.devices),
                "inputs": str(self.inputs) if self.inputs else None,
                "sustained_s": self.sustained_s, "period_ms": self.period_ms,
                "breakdown_dir": str(self.breakdown_dir) if self.breakdown_dir else None}


@dataclass(frozen=True)
class MeasureTask:
    """Time, evaluate and compare one artifact: what a backend is asked to measure."""

    workload: WorkloadRef
    artifact: ArtifactRef
    inputs: Path
    cache_dir: Path
    warmup: int
    iterations: int
    threads: int
    eval_size: str
    timeout_s: float
    pace: bool = False                  # pad each timed run to the predicted device latency
    # the device as the paced run follows it (a PaceSpec as JSON, with its thermal model),
    # filled in by a backend that predicts
    pace_spec: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    min_time_s: float = 0.0             # keep timing until the samples span this long
    memory_limit_mb: float | None = None
    # a later pass of the sweep (MeasureOptions.passes): time only, no quality evaluation;
    # the pass number keeps its run apart from the first pass's in the shared host runs
    pass_no: int = 1
    timed: bool = field(default=True, init=False)

    def to_worker(self) -> dict[str, Any]:
        return {"kind": "measure", "workload": self.workload.to_json(),
                "artifact": str(self.artifact.path(self.cache_dir)),
                "inputs": str(self.inputs), "warmup": self.warmup,
                "iterations": self.iterations, "threads": self.threads,
                "pace": self.pace_spec, "eval_size": self.eval_size,
                "min_time_s": self.min_time_s,
                "timing_only": self.pass_no > 1,
                "cache_dir": str(self.cache_dir)}


WorkerTask = BuildTask | InputsTask | DescribeTask | MeasureTask
