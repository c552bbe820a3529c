"""Fakes at the edge of the sweep, shared by the sweep and fault tests: an executor that runs
the real worker tasks in this process, and a phone backend that answers at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.backends.base import BACKENDS, Capabilities, CaseJob, measurement_for, now_iso
from harness.core.measurement import Measured, Measurement, Phase
from harness.core.types import WorkerTask
from harness.executors.local import LocalExecutor
from harness.worker import run_task


class InlineExecutor(LocalExecutor):
    """The local executor, but worker tasks run in this process (no isolation, no process
    start-up); cases still go through their backends as in every executor."""

    name = "inline"

    def run_one(self, task: WorkerTask, *, log: Path) -> dict[str, Any]:
        return run_task(task.to_worker())


def tiny_suite(path: Path, model: Path, *, quant: str = '["fp32", "int8-dynamic"]',
               prune: str = "[0]", measure: str = "iterations = 3\nwarmup = 0") -> Path:
    """A suite file sweeping the tiny conv model of conftest (dynamic batch given as 1)."""
    path.write_text(
        'schema_version = 1\n'
        f'workloads = [{{ name = "tiny", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        f'quant = {quant}\nprune = {prune}\n'
        f'[measure]\n{measure}\nmin_time_s = 0\ntimeout_s = 120\n')
    return path


class FakePhone:
    """A device backend that answers at once: each case's latency is its index in ms.

    ``crash_on`` names case ids whose measurement raises (a broken backend); ``stop_on``
    raises KeyboardInterrupt (the user pressing Ctrl-C mid-sweep); ``stop_on_pass`` and
    ``crash_on_pass`` do so in one pass of a multi-pass sweep only ((case id, pass) pairs).
    ``passes_seen`` records (case id, pass) as measured.
    """

    name = "fakephone"
    capabilities = Capabilities(needs_device=True, predicts=False, measures_on="device")
    crash_on: ClassVar[set[str]] = set()
    stop_on: ClassVar[set[str]] = set()
    seen: ClassVar[list[str]] = []
    stop_on_pass: ClassVar[set[tuple[str, int]]] = set()
    crash_on_pass: ClassVar[set[tuple[str, int]]] = set()
    passes_seen: ClassVar[list[tuple[str, int]]] = []

    def open(self, profile: Any, context: Any) -> None:
        self.profile = profile

    def close(self) -> None:
        pass

    def measure(self, job: CaseJob) -> Measurement:
        import time

        FakePhone.seen.append(job.case.case_id)
        at = (job.case.case_id, job.measure.pass_no if job.measure else 1)
        FakePhone.passes_seen.append(at)
        if job.case.case_id in self.stop_on or at in self.stop_on_pass:
            raise KeyboardInterrupt
        if job.case.case_id in self.crash_on or at in self.crash_on_pass:
            raise RuntimeError("usb cable pulled")
        if job.failure:
            return measurement_for(job, backend=self.name, status=job.failure[0],
                                   reason=job.failure[1], started=time.monotonic(),
                                   started_at=now_iso())
        samples = tuple(int(job.index * 1e6) for _ in range(5))
        return measurement_for(job, backend=self.name, status="ok", started=time.monotonic(),
                               started_at=now_iso(),
                               measured=Measured(where="fake-serial",
                                                 phases=(Phase("forward", samples),)))


@pytest.fixture
def fake_phone() -> Iterator[type[FakePhone]]:
    FakePhone.crash_on, FakePhone.stop_on, FakePhone.seen = set(), set(), []
    FakePhone.stop_on_pass, FakePhone.crash_on_pass, FakePhone.passes_seen = set(), set(), []
    with BACKENDS.registered("fakephone", FakePhone):
        yield FakePhone


