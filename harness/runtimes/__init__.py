"""What executes an artifact: ONNX Runtime, PyTorch eager or LiteRT, behind one small
protocol.

``load(artifact, threads=...)`` returns a :class:`Loaded`: ``run(feeds)`` gives the outputs as
numpy arrays (for quality), ``timing_call(None, feeds)`` is the leanest call the timing loop
can make (``InferenceSession.run`` itself on ONNX Runtime). Runtimes are registered in
:data:`RUNTIMES` as lazy ``"module:load"`` entries; which one an artifact needs is told by its
format (:func:`harness.artifacts.formats.format_of`). Runtime modules are imported only when
used, so ``import harness`` imports neither torch nor onnxruntime (nor LiteRT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts.formats import format_for_runtime, format_of
from harness.plugins import load_plugin
from harness.registry import Registry

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Loaded:
    """An artifact loaded and ready to run."""

    runtime: str                                  # a name in RUNTIMES
    version: str
    providers: list[str]                          # where it runs, as the runtime names it
    run: Callable[[Feeds], list[np.ndarray]]
    timing_call: Callable[[Any, Feeds], Any]      # session.run-style: (None, feeds)


Loader = Callable[..., Loaded]  # (artifact, *, threads) -> Loaded

# runtime name -> its ``load(artifact, *, threads)``; info: what it is
RUNTIMES: Registry[Loader] = Registry("runtime")
RUNTIMES.register("onnxruntime", "harness.runtimes.onnxruntime:load",
                  info="ONNX Runtime, CPU execution provider")
RUNTIMES.register("torch", "harness.runtimes.torch:load", info="PyTorch eager on the CPU")
RUNTIMES.register("onnxruntime-genai", "harness.runtimes.genai:load",
                  info="ONNX Runtime GenAI (og.Model / og.Generator), CPU provider")
RUNTIMES.register("litert", "harness.runtimes.litert:load",
                  info="LiteRT (ai-edge-litert) Interpreter on the CPU, for .tflite files")


def artifact_file(runtime: str) -> str:
    """The file name an artifact for ``runtime`` has in the cache (``model.onnx``...)."""
    return format_for_runtime(runtime).filename


def runtime_of(artifact: Path) -> str:
    """The runtime that executes ``artifact``, from its format."""
    return format_of(artifact).runtime


def runtime_loader(artifact: Path) -> Loader:
    """The ``load`` function of the runtime that runs ``artifact`` (getting it imports the
    runtime library, so call it before timing a cold start: library import is not session
    creation)."""
    return load_plugin(RUNTIMES, runtime_of(artifact))


def load(artifact: Path, *, threads: int) -> Loaded:
    """Load ``artifact`` in its runtime with ``threads`` intra-op threads (0 = its default)."""
    return runtime_loader(artifact)(artifact, threads=threads)
