"""The executor protocol and its registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from harness.backends.base import Backend, CaseJob
from harness.core.measurement import Measurement
from harness.core.types import WorkerTask
from harness.registry import Registry

# (backend name, device or None) -> the opened backend that measures those cases
BackendKey = tuple[str, str | None]


class Executor(Protocol):
    """Runs typed tasks and yields outcomes as they finish."""

    name: str

    def run(self, tasks: Iterable[WorkerTask], *, log: Path,
            on_start: Callable[[WorkerTask], None] | None = None
            ) -> Iterator[tuple[WorkerTask, dict[str, Any]]]:
        """Run worker tasks (untimed); yield ``(task, outcome)`` as each finishes."""
        ...

    def measure(self, jobs: Iterable[CaseJob], backends: Mapping[BackendKey, Backend], *,
                on_start: Callable[[CaseJob], None] | None = None
                ) -> Iterator[tuple[CaseJob, Measurement]]:
        """Measure cases through their backends; yield each measurement as it finishes."""
        ...

    def close(self) -> None: ...


EXECUTORS: Registry[Any] = Registry("executor")
EXECUTORS.register("local", "harness.executors.local:LocalExecutor")


def make_executor(name: str = "local") -> Executor:
    executor: Executor = EXECUTORS.get(name)()
    return executor
