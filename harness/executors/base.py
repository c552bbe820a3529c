"""The executor protocol and its registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.backends.base import Backend, CaseJob
from harness.core.measurement import Measurement
from harness.core.types import WorkerTask
from harness.registry import Registry

# (backend name, device or None) -> the opened backend that measures those cases
BackendKey = tuple[str, str | None]


@dataclass(frozen=True)
class ExecutorOptions:
    """Command-line settings an executor needs (validated in ``sweep.BenchOptions``)."""

    # --ray-address: a running Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
    # None starts a local one for the run
    ray_address: str | None = None


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
# lazy: `import harness` never imports ray (an optional extra: pip install edge-harness[ray])
EXECUTORS.register("ray", "harness.executors.ray:RayExecutor")


def make_executor(name: str = "local", options: ExecutorOptions | None = None) -> Executor:
    """A new executor; it is ready to run (the ray executor has connected to its cluster)."""
    if name == "ray" and options is not None and options.ray_address:
        from harness.executors.ray_auth import prepare_token_auth

        prepare_token_auth()    # before ray is imported: see harness.executors.ray_auth
    try:
        cls = EXECUTORS.get(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] == "harness":
            raise
        from harness.errors import InputError

        raise InputError(f"the {name} executor needs the {exc.name} package: pip install "
                         f"'edge-harness[{name}]'", field="--executor") from None
    executor: Executor = cls(options or ExecutorOptions())
    return executor
