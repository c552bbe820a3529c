"""Predicted device latency of a model: a per-node roofline on the profile's compute units.

First cut (DESIGN.md, "The emulator"): each node runs on one unit, one after another, and takes

    time = max(work / (peak * efficiency), bytes / bandwidth) + dispatch

with peak at the node's precision and bandwidth the profile's DRAM bandwidth. Nodes folded into
their neighbours on a device (Q/DQ, views, constants: ``NodeFacts.fused``) take no time.

Placement: with ``unit="auto"`` a node goes to the fastest unit that lists its op and has its
precision. If no unit has that pair, it falls back to the CPU at the nearest higher precision the
CPU offers (int4 -> int8 -> fp16 -> fp32), and the reason is kept. Issue 3 adds what this cut
leaves out: the cost of moving tensors between units when neighbouring nodes land on different
ones, plus thermal throttling and power.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from harness.emulator.graph import BYTES_PER_MB, Graph, ModelSource, NodeFacts, load_graph
from harness.emulator.memory import MemoryPrediction, predict_memory
from harness.profiles import ComputeUnit, DeviceProfile

# Fallback order, narrowest first: a node never runs at a narrower precision than its own.
# Holds every precision in harness.profiles.PRECISIONS (a test checks).
FALLBACK_LADDER = ("int4", "int8", "fp16", "fp32")

_TimeFn = Callable[[ComputeUnit, str], tuple[float, str]]   # (unit, precision) -> roofline


@dataclass(frozen=True)
class NodeCost:
    """One node's predicted time on the unit it was placed on."""

    name: str
    op_type: str
    precision: str          # the node's precision in the model
    unit: str | None        # the unit it runs on; None for fused nodes
    run_precision: str      # the precision it runs at there (differs after a fallback)
    work_gops: float        # 1e9 ops
    bytes_mb: float         # MiB read + written
    time_ms: float
    bound: str              # "compute" | "memory" | "fused"
    fallback: str | None = None   # why it is not on the unit that would run it fastest


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency of one inference on one device, with the per-node breakdown."""

    device: str
    unit: str                        # the placement asked for: "auto" or a unit name
    latency_ms: float
    work_gops: float                 # totals over the nodes that run (fused ones excluded)
    bytes_mb: float
    unit_ms: Mapping[str, float]     # time per unit
    nodes: tuple[NodeCost, ...]
    fallbacks: tuple[str, ...]       # "node (op): reason" for each node with a fallback
    unknown_ops: tuple[str, ...]     # op types costed at the unknown-op rate
    unresolved: tuple[str, ...]      # tensors whose shapes were guessed
    fixed_dims: tuple[str, ...]      # dynamic input dimensions given values


@dataclass(frozen=True)
class Emulation:
    """What the emulator predicts for one model on one device: latency and memory."""

    device: str
    latency: LatencyPrediction
    memory: MemoryPrediction
    uncalibrated: tuple[str, ...]    # profile figures that rest on assumptions

    @property
    def latency_ms(self) -> float:
        return self.latency.latency_ms

    @property
    def footprint_mb(self) -> float:
        return self.memory.footprint_mb

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready digest for a result row (no per-node detail)."""
        lat, mem = self.latency, self.memory
        return {
            "device": self.device,
            "latency_ms": lat.latency_ms,
            "work_gops": lat.work_gops,
            "bytes_mb": lat.bytes_mb,
            "unit_ms": dict(lat.unit_ms),
            "weights_mb": mem.weights_mb,
            "peak_activations_mb": mem.peak_activations_mb,
            "runtime_overhead_mb": mem.runtime_overhead_mb,
            "footprint_mb": mem.footprint_mb,
            "app_cap_mb": mem.app_cap_mb,
            "fits": mem.fits,
            "headroom_mb": mem.headroom_mb,
            "fallback_nodes": len(lat.fallbacks),
            "unknown_ops": list(lat.unknown_ops),
            "unresolved_tensors": len(lat.unresolved),
            "fixed_dims": list(lat.fixed_dims),
            "uncalibrated": list(self.uncalibrated),
            "notes": list(self.notes),
        }

    @property
    def notes(self) -> tuple[str, ...]:
        """Caveats worth printing beside the numbers."""
        out = [f"dynamic dimension {d}" for d in self.latency.fixed_dims]
        if self.latency.unknown_ops:
            out.append("ops costed as 1 op per output element (not in the cost tables): "
                       + ", ".join(self.latency.unknown_ops))
        if self.latency.unresolved:
            out.append(f"{len(self.latency.unresolved)} tensor shapes could not be inferred "
                       "(dims taken as 1)")
        if self.latency.fallbacks:
            out.append(f"{len(self.latency.fallbacks)} nodes placed off their fastest unit")
        return tuple(out)


