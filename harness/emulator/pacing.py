"""Real-time pacing that throttles: a host run held at the device's pace, heating as it runs.

``--pace`` pads each timed host inference to the device's latency *at that moment*: the lumped
thermal model (:mod:`harness.emulator.thermal`) advances with the work and idle time of the
real run, the clock fraction falls once the device is hot, and the next inference's target
grows with it, as an app on a throttling phone would feel. When the host rests, the model
cools.

:class:`PaceSpec` is what the measuring worker needs, computed where the emulator runs (the
describe task): the model's latency and dynamic energy at a grid of clock fractions, and the
thermal figures. It is plain JSON and this module imports no ML library, so pacing does not
count onnx in the measured peak memory.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.emulator.thermal import ThermalModel

if TYPE_CHECKING:
    from harness.emulator.costmodel import LatencyPrediction
    from harness.profiles import DeviceProfile

GRID_POINTS = 33


@dataclass(frozen=True)
class PaceSpec:
    """The device as a paced run sees it: latency and dynamic energy per clock fraction."""

    clock: tuple[float, ...]          # ascending, from the profile's minimum clock to 1
    latency_ms: tuple[float, ...]
    dynamic_mj: tuple[float, ...]
    idle_w: float
    thermal: dict[str, float]         # ThermalModel's fields

    def __post_init__(self) -> None:
        n = len(self.clock)
        if n < 2 or len(self.latency_ms) != n or len(self.dynamic_mj) != n:
            raise ValueError("a pace spec needs matching grids of at least 2 points")

    @classmethod
    def from_prediction(cls, latency: LatencyPrediction, profile: DeviceProfile) -> PaceSpec:
        thermal = ThermalModel.from_profile(profile)
        lo = thermal.min_clock_fraction
        grid = tuple(lo + (1.0 - lo) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS))
        return cls(clock=grid, latency_ms=tuple(latency.latency_at(f) for f in grid),
                   dynamic_mj=tuple(latency.dynamic_energy_mj_at(f) for f in grid),
                   idle_w=profile.power.idle_w.value, thermal=asdict(thermal))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PaceSpec:
        return cls(clock=tuple(d["clock"]), latency_ms=tuple(d["latency_ms"]),
                   dynamic_mj=tuple(d["dynamic_mj"]), idle_w=float(d["idle_w"]),
                   thermal=dict(d["thermal"]))

    def at(self, fraction: float) -> tuple[float, float]:
        """(latency ms, dynamic energy mJ) at clock ``fraction``, linear between grid points."""
        f = min(max(fraction, self.clock[0]), self.clock[-1])
        i = min(max(bisect_left(self.clock, f), 1), len(self.clock) - 1)
        f0, f1 = self.clock[i - 1], self.clock[i]
        w = (f - f0) / (f1 - f0) if f1 > f0 else 0.0
        return (self.latency_ms[i - 1] + w * (self.latency_ms[i] - self.latency_ms[i - 1]),
                self.dynamic_mj[i - 1] + w * (self.dynamic_mj[i] - self.dynamic_mj[i - 1]))


class Pacer:
    """The emulated device's state during a paced host run: its temperature."""

    def __init__(self, spec: PaceSpec, *, start_temp_c: float | None = None) -> None:
        self.spec = spec
        self.model = ThermalModel(**spec.thermal)
        self.temp_c = self.model.ambient_c if start_temp_c is None else start_temp_c

    def target(self) -> tuple[float, float]:
        """(the next inference's device latency in ms, the clock fraction it runs at)."""
        f = self.model.clock_fraction(self.temp_c)
        return self.spec.at(f)[0], f

    def advance(self, *, busy_ms: float, elapsed_ms: float, clock_fraction: float) -> None:
        """The device worked ``busy_ms`` at ``clock_fraction`` and idled for the rest of
        ``elapsed_ms`` of real time (a host slower than the device, or a pause)."""
        elapsed_ms = max(elapsed_ms, busy_ms, 1e-9)
        dynamic_mj = self.spec.at(clock_fraction)[1]
        power_w = (dynamic_mj + self.spec.idle_w * elapsed_ms) / elapsed_ms
        self.temp_c = self.model.step(self.temp_c, power_w, elapsed_ms / 1e3)
