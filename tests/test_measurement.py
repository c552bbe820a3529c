"""The Measurement type and its row format: round trips, the v1 upgrade, validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixtures import row, thermal_trace

from harness.core.measurement import (
    ArtifactFacts,
    ColdStart,
    Fidelity,
    Measured,
    Measurement,
    Phase,
    Prediction,
    Provenance,
    Quality,
    upgrade_row_v1,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe = st.none() | finite
samples = st.lists(st.integers(0, 10**12), max_size=20).map(tuple)

phases = st.lists(st.builds(Phase, name=names, samples=samples,
                            tokens_per_sample=st.none() | st.integers(1, 4096)),
                  max_size=3, unique_by=lambda p: p.name).map(tuple)
measured = st.builds(
    Measured, where=names, phases=phases,
    cold_start=st.none() | st.builds(ColdStart, st.integers(0, 10**12), st.integers(0, 10**12)),
    peak_memory_mb=maybe, memory_before_load_mb=maybe, runtime=st.none() | names,
    providers=st.lists(names, max_size=2).map(tuple), threads=st.none() | st.integers(0, 64),
    warmup_runs=st.none() | st.integers(0, 100))
prediction = st.one_of(
    st.builds(Prediction, error=names),
    st.builds(Prediction, latency_ms=maybe, sustained_latency_ms=maybe, peak_memory_mb=maybe,
              app_cap_mb=maybe, fits=st.none() | st.booleans(), energy_mj=maybe,
              avg_power_w=maybe, detail=st.dictionaries(
                  st.sampled_from(["unit", "notes", "work_gops"]),
                  st.none() | finite | names, max_size=2)))
measurements = st.builds(
    Measurement, case_id=names, workload=names, quant=names, prune=names,
    device=st.none() | names, backend=names,
    status=st.sampled_from(["ok", "oom", "unsupported", "timeout", "error", "device_lost"]),
    reason=st.text(max_size=20), duration_s=maybe,
    artifact=st.none() | st.builds(ArtifactFacts, key=st.none() | names,
                                   size_bytes=st.none() | st.integers(0, 10**10),
                                   sparsity=maybe, is_2_4=st.none() | st.booleans()),
    measured=st.none() | measured,
    quality=st.none() | st.builds(Quality, metric=names, value=finite,
                                  n_examples=st.integers(0, 10**6),
                                  higher_is_better=st.booleans()),
    fidelity=st.none() | st.builds(Fidelity, cosine=maybe, sqnr_db=maybe,
                                   identical=st.booleans()),
    prediction=st.none() | prediction,
    provenance=st.builds(Provenance, emulator_version=st.none() | names,
                         profile_sha256=st.none() | names))


@settings(max_examples=200, deadline=None)
@given(measurements)
def test_row_round_trip(m: Measurement) -> None:
    """to_row -> JSON -> from_row gives the same measurement back."""
    back = Measurement.from_row(json.loads(json.dumps(m.to_row())))
    assert back == m


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=0, max_size=30),
       st.none() | st.floats(0.001, 1e5), st.booleans(), st.booleans())
def test_v1_rows_upgrade_to_the_same_figures(warm: list[int], footprint: float | None,
                                             with_host: bool, with_trace: bool) -> None:
    r = row("w", "int8-static", "50", "phone", median_ms=1.0 if with_host else None,
            footprint_mb=footprint, device_ms=2.0,
            **({"device_trace": thermal_trace(2.0)} if with_trace else {}))
    if with_host:
        r["host"]["warm_latency_ns"] = warm
    m = Measurement.from_row(upgrade_row_v1(r))
    assert m.backend == "emulated" and m.case_id == r["case_id"]
    assert m.samples_ns() == tuple(float(s) for s in (warm if with_host else ()))
    assert m.predicted.peak_memory_mb == footprint
    assert m.predicted.latency_ms == 2.0
    assert (m.trace is not None) == with_trace
    if with_host:
        assert m.measured and m.measured.cold_start == ColdStart(4_000_000, 500_000)
        assert m.measured.peak_memory_mb == r["host"]["peak_rss_mb"]


def test_invalid_measurements_are_refused() -> None:
    base: dict[str, Any] = {"case_id": "a", "workload": "w", "quant": "q", "prune": "0",
                            "device": None, "backend": "host"}
    with pytest.raises(ValueError, match="status must be one of"):
        Measurement(**base, status="fine")
    with pytest.raises(ValueError, match="unit must be one of"):
        Phase("forward", (1, 2), unit="ms")
    with pytest.raises(ValueError, match="non-negative"):
        Phase("forward", (-1,))
    with pytest.raises(ValueError, match="unique"):
        Measured(where="host", phases=(Phase("forward", ()), Phase("forward", ())))
