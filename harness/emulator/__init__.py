"""The device emulator: predicts latency, energy, heat and memory of an ONNX model on a device.

``emulate(model, profile)`` is the entry point the benchmark runner uses; ``load_graph``,
``predict_latency`` and ``predict_memory`` are its parts. Importing this package imports onnx but
never torch or onnxruntime.
"""

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

# Bump whenever the same graph on the same profile would be predicted differently (a changed
# cost formula, op class or memory rule), so `harness compare` can tell a changed yardstick from
# a changed model. Recorded in every row's provenance.
EMULATOR_VERSION = "2026.11.30b"

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