def predict_latency(graph_or_model: Graph | ModelSource, profile: DeviceProfile, *,
                    unit: str = "auto") -> LatencyPrediction:
    """Predict one inference's latency on ``profile`` (rules in the module doc).

    ``unit`` is ``"auto"`` or the name of a unit to run every node on that it can take; nodes it
    cannot take fall back to the CPU as in automatic placement. An unknown unit name is an
    :class:`~harness.errors.InputError`.
    """
    g = load_graph(graph_or_model)
    allowed = profile.units if unit == "auto" else (profile.unit(unit),)
    bandwidth = profile.memory.bandwidth_gb_s.value
    costs = [_cost(n, profile, allowed, bandwidth, unit) for n in g.nodes]
    unit_ms: dict[str, float] = {u.name: 0.0 for u in profile.units}
    for c in costs:
        if c.unit is not None:
            unit_ms[c.unit] += c.time_ms
    running = [c for c in costs if c.bound != "fused"]
    return LatencyPrediction(
        device=profile.name,
        unit=unit,
        latency_ms=sum(c.time_ms for c in costs),
        work_gops=sum(c.work_gops for c in running),
        bytes_mb=sum(c.bytes_mb for c in running),
        unit_ms=MappingProxyType(unit_ms),
        nodes=tuple(costs),
        fallbacks=tuple(f"{c.name} ({c.op_type}): {c.fallback}" for c in costs if c.fallback),
        unknown_ops=g.unknown_ops,
        unresolved=g.unresolved,
        fixed_dims=g.fixed_dims,
    )


def emulate(model: Graph | ModelSource, profile: DeviceProfile, *, unit: str = "auto",
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            dim_params: Mapping[str, int] | None = None) -> Emulation:
    """Predict latency and memory of ``model`` on ``profile``, reading the model once.

    ``input_shapes`` and ``dim_params`` give dynamic input dimensions values (see
    :func:`~harness.emulator.graph.load_graph`; every other dynamic dimension is 1).
    """
    if isinstance(model, Graph):
        g = model
    else:
        g = load_graph(model, input_shapes=input_shapes, dim_params=dim_params)
    return Emulation(
        device=profile.name,
        latency=predict_latency(g, profile, unit=unit),
        memory=predict_memory(g, profile),
        uncalibrated=tuple(profile.uncalibrated()),
    )


# --------------------------------------------------------------------------- one node


def roofline_ms(work_ops: float, nbytes: float, unit: ComputeUnit, precision: str,
                bandwidth_gb_s: float) -> tuple[float, str]:
    """(time in ms, "compute" | "memory") of one node on ``unit`` at ``precision``.

    Memory time uses the profile's peak DRAM bandwidth as is; calibrating an effective
    bandwidth is left to the calibration issue.
    """
    compute_ms = work_ops / (unit.effective_gops(precision) * 1e6)   # GOPS -> ops per ms
    memory_ms = nbytes / (bandwidth_gb_s * 1e6)                       # GB/s -> bytes per ms
    bound = "compute" if compute_ms > memory_ms else "memory"
    return max(compute_ms, memory_ms) + unit.dispatch_us.value / 1e3, bound


