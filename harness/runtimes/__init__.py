"""What executes an artifact: ONNX Runtime or PyTorch eager, behind one small protocol.

``load(artifact, threads=...)`` returns a :class:`Loaded`: ``run(feeds)`` gives the outputs as
numpy arrays (for quality), ``timing_call(None, feeds)`` is the leanest call the timing loop
can make (``InferenceSession.run`` itself on ONNX Runtime). Which runtime an artifact needs is
told by its file name; runtime modules are imported only when used, so ``import harness``
imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import InputError

Feeds = dict[str, np.ndarray]

# runtime name -> (module with `load`, file name of its artifacts)
RUNTIMES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("harness.runtimes.onnxruntime", "model.onnx"),
    "torch": ("harness.runtimes.torch", "model.pt"),
}


@dataclass(frozen=True)
class Loaded:
    """An artifact loaded and ready to run."""

    runtime: str                                  # a key of RUNTIMES
    version: str
    providers: list[str]                          # where it runs, as the runtime names it
    run: Callable[[Feeds], list[np.ndarray]]
    timing_call: Callable[[Any, Feeds], Any]      # session.run-style: (None, feeds)


def artifact_file(runtime: str) -> str:
    """The file name an artifact for ``runtime`` has in the cache (``model.onnx``...)."""
    return RUNTIMES[runtime][1]


def runtime_of(artifact: Path) -> str:
    """The runtime that executes ``artifact``, from its file name."""
    for name, (_, filename) in RUNTIMES.items():
        if Path(filename).suffix == artifact.suffix:
            return name
    raise InputError(f"{artifact}: no runtime runs {artifact.suffix!r} files "
                     f"(known: {', '.join(f for _, f in RUNTIMES.values())})")


def runtime_module(artifact: Path) -> Any:
    """The module that runs ``artifact`` (importing it imports the runtime library, so call
    it before timing a cold start: library import is not session creation)."""
    return importlib.import_module(RUNTIMES[runtime_of(artifact)][0])


def load(artifact: Path, *, threads: int) -> Loaded:
    """Load ``artifact`` in its runtime with ``threads`` intra-op threads (0 = its default)."""
    loaded: Loaded = runtime_module(artifact).load(artifact, threads=threads)
    return loaded
