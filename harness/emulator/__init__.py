"""The device emulator: predicts latency, energy, heat and memory of an ONNX model on a device.

``emulate(model, profile)`` is the entry point the benchmark runner uses; ``load_graph``,
``predict_latency`` and ``predict_memory`` are its parts. Importing this package is light: its
names are imported on first use (PEP 562), so the measuring worker can use the thermal model
(:mod:`harness.emulator.thermal`, :mod:`harness.emulator.pacing`) without importing onnx, whose
memory would count in the host's peak. The graph modules import onnx, never torch or
onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Bump whenever the same graph on the same profile would be predicted differently (a changed
# cost formula, op class or memory rule), so `harness compare` can tell a changed yardstick from
# a changed model. Recorded in every row's provenance.
EMULATOR_VERSION = "2026.11.30d"

if TYPE_CHECKING:
    from harness.emulator.costmodel import (
        Emulation,
        LatencyPrediction,
        NodeCost,
        emulate,
        predict_latency,
        roofline_ms,
    )
    from harness.emulator.graph import BYTES_PER_MB, Graph, NodeFacts, TensorInfo, load_graph
    from harness.emulator.memory import MemoryPrediction, live_bytes_per_step, predict_memory
    from harness.emulator.sustained import SustainedTrace, simulate
    from harness.emulator.thermal import PowerAtClock, ThermalModel, fit_thermal_resistance

_WHERE = {
    **dict.fromkeys(("Emulation", "LatencyPrediction", "NodeCost", "emulate", "predict_latency",
                     "roofline_ms"), "harness.emulator.costmodel"),
    **dict.fromkeys(("BYTES_PER_MB", "Graph", "NodeFacts", "TensorInfo", "load_graph"),
                    "harness.emulator.graph"),
    **dict.fromkeys(("MemoryPrediction", "live_bytes_per_step", "predict_memory"),
                    "harness.emulator.memory"),
    **dict.fromkeys(("SustainedTrace", "simulate"), "harness.emulator.sustained"),
    **dict.fromkeys(("PowerAtClock", "ThermalModel", "fit_thermal_resistance"),
                    "harness.emulator.thermal"),
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'harness.emulator' has no attribute {name!r}")


__all__ = [
    "BYTES_PER_MB",
    "EMULATOR_VERSION",
    "Emulation",
    "Graph",
    "LatencyPrediction",
    "MemoryPrediction",
    "NodeCost",
    "NodeFacts",
    "PowerAtClock",
    "SustainedTrace",
    "TensorInfo",
    "ThermalModel",
    "emulate",
    "fit_thermal_resistance",
    "live_bytes_per_step",
    "load_graph",
    "predict_latency",
    "predict_memory",
    "roofline_ms",
    "simulate",
]
