"""LiteRT (``ai-edge-litert``, formerly TensorFlow Lite) on the CPU: ``.tflite`` artifacts.

The ``Interpreter`` of the ``ai-edge-litert`` wheel runs the file as a phone's app would
(its default CPU path, XNNPACK included), with ``threads`` threads. Inputs are fed by tensor
name, in the order of the model's input details; outputs come back in the order of its output
details. Without the package, loading raises :class:`~harness.errors.Unsupported` naming the
extra to install, so the case ends ``unsupported`` rather than ``error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import Unsupported
from harness.runtimes import Feeds, Loaded

EXTRA = "tflite"   # pip install 'edge-harness[tflite]'


def interpreter_class() -> Any:
    """LiteRT's ``Interpreter``; Unsupported naming the extra when it is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise Unsupported(f"timing a .tflite model on the host needs LiteRT: pip install "
                          f"'edge-harness[{EXTRA}]' (ai-edge-litert; {exc})") from None
    return Interpreter


def load(artifact: Path, *, threads: int) -> Loaded:
    """An allocated ``Interpreter`` of ``artifact``; ``threads`` CPU threads (0 = LiteRT's
    default)."""
    from importlib.metadata import PackageNotFoundError, version

    interpreter = interpreter_class()(model_path=str(artifact),
                                      num_threads=threads if threads > 0 else None)
    interpreter.allocate_tensors()
    inputs = [(d["name"], d["index"]) for d in interpreter.get_input_details()]
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def timing_call(_: Any, feeds: Feeds) -> None:
        # set + invoke, as session.run is: copying the input in is part of an inference
        for name, index in inputs:
            interpreter.set_tensor(index, feeds[name])
        interpreter.invoke()

    def run(feeds: Feeds) -> list[np.ndarray]:
        missing = [n for n, _ in inputs if n not in feeds]
        if missing:
            raise ValueError(f"{artifact.name} takes inputs {[n for n, _ in inputs]}, "
                             f"missing {missing}")
        timing_call(None, feeds)
        # get_tensor copies: the next invoke must not change what was returned
        return [np.asarray(interpreter.get_tensor(i)) for i in outputs]

    try:
        v = version("ai-edge-litert")
    except PackageNotFoundError:
        v = "unknown"
    return Loaded(runtime="litert", version=v, providers=["cpu (LiteRT default delegates)"],
                  run=run, timing_call=timing_call)
