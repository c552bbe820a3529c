"""The local executor: every task on this machine, one at a time.

Timed cases never overlap (two timed runs on a 2-core machine would each slow the other), and
builds run one workload at a time because each already uses the cores it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, CaseJob, measure_guarded
from harness.core.measurement import Measurement
from harness.core.types import WorkerTask
from harness.executors.base import BackendKey, ExecutorOptions
from harness.launcher import run_in_worker


class LocalExecutor:
    name = "local"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()

    def run(self, tasks: Iterable[WorkerTask], *, log: Path,
            on_start: Callable[[WorkerTask], None] | None = None
            ) -> Iterator[tuple[WorkerTask, dict[str, Any]]]:
        for task in tasks:
            if on_start:
                on_start(task)
            yield task, self.run_one(task, log=log)

    def run_one(self, task: WorkerTask, *, log: Path) -> dict[str, Any]:
        """One worker task in a fresh worker process (crash isolation)."""
        return run_in_worker(task.to_worker(), timeout_s=task.timeout_s, log=log)

    def measure(self, jobs: Iterable[CaseJob], backends: Mapping[BackendKey, Backend], *,
                on_start: Callable[[CaseJob], None] | None = None
                ) -> Iterator[tuple[CaseJob, Measurement]]:
        for job in jobs:
            if on_start:
                on_start(job)
            yield job, measure_guarded(backends[(job.case.backend, job.case.device)], job)

    def close(self) -> None:
        pass
