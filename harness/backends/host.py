"""The ``host`` backend: the artifact timed, evaluated and compared on this machine, in a fresh
worker process per case (crash isolation), with no device figures."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness.backends.base import Capabilities, CaseJob, measurement_for, now_iso
from harness.core.measurement import Fidelity, Measured, Measurement, Quality
from harness.launcher import run_in_worker

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile


def host_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The measured, quality and fidelity parts of a measure worker's result."""
    q, f = result.get("quality"), result.get("fidelity")
    return {"measured": Measured.from_row(result["measured"]),
            "quality": Quality.from_row(q) if q else None,
            "fidelity": Fidelity.from_row(f) if f else None}


class HostBackend:
    """A plain host run: latency, cold start, peak memory, quality and fidelity."""

    name = "host"
    capabilities = Capabilities(needs_device=False, predicts=False)

    def __init__(self) -> None:
        self.profile: DeviceProfile | None = None

    def open(self, profile: DeviceProfile | None) -> None:
        self.profile = profile

    def close(self) -> None:
        pass

    def memory_limit_mb(self) -> float | None:
        """The worker's memory cap: none on a plain host run."""
        return None

    def measure(self, job: CaseJob) -> Measurement:
        started, started_at = time.monotonic(), now_iso()

        def finish(status: str, reason: str = "", **figures: Any) -> Measurement:
            return measurement_for(job, backend=self.name, status=status, reason=reason,
                                   started=started, started_at=started_at, **figures)

        try:
            if job.failure is not None:
                return finish(*job.failure, **self.extra_figures(job))
            if job.measure is None:
                return finish("error", "no measurement task (the artifact was not built)")
            task = self.adjust(job)
            out = run_in_worker(task.to_worker(), timeout_s=task.timeout_s, log=job.log,
                                memory_limit_mb=task.memory_limit_mb)
            if out["status"] != "ok":
                return finish(out["status"], out["reason"], **self.extra_figures(job))
            return self.conclude(job, finish, host_figures(out["result"]))
        except Exception as exc:  # last line of defence: one bad case never stops the sweep
            return finish("error", f"{type(exc).__name__}: {exc}")

    # Hooks the emulated backend overrides.
    def adjust(self, job: CaseJob) -> Any:
        from dataclasses import replace

        assert job.measure is not None
        return replace(job.measure, memory_limit_mb=self.memory_limit_mb(), pace_ms=None)

    def extra_figures(self, job: CaseJob) -> dict[str, Any]:
        return {}

    def conclude(self, job: CaseJob, finish: Any, figures: dict[str, Any]) -> Measurement:
        result: Measurement = finish("ok", **figures)
        return result
