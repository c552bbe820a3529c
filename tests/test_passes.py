"""Sweeps in several passes (``[measure] passes``): later passes time only, in reverse order,
and pool their samples into each case's row; a failing or interrupted pass loses nothing.

The sweep is real (tiny ONNX model built in code, real worker tasks run in this process); the
phone is the fake at the edge (tests/sweep_fakes.py) where the test needs to steer a fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sweep_fakes import FakePhone, InlineExecutor, tiny_suite

from harness import results
from harness.core.measurement import Measured, Measurement, Phase, passes_of, with_pass
from harness.errors import InputError
from harness.suites import load_suite
from harness.sweep import BenchOptions, Progress, run_bench

A, B = "tiny/fp32/prune-0/snapdragon8gen3@fakephone", \
    "tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"


def _suite(tmp_path: Path, tiny_model: Path, passes: int = 3) -> Path:
    return tiny_suite(tmp_path / "s.toml", tiny_model,
                      measure=f"warmup = 0\niterations = 4\nsustained_s = 10\npasses = {passes}")


def _options(tmp_path: Path, suite: Path, **kw: Any) -> BenchOptions:
    base: dict[str, Any] = {"devices": ("snapdragon8gen3",), "backends": ("fakephone",),
                            "suite": suite, "results_dir": tmp_path / "results",
                            "cache_dir": tmp_path / "cache", "command_line": ("test",)}
    return BenchOptions(**{**base, **kw})


def _m(status: str = "ok", *, phases: tuple[Phase, ...] = (), peak: float | None = None,
       reason: str = "") -> Measurement:
    return Measurement(case_id="w/q/p/d", workload="w", quant="q", prune="0", device="d",
                       backend="host", status=status, reason=reason, duration_s=1.0,
                       measured=Measured(where="host", phases=phases, peak_memory_mb=peak)
                       if status == "ok" else None)


def test_later_passes_are_timed_in_reverse_order_and_pooled(
        tmp_path: Path, tiny_model: Path, fake_phone: type[FakePhone]) -> None:
    events: list[Progress] = []
    run_dir = run_bench(_options(tmp_path, _suite(tmp_path, tiny_model)),
                        progress=events.append, executor=InlineExecutor())
    assert fake_phone.passes_seen == [(A, 1), (B, 1), (B, 2), (A, 2), (A, 3), (B, 3)]
    run = results.load_run(run_dir)
    assert [m.case_id for m in run.measurements] == [A, B]
    for m in run.measurements:
        assert m.status == "ok" and passes_of(m) == 3
        assert m.measured and m.measured.extra
        assert m.measured.extra["pass_samples"] == {"forward": [5, 5, 5]}
        assert len(m.samples_ns()) == 15
    # the fake phone's samples are the case's place in its pass: B was first in pass 2
    assert sorted(set(run.measurements[1].samples_ns())) == [1e6, 2e6]
    # every pass's rows are in the file (a crash at any point leaves the last complete row)
    assert len((run_dir / "cases.jsonl").read_text().splitlines()) == 6
    ends = [(e.pass_no, e.index, e.total) for e in events if e.measurement is not None]
    assert ends == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2), (3, 1, 2), (3, 2, 2)]
    assert all(e.passes == 3 for e in events)


def test_a_failing_later_pass_keeps_the_row_and_says_so(
        tmp_path: Path, tiny_model: Path, fake_phone: type[FakePhone]) -> None:
    fake_phone.crash_on_pass = {(A, 2)}
    run_dir = run_bench(_options(tmp_path, _suite(tmp_path, tiny_model)),
                        executor=InlineExecutor())
    a = {m.case_id: m for m in results.load_run(run_dir).measurements}[A]
    assert a.status == "ok" and a.measured and a.measured.extra
    assert a.measured.extra["pass_samples"] == {"forward": [5, 5]}  # passes 1 and 3
    assert "pass 2: error" in a.measured.extra["pass_notes"][0]
    assert "usb cable pulled" in a.measured.extra["pass_notes"][0]


def test_a_case_that_fails_the_first_pass_is_not_timed_again(
        tmp_path: Path, tiny_model: Path, fake_phone: type[FakePhone]) -> None:
    fake_phone.crash_on = {B}
    run_dir = run_bench(_options(tmp_path, _suite(tmp_path, tiny_model, passes=2)),
                        executor=InlineExecutor())
    assert fake_phone.passes_seen == [(A, 1), (B, 1), (A, 2)]
    ms = {m.case_id: m for m in results.load_run(run_dir).measurements}
    assert ms[B].status == "error" and passes_of(ms[A]) == 2


def test_an_interrupted_pass_is_finished_on_resume(
        tmp_path: Path, tiny_model: Path, fake_phone: type[FakePhone]) -> None:
    fake_phone.stop_on_pass = {(A, 2)}
    with pytest.raises(KeyboardInterrupt):
        run_bench(_options(tmp_path, _suite(tmp_path, tiny_model)), executor=InlineExecutor())
    (run_dir,) = (tmp_path / "results").iterdir()
    done = {m.case_id: passes_of(m) for m in results.load_run(run_dir).measurements}
    assert done == {A: 1, B: 2}
    fake_phone.stop_on_pass, fake_phone.passes_seen = set(), []
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
              executor=InlineExecutor())
    # A still needs passes 2 and 3, B only pass 3; nothing is measured twice in a pass
    assert fake_phone.passes_seen == [(A, 2), (A, 3), (B, 3)]
    ms = results.load_run(run_dir).measurements
    assert [passes_of(m) for m in ms] == [3, 3]
    assert all(len(m.samples_ns()) == 15 for m in ms)


def test_host_passes_pool_real_timings_and_skip_quality(tmp_path: Path,
                                                        tiny_model: Path) -> None:
    """The real host measurement: the later pass times in a worker (no quality pass) and its
    samples join the first pass's; quality and the prediction stay the first pass's."""
    run_dir = run_bench(_options(tmp_path, _suite(tmp_path, tiny_model, passes=2),
                                 backends=("emulated",), quant=("fp32",)),
                        executor=InlineExecutor())
    (m,) = results.load_run(run_dir).measurements
    assert m.status == "ok", m.reason
    assert m.measured and m.measured.extra and passes_of(m) == 2
    counts = m.measured.extra["pass_samples"]["forward"]
    assert len(counts) == 2 and all(n >= 4 for n in counts)
    assert m.measured.phase() is not None
    assert len(m.measured.phase().samples) == sum(counts)  # type: ignore[union-attr]
    assert m.prediction is not None and m.predicted.latency_ms


def test_pooling_rules() -> None:
    first = _m(phases=(Phase("forward", (10, 20), calls_per_sample=2),
                       Phase("load", (5,)), Phase("printed", (), summary={"p50_ns": 3.0})),
               peak=100.0)
    later = _m(phases=(Phase("forward", (30,), calls_per_sample=3),
                       Phase("load", (6, 7)), Phase("printed", (), summary={"p50_ns": 4.0}),
                       Phase("new", (1,))), peak=120.0)
    out = with_pass(first, later, pass_no=2)
    assert out.measured is not None and out.measured.extra is not None
    fwd = out.measured.phase("forward")
    # loops of different lengths pool per call
    assert fwd is not None and fwd.calls_per_sample == 1 and fwd.samples == (5.0, 10.0, 10.0)
    assert out.measured.phase("load").samples == (5, 6, 7)  # type: ignore[union-attr]
    assert out.measured.phase("printed").summary == {"p50_ns": 3.0}  # type: ignore[union-attr]
    assert out.measured.phase("new").samples == (1,)  # type: ignore[union-attr]
    assert out.measured.peak_memory_mb == 120.0 and out.duration_s == 2.0
    assert out.measured.extra["pass_samples"] == {"forward": [2, 1], "load": [1, 2],
                                                  "printed": [0], "new": [0, 1]}
    assert any("printed not pooled" in n for n in out.measured.extra["pass_notes"])
    failed = with_pass(out, _m("timeout", reason="600 s"), pass_no=3)
    assert failed.measured and failed.measured.phases == out.measured.phases
    assert failed.measured.extra and failed.measured.extra["passes"] == 3
    assert failed.measured.extra["pass_notes"][-1] == "pass 3: timeout: 600 s"
    # a row of a run without passes counts as one pass
    assert passes_of(first) == 1 and passes_of(out) == 2


def test_passes_are_validated(tmp_path: Path, tiny_model: Path) -> None:
    bad = tiny_suite(tmp_path / "bad.toml", tiny_model, measure="passes = 0")
    with pytest.raises(InputError, match="passes must be >= 1"):
        load_suite(str(bad))
    typo = tiny_suite(tmp_path / "typo.toml", tiny_model, measure="pases = 2")
    with pytest.raises(InputError, match="passes"):
        load_suite(str(typo))
    assert load_suite("llm").measure.passes == 3
