"""The backend seam: where a case is measured.

A :class:`Backend` is opened on a device profile (or on none: ``host``), measures one
:class:`CaseJob` at a time and never raises (the status is in the :class:`Measurement`), and
is closed at the end of the sweep. Its :class:`Capabilities` tell the sweep what it needs:
whether it wants the emulator's predictions, whether it needs a device profile, how many cases
it can run at once. Backends are registered in :data:`BACKENDS` by name
(``harness bench --backend NAME``); a new one (``adb``) is one registration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.core.measurement import (
    ArtifactFacts,
    Measurement,
    Prediction,
    Provenance,
)
from harness.core.types import ArtifactRef, Case, MeasureTask
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile


@dataclass(frozen=True)
class Capabilities:
    """What a backend needs from the sweep and what it can do."""

    needs_device: bool          # opened on a device profile (else device-less cases)
    predicts: bool              # its rows carry the emulator's predictions
    concurrency: int = 1        # cases it can measure at once (a phone: 1)
    measures_on: str = "host"   # "host", or "device" for real hardware

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


@dataclass(frozen=True)
class CaseJob:
    """One case as a backend receives it: the case, its artifact and what the plan found.

    ``failure`` is set when the case already ended before measuring (its build failed): the
    backend then only records it.
    """

    case: Case
    index: int
    log: Path
    artifact: ArtifactRef | None = None
    facts: ArtifactFacts | None = None
    prediction: Prediction | None = None
    trace: dict[str, Any] | None = None
    provenance: Provenance = field(default_factory=Provenance)
    measure: MeasureTask | None = None
    failure: tuple[str, str] | None = None     # (status, reason)
    # the smallest app memory cap among the cases that share this artifact's host run
    shared_cap_mb: float | None = None


@dataclass
class HostRuns:
    """Host measurements of this sweep, shared by every backend that measures on the host.

    Timing, quality and fidelity depend on the artifact and the measure settings, not on the
    device: a multi-device sweep measures each artifact once and every device's row reuses it.
    What differs per device is the memory cap the worker runs under, so a result is reused
    only where the cap cannot change it: a run that passed under cap C passes under any larger
    cap (or none), and one that ran out of memory under C runs out under any smaller cap.
    Errors and timeouts are reused only under the same cap (a crash under a small cap may be
    memory in disguise).
    """

    runs: dict[Any, list[tuple[float | None, dict[str, Any], str]]] = field(default_factory=dict)

    @staticmethod
    def _le(a: float | None, b: float | None) -> bool:
        """a <= b, where None is no cap (infinite)."""
        return b is None or (a is not None and a <= b)

    def lookup(self, key: Any, cap: float | None) -> tuple[dict[str, Any], str] | None:
        """A stored outcome that running under ``cap`` would reproduce, with its origin."""
        for run_cap, outcome, origin in self.runs.get(key, ()):
            status = outcome["status"]
            if (status == "ok" and self._le(run_cap, cap)) or (
                    status == "oom" and self._le(cap, run_cap)) or run_cap == cap:
                return outcome, origin
        return None

    def store(self, key: Any, cap: float | None, outcome: dict[str, Any], origin: str) -> None:
        self.runs.setdefault(key, []).append((cap, outcome, origin))


@dataclass(frozen=True)
class BackendOptions:
    """Command-line settings for backends that need more than a profile (validated in
    ``sweep.BenchOptions``): where the phone is and what runs on it (adb)."""

    adb: str | None = None          # --adb HOST:PORT: a phone over TCP (`adb tcpip 5555`)
    serial: str | None = None       # --serial SERIAL: a phone over USB
    runner: Path | None = None      # --runner PATH: the on-device benchmark binary
    # --runner-kind: onnxruntime_perf_test or benchmark_model (None: from the runner's name)
    runner_kind: str | None = None
    connect_timeout_s: float = 10.0
    # --cooldown-c / --cooldown-max-s: before each case wait (at most cooldown_max_s, 0: never)
    # until the SoC is within cooldown_c of its temperature at connect
    cooldown_c: float = 3.0
    cooldown_max_s: float = 120.0
    # --telemetry: how the phone is sampled during a case (docs/adb.md): "stream" (a loop on a
    # connection of its own: TCP), "file" (the loop in the runner's own shell, its samples
    # read back after the run: one connection, as USB has), "off"; "auto" = stream over TCP,
    # file over USB
    telemetry: str = "auto"


@dataclass
class BackendContext:
    """What the sweep shares with every backend it opens."""

    host_runs: HostRuns = field(default_factory=HostRuns)
    options: BackendOptions = field(default_factory=BackendOptions)


class Backend(Protocol):
    """Where a case runs. ``measure`` never raises."""

    name: str
    capabilities: Capabilities

    def open(self, profile: DeviceProfile | None, context: BackendContext) -> None: ...

    def measure(self, job: CaseJob) -> Measurement: ...

    def close(self) -> None: ...


def now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def measurement_for(job: CaseJob, *, backend: str, status: str, reason: str = "",
                    started: float, started_at: str, **figures: Any) -> Measurement:
    """A Measurement of ``job`` with its identity filled in; ``figures`` are the rest."""
    c = job.case
    return Measurement(
        case_id=c.case_id, workload=c.workload.name, quant=c.quant.name,
        precision=c.quant.precision, prune=c.prune.name, prune_method=c.prune.method,
        device=c.device, backend=backend, status=status, reason=reason,
        started_at=started_at, duration_s=round(time.monotonic() - started, 3),
        artifact=job.facts, provenance=job.provenance, **figures)


def measure_guarded(backend: Backend, job: CaseJob) -> Measurement:
    """``backend.measure(job)``, holding a backend that breaks its promise not to raise to
    it: the exception becomes this case's ``error`` row and the sweep goes on. Ctrl-C still
    stops the sweep (finished cases are saved)."""
    started, started_at = time.monotonic(), now_iso()
    try:
        return backend.measure(job)
    except Exception as exc:
        return measurement_for(job, backend=job.case.backend, status="error",
                               reason=f"backend {job.case.backend!r} failed: "
                                      f"{type(exc).__name__}: {exc}",
                               started=started, started_at=started_at)


# name -> "module:Class"; instantiated once per (backend, device) by the sweep
BACKENDS: Registry[Any] = Registry("backend")
BACKENDS.register("emulated", "harness.backends.emulated:EmulatedBackend")
BACKENDS.register("host", "harness.backends.host:HostBackend")
BACKENDS.register("adb", "harness.backends.adb:AdbBackend")


def capabilities_of(name: str) -> Capabilities:
    """A registered backend's capabilities (imports the backend's module)."""
    caps: Capabilities = BACKENDS.get(name).capabilities
    return caps


def make_backend(name: str, profile: DeviceProfile | None,
                 context: BackendContext | None = None) -> Backend:
    """A new, opened instance of backend ``name``."""
    backend: Backend = BACKENDS.get(name)()
    backend.open(profile, context or BackendContext())
    return backend
