"""The device emulator: predicts latency and memory of an ONNX model on a device profile.

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

__all__ = [
    "BYTES_PER_MB",
    "Emulation",
    "Graph",
    "LatencyPrediction",
    "MemoryPrediction",
    "NodeCost",
    "NodeFacts",
    "TensorInfo",
    "emulate",
    "live_bytes_per_step",
    "load_graph",
    "predict_latency",
    "predict_memory",
    "roofline_ms",
]
