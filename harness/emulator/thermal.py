"""Lumped thermal model: power heats the device, heat lowers the clocks.

One temperature T stands for the SoC and the chassis around it::

    dT/dt = (T_amb + R * P - T) / tau

R (C/W) is the steady-state rise per watt and tau (s) how fast T follows the power. Above
``throttle_start_c`` the governor lowers the clock fraction f linearly down to
``min_clock_fraction`` at ``throttle_end_c``. Dynamic power scales with f * V^2 and voltage
roughly with frequency, so active power goes as f^3 (and energy per operation as f^2).

R is fitted to the published sustained-performance evidence: under the full load of a
sustained test, the steady state must give the published sustained fraction (see
:func:`fit_thermal_resistance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.profiles import DeviceProfile


@dataclass(frozen=True)
class ThermalModel:
    ambient_c: float
    resistance_c_per_w: float
    time_constant_s: float
    throttle_start_c: float
    throttle_end_c: float
    min_clock_fraction: float

    def __post_init__(self) -> None:
        if self.throttle_end_c <= self.throttle_start_c:
            raise ValueError("throttle_end_c must be above throttle_start_c")
        if not 0 < self.min_clock_fraction <= 1:
            raise ValueError("min_clock_fraction must be in (0, 1]")
        if self.resistance_c_per_w <= 0 or self.time_constant_s <= 0:
            raise ValueError("thermal resistance and time constant must be > 0")

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> ThermalModel:
        t = profile.thermal
        return cls(ambient_c=t.ambient_c.value,
                   resistance_c_per_w=t.thermal_resistance_c_per_w.value,
                   time_constant_s=t.time_constant_s.value,
                   throttle_start_c=t.throttle_start_c.value,
                   throttle_end_c=t.throttle_end_c.value,
                   min_clock_fraction=t.min_clock_fraction.value)

    def clock_fraction(self, temp_c: float) -> float:
        """The governor's clock fraction at ``temp_c`` (1 below the throttle point)."""
        if temp_c <= self.throttle_start_c:
            return 1.0
        span = (temp_c - self.throttle_start_c) / (self.throttle_end_c - self.throttle_start_c)
        return max(self.min_clock_fraction, 1.0 - span * (1.0 - self.min_clock_fraction))

    def temp_for_fraction(self, fraction: float) -> float:
        """The lowest temperature at which the clock fraction is ``fraction``."""
        if fraction >= 1.0:
            return self.throttle_start_c
        if fraction < self.min_clock_fraction:
            raise ValueError(f"the curve never goes below {self.min_clock_fraction}")
        share = (1.0 - fraction) / (1.0 - self.min_clock_fraction)
        return self.throttle_start_c + share * (self.throttle_end_c - self.throttle_start_c)

    def step(self, temp_c: float, power_w: float, dt_s: float) -> float:
        """Temperature after ``dt_s`` seconds at constant ``power_w`` (exact for a step)."""
        target = self.ambient_c + self.resistance_c_per_w * power_w
        return target + (temp_c - target) * math.exp(-dt_s / self.time_constant_s)

    def steady_state(self, power_at: PowerAtClock, *, tol: float = 1e-6) -> tuple[float, float]:
        """(temperature, clock fraction) where heating and throttling balance.

        ``power_at(f)`` is the total power at clock fraction f. The balance is unique because
        temperature rises with f while the curve's f falls with temperature: bisection on f.
        """
        lo, hi = self.min_clock_fraction, 1.0
        if self.clock_fraction(self.ambient_c + self.resistance_c_per_w * power_at(1.0)) >= 1.0:
            return self.ambient_c + self.resistance_c_per_w * power_at(1.0), 1.0
        while hi - lo > tol:
            f = (lo + hi) / 2
            temp = self.ambient_c + self.resistance_c_per_w * power_at(f)
            if self.clock_fraction(temp) < f:
                hi = f
            else:
                lo = f
        f = (lo + hi) / 2
        return self.ambient_c + self.resistance_c_per_w * power_at(f), f


class PowerAtClock:
    """Total power at clock fraction f: idle + active * f^3 (dynamic power ~ f V^2, V ~ f)."""

    def __init__(self, *, idle_w: float, active_w: float):
        self.idle_w = idle_w
        self.active_w = active_w

    def __call__(self, fraction: float) -> float:
        return self.idle_w + self.active_w * fraction ** 3


def fit_thermal_resistance(profile: DeviceProfile, *, load_active_w: float) -> float:
    """R (C/W) such that a sustained full load ends at the published sustained fraction.

    ``load_active_w`` is the active power of the load the sustained evidence was measured
    under at full clock (for a CPU throttling test: the CPU unit's active power). At the
    steady state T = T_amb + R * P(f) with f = sustained_fraction, so
    R = (T(f) - T_amb) / P(f), where T(f) is where the throttle curve reaches f.
    """
    model = ThermalModel.from_profile(profile)
    f = profile.thermal.sustained_fraction.value
    power = PowerAtClock(idle_w=profile.power.idle_w.value, active_w=load_active_w)(f)
    rise = model.temp_for_fraction(f) - model.ambient_c
    if rise <= 0:
        raise ValueError("the throttle point is below ambient: no resistance fits")
    return rise / power
