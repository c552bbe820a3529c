"""The ``emulated`` backend: the host run of :mod:`harness.backends.host`, under the device's
app memory cap, with the emulator's prediction of the same artifact on the device profile
(latency, sustained heat, memory fit, energy). A case whose predicted footprint exceeds the
app memory cap ends ``oom`` with its host figures kept."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.backends.base import Capabilities, CaseJob
from harness.backends.host import HostBackend
from harness.core.measurement import Measurement


class EmulatedBackend(HostBackend):
    name = "emulated"
    capabilities = Capabilities(needs_device=True, predicts=True)

    def memory_limit_mb(self) -> float | None:
        return self.profile.memory.app_cap_mb.value if self.profile else None

    def adjust(self, job: CaseJob) -> Any:
        assert job.measure is not None
        pred = job.prediction
        spec = pred.detail.get("pace_spec") if job.measure.pace and pred else None
        return replace(job.measure, memory_limit_mb=self.memory_limit_mb(), pace_spec=spec)

    def extra_figures(self, job: CaseJob) -> dict[str, Any]:
        return {"prediction": job.prediction, "trace": job.trace}

    def conclude(self, job: CaseJob, finish: Any, figures: dict[str, Any]) -> Measurement:
        pred = job.prediction
        figures = {**figures, **self.extra_figures(job)}
        if pred is not None and pred.fits is False:
            result: Measurement = finish(
                "oom", f"predicted device footprint {pred.peak_memory_mb:.1f} MB exceeds the "
                       f"app memory cap {pred.app_cap_mb:.0f} MB", **figures)
            return result
        result = finish("ok", **figures)
        return result