def _cost(node: NodeFacts, profile: DeviceProfile, allowed: tuple[ComputeUnit, ...],
          bandwidth: float, asked: str) -> NodeCost:
    work_gops = node.work_ops / 1e9
    bytes_mb = (node.bytes_read + node.bytes_written) / BYTES_PER_MB
    if node.fused:
        # Q/DQ run inside the integer kernels next to them; views and constants are resolved
        # when the graph is compiled. Neither is a kernel launch on a device.
        return NodeCost(node.name, node.op_type, node.precision, None, node.precision,
                        work_gops, bytes_mb, 0.0, "fused")
    nbytes = node.bytes_read + node.bytes_written

    def time(u: ComputeUnit, precision: str) -> tuple[float, str]:
        return roofline_ms(node.work_ops, nbytes, u, precision, bandwidth)

    able = [u for u in allowed if u.supports_op(node.op_type)
            and u.supports_precision(node.precision)]
    if able:
        best = min(able, key=lambda u: time(u, node.precision)[0])
        t, bound = time(best, node.precision)
        # A forced unit is the caller's choice: only automatic placement reports lost speed.
        lost = _lost_faster(node, best, t, profile, time) if asked == "auto" else None
        return NodeCost(node.name, node.op_type, node.precision, best.name, node.precision,
                        work_gops, bytes_mb, t, bound, lost)
    cpu, precision = _fallback(node, profile)
    t, bound = time(cpu, precision)
    where = "no unit runs" if asked == "auto" else f"{asked} cannot run"
    why = "; ".join(_why_not(u, node) for u in allowed)
    reason = (f"{where} {node.op_type} at {node.precision} ({why}); "
              f"fell back to {cpu.name} at {precision}")
    return NodeCost(node.name, node.op_type, node.precision, cpu.name, precision, work_gops,
                    bytes_mb, t, bound, reason)


def _fallback(node: NodeFacts, profile: DeviceProfile) -> tuple[ComputeUnit, str]:
    """The CPU and the nearest precision at or above the node's that it offers."""
    cpus = [u for u in profile.units if u.kind == "cpu"] or list(profile.units)
    cpu = next((u for u in cpus if u.supports_op(node.op_type)), cpus[0])
    for p in FALLBACK_LADDER[FALLBACK_LADDER.index(node.precision):]:
        if cpu.supports_precision(p):
            return cpu, p
    # The CPU offers only narrower precisions: use its widest (a profile oddity, not a crash).
    return cpu, max(cpu.peak_gops, key=FALLBACK_LADDER.index)


def _why_not(u: ComputeUnit, node: NodeFacts) -> str:
    problems = []
    if not u.supports_op(node.op_type):
        problems.append(f"does not list {node.op_type}")
    if not u.supports_precision(node.precision):
        problems.append(f"has no {node.precision}")
    return f"{u.name} " + " and ".join(problems)


def _lost_faster(node: NodeFacts, chosen: ComputeUnit, t: float, profile: DeviceProfile,
                 time: _TimeFn) -> str | None:
    """Why a unit that would run ``node`` faster than ``chosen`` did not get it, if one would.

    Only units that have the node's precision are weighed (their time is then known); a unit
    that lacks the precision is not a lost opportunity but a different model.
    """
    faster = [(time(u, node.precision)[0], u) for u in profile.units
              if u is not chosen and u.supports_precision(node.precision)
              and time(u, node.precision)[0] < t]
    if not faster:
        return None
    # Units with the precision and a shorter time were left out for lacking the op.
    best_t, best = min(faster, key=lambda x: x[0])
    return (f"{best.name} would take {best_t:.4g} ms but does not list {node.op_type}; "
            f"placed on {chosen.name} ({t:.4g} ms)")
