"""Sustained runs: inference after inference, the device heats up and its clocks drop.

Each step runs one inference at the clock fraction the current temperature allows, then advances
the lumped thermal model (:mod:`harness.emulator.thermal`) by its duration at its average power;
an optional period (a camera at 30 fps: 33.3 ms) adds idle time between inferences. The result
is a per-inference series of latency, temperature, clock fraction and power.

Long runs of fast models would mean millions of inferences, so when the run holds more than
``max_points`` inferences, consecutive inferences are simulated in equal blocks at one clock
fraction and each point of the series stands for a block (``inferences_per_point``). A block
lasts a tiny fraction of the thermal time constant, so this changes the result by far less than
the model's own error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from harness.emulator.costmodel import LatencyPrediction
from harness.emulator.thermal import ThermalModel
from harness.errors import InputError
from harness.profiles import DeviceProfile

MAX_POINTS = 2000


@dataclass(frozen=True)
class SustainedTrace:
    """A sustained run's series (one entry per point) and its summary."""

    time_s: tuple[float, ...]          # device time at the end of the point
    latency_ms: tuple[float, ...]      # per inference
    temp_c: tuple[float, ...]          # at the end of the point
    clock_fraction: tuple[float, ...]
    power_w: tuple[float, ...]         # average over the point's inferences (idle included)
    inferences_per_point: int
    inferences: int
    period_ms: float | None

    @property
    def burst_latency_ms(self) -> float:
        return self.latency_ms[0]

    @property
    def sustained_latency_ms(self) -> float:
        """Median latency over the last tenth of the run (where it has settled, if it has)."""
        tail = self.latency_ms[-max(1, len(self.latency_ms) // 10):]
        return float(median(tail))

    def to_row(self) -> dict[str, Any]:
        """The row's ``device_trace`` (lists, rounded: the model is not that precise)."""
        return {
            "time_s": [round(t, 4) for t in self.time_s],
            "latency_ms": [round(x, 6) for x in self.latency_ms],
            "temp_c": [round(x, 3) for x in self.temp_c],
            "clock_fraction": [round(x, 4) for x in self.clock_fraction],
            "power_w": [round(x, 4) for x in self.power_w],
            "inferences_per_point": self.inferences_per_point,
            "inferences": self.inferences,
            "period_ms": self.period_ms,
        }


def simulate(latency: LatencyPrediction, profile: DeviceProfile, *,
             iterations: int | None = None, duration_s: float | None = None,
             period_ms: float | None = None, start_temp_c: float | None = None,
             max_points: int = MAX_POINTS) -> SustainedTrace:
    """Simulate a sustained run of ``iterations`` inferences or ``duration_s`` seconds.

    Exactly one of ``iterations`` and ``duration_s`` is given. ``period_ms`` paces the
    inferences (idle in between); by default they run back to back. The run starts at ambient
    temperature unless ``start_temp_c`` says otherwise.
    """
    # Bad values are the caller's input (CLI options, suite fields, emulate_models arguments).
    if (iterations is None) == (duration_s is None):
        raise InputError("give exactly one of iterations and duration_s", field="duration_s")
    if iterations is not None and iterations < 1:
        raise InputError(f"expected an integer >= 1, got {iterations!r}", field="iterations")
    if duration_s is not None and not (0 < duration_s < math.inf):
        raise InputError(f"expected a finite number > 0, got {duration_s!r}", field="duration_s")
    if period_ms is not None and not (0 < period_ms < math.inf):
        raise InputError(f"expected a finite number > 0, got {period_ms!r}", field="period_ms")
    thermal = ThermalModel.from_profile(profile)
    idle_w = profile.power.idle_w.value
    burst_ms = latency.latency_at(1.0)
    step_ms = max(burst_ms, period_ms or 0.0)
    if step_ms <= 0:
        # A graph with no work (an Identity) takes no device time back to back: nothing heats,
        # and a duration would hold infinitely many inferences. One idle point says so.
        temp = thermal.ambient_c if start_temp_c is None else start_temp_c
        return SustainedTrace(time_s=(0.0,), latency_ms=(0.0,), temp_c=(temp,),
                              clock_fraction=(1.0,), power_w=(idle_w,), inferences_per_point=1,
                              inferences=iterations or 1, period_ms=period_ms)
    if iterations is not None:
        total = iterations
    else:
        assert duration_s is not None
        # Upper bound on the count: throttling only lengthens inferences; the loop stops at
        # the duration, so overestimating only sets the block size.
        total = max(1, math.ceil(duration_s * 1e3 / step_ms))
    block = max(1, math.ceil(total / max_points))

    temp = thermal.ambient_c if start_temp_c is None else start_temp_c
    now_s = 0.0
    done = 0
    times, lats, temps, fracs, powers = [], [], [], [], []
    while done < total and (duration_s is None or now_s < duration_s):
        n = min(block, total - done)
        f = thermal.clock_fraction(temp)
        lat_ms = latency.latency_at(f)
        busy_mj = latency.dynamic_energy_mj_at(f) + idle_w * lat_ms
        gap_ms = max(0.0, (period_ms or 0.0) - lat_ms)
        cycle_ms = lat_ms + gap_ms
        power = (busy_mj + idle_w * gap_ms) / cycle_ms
        temp = thermal.step(temp, power, n * cycle_ms / 1e3)
        now_s += n * cycle_ms / 1e3
        done += n
        times.append(now_s)
        lats.append(lat_ms)
        temps.append(temp)
        fracs.append(f)
        powers.append(power)
    return SustainedTrace(time_s=tuple(times), latency_ms=tuple(lats), temp_c=tuple(temps),
                          clock_fraction=tuple(fracs), power_w=tuple(powers),
                          inferences_per_point=block, inferences=done, period_ms=period_ms)
