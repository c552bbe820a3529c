"""Device memory footprint of a model: weights + peak live activations + runtime overhead.

The footprint is compared with the profile's app memory cap to give a *fits / OOM* verdict
(docs/emulator.md, "The emulator": Memory). Sizes are in MiB
(:data:`~harness.emulator.graph.BYTES_PER_MB`).

Activations are counted by liveness over the nodes in execution order: a buffer is live from the
step of the node that produces it (graph inputs from the first step) through the step of its last
reader (graph outputs to the last step), and the peak is the largest sum of live buffers at any
step, the inputs and outputs of the running node included. Buffers follow
:attr:`~harness.emulator.graph.TensorInfo.stored_in`: a view or a folded Q/DQ output extends the
life of the buffer it shares instead of adding one. This is the schedule the model file gives; a
runtime that reorders nodes or reuses buffers in place can do somewhat better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.emulator.graph import BYTES_PER_MB, Graph, ModelSource, TensorInfo, load_graph
from harness.profiles import DeviceProfile

# Bytes per tensor scale factor: 1 as stored; what-if precisions shrink float tensors.
TensorScale = Callable[[TensorInfo], float]


def _as_stored(t: TensorInfo) -> float:
    return 1.0


@dataclass(frozen=True)
class MemoryPrediction:
    """The device footprint of one model against the device's app memory cap, in MiB."""

    weights_mb: float
    peak_activations_mb: float
    runtime_overhead_mb: float
    peak_memory_mb: float          # weights + peak activations + runtime overhead
    app_cap_mb: float
    fits: bool                   # peak_memory_mb <= app_cap_mb
    headroom_mb: float           # app_cap_mb - peak_memory_mb; negative when it does not fit
    peak_node: str | None        # the node running when activations peak (None: no nodes)


def live_bytes_per_step(graph: Graph, *, scale: TensorScale = _as_stored) -> list[int]:
    """Bytes of live activation buffers while each node runs (liveness rules: module doc).

    One entry per node in execution order; a graph without nodes gives one entry, its inputs.
    ``scale`` resizes each buffer (what-if precisions).
    """
    last = max(len(graph.nodes) - 1, 0)
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    for t in graph.tensors.values():
        root = graph.tensors[t.stored_in]
        if root.kind == "weight":
            continue   # weights are counted once, apart, at their stored size
        if root.name not in start:
            start[root.name] = root.producer if root.producer is not None else 0
            end[root.name] = start[root.name]
        # Every reader of a tensor sharing the buffer keeps the buffer alive.
        if t.consumers:
            end[root.name] = max(end[root.name], t.consumers[-1])
        if t.is_output:
            end[root.name] = last
    # Add each buffer at its first live step and take it off after its last: a running sum
    # over the steps is then the live total at each step.
    delta = [0] * (last + 2)
    for name, s in start.items():
        size = round(graph.tensors[name].device_nbytes * scale(graph.tensors[name]))
        delta[s] += size
        delta[end[name] + 1] -= size
    live: list[int] = []
    total = 0
    for step in range(last + 1):
        total += delta[step]
        live.append(total)
    return live


def predict_memory(graph: Graph | ModelSource, profile: DeviceProfile, *,
                   scale: TensorScale = _as_stored) -> MemoryPrediction:
    """Predict the device footprint of ``graph`` (a :class:`Graph` or a model to load).

    Weights are the distinct initializers (and Constant outputs) the nodes use, at their stored
    precision (int4 packed two per byte, as the file holds them); unused initializers are left
    out, as ONNX Runtime drops them when it loads a model.
    """
    g = load_graph(graph)
    weights_mb = sum(t.nbytes * scale(t) for t in g.tensors.values()
                     if t.kind == "weight" and t.stored_in == t.name
                     and (t.consumers or t.is_output)) / BYTES_PER_MB
    live = live_bytes_per_step(g, scale=scale)
    at = max(range(len(live)), key=live.__getitem__)   # the first step at the peak
    activations_mb = live[at] / BYTES_PER_MB
    overhead_mb = profile.memory.runtime_overhead_mb.value
    peak_memory_mb = weights_mb + activations_mb + overhead_mb
    cap_mb = profile.memory.app_cap_mb.value
    return MemoryPrediction(
        weights_mb=weights_mb,
        peak_activations_mb=activations_mb,
        runtime_overhead_mb=overhead_mb,
        peak_memory_mb=peak_memory_mb,
        app_cap_mb=cap_mb,
        fits=peak_memory_mb <= cap_mb,
        headroom_mb=cap_mb - peak_memory_mb,
        peak_node=g.nodes[at].name if g.nodes else None,
    )
