"""Predicted device latency and energy of a model: a per-node roofline on the profile's units.

Each node runs on one unit, one after another, and takes

    time = max(work / (peak x efficiency[op class]), bytes / bandwidth) + dispatch + transfer

with peak at the node's precision and bandwidth the profile's DRAM bandwidth. Nodes folded into
their neighbours on a device (Q/DQ, views, constants: ``NodeFacts.fused``) take no time.

Placement (``unit="auto"``) takes the fastest of several plans: the whole graph delegated to one
unit (nodes it cannot take fall back to the CPU), or node-by-node greedy placement that puts
each node, in execution order, on the unit that finishes it soonest. Both count the transfer a
node's inputs need when they were produced on another unit (the units' hand-off cost plus the
bytes over DRAM), once per tensor and unit: later readers on that unit find it there. The app
hands inputs over on the CPU and takes outputs back there. A unit can take a node when it lists
the op, has the node's precision and, for units that need static shapes, when the node's shapes
are known. A node no unit can take falls back to the CPU at the nearest higher precision it
offers (int4 -> int8 -> fp16 -> fp32), and the reason is kept (op, precision or shape).

Pruning saves time only where hardware skips the work: removed channels shrink the graph itself;
2:4 sparse weights (recorded by harness.compress in the model's metadata) halve the work of conv
and matmul nodes on units with ``sparse_2_4``; unstructured zeros save nothing.

Energy per node = work x energy per op of the unit at that precision + bytes x DRAM energy per
byte; an inference adds the idle power over its duration. Both scale with the clock fraction
under throttling (see :mod:`harness.emulator.thermal` and :mod:`harness.emulator.sustained`).

What-if precision: ``precision="int8"`` (or fp16, int4) costs an fp32 graph as if its float
nodes ran at that precision, without quantizing it (int4 = 4-bit weights, 16-bit activations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from harness.emulator.graph import (
    BYTES_PER_MB,
    Graph,
    ModelSource,
    NodeFacts,
    TensorInfo,
    load_graph,
)
from harness.emulator.memory import MemoryPrediction, predict_memory
from harness.errors import unknown_name
from harness.profiles import ComputeUnit, DeviceProfile

# Fallback order, narrowest first: a node never runs at a narrower precision than its own.
# Holds every precision in harness.profiles.PRECISIONS (a test checks).
FALLBACK_LADDER = ("int4", "int8", "fp16", "fp32")
# What-if precision -> (weight bits, activation bits): int4 is weight-only (w4a16).
# What-if precision -> (weight bits, activation bits, precision the arithmetic runs at).
# int4 is weight-only with 16-bit activations; the unit's int4 rate is its 4-bit MAC rate.
# w8a16 (8-bit weights, 16-bit activations, as AI Hub ships many models) has no integer rate
# of its own in the profiles: its published NPU times sit at the fp16 ones (see
# harness.calibration.published), so it runs at the fp16 rate with 8-bit weight bytes.
WHAT_IF: Mapping[str, tuple[int, int, str]] = MappingProxyType({
    "fp32": (32, 32, "fp32"), "fp16": (16, 16, "fp16"), "int8": (8, 8, "int8"),
    "int4": (4, 16, "int4"), "w8a16": (8, 16, "fp16")})
_FLOAT_BITS = {"float32": 32, "float": 32, "float16": 16, "bfloat16": 16, "double": 64,
               "float64": 64}
_SPARSE_CLASSES = ("conv", "matmul")
@dataclass(frozen=True)
class NodeCost:
    """One node's predicted time and energy on the unit it was placed on."""

    name: str
    op_type: str
    op_class: str
    precision: str          # the node's precision in the model (or the what-if precision)
    unit: str | None        # the unit it runs on; None for fused nodes
    run_precision: str      # the precision it runs at there (differs after a fallback)
    work_gops: float        # 1e9 ops, after any sparsity credit
    bytes_mb: float         # MiB read + written
    compute_ms: float       # work / effective throughput (scales with the clock)
    memory_ms: float        # bytes / bandwidth (does not)
    overhead_ms: float      # dispatch (scales with the clock)
    transfer_ms: float      # inputs brought over from other units
    time_ms: float          # max(compute, memory) + overhead + transfer
    bound: str              # "compute" | "memory" | "fused"
    compute_energy_mj: float    # at full clock; scales with the clock squared
    memory_energy_mj: float
    fallback: str | None = None   # why it is not on the unit that would run it fastest
    # its inputs/outputs whose shapes are not known -> why (see Graph.unresolved_why)
    unknown_shapes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency and energy of one inference on one device, with the node breakdown."""

    device: str
    unit: str                        # the placement asked for: "auto" or a unit name
    precision: str | None            # what-if precision, None: as the model is stored
    latency_ms: float
    work_gops: float                 # totals over the nodes that run (fused ones excluded)
    bytes_mb: float
    unit_ms: Mapping[str, float]     # time per unit
    output_transfer_ms: float        # outputs handed back to the app on the CPU
    nodes: tuple[NodeCost, ...]
    fallbacks: tuple[str, ...]       # "node (op): reason" for each node with a fallback
    unknown_ops: tuple[str, ...]     # op types costed at the unknown-op rate
    unresolved: tuple[str, ...]      # tensors whose shapes were guessed
    unresolved_why: Mapping[str, str]   # tensor -> why its shape is not known
    fixed_dims: tuple[str, ...]      # dynamic input dimensions given values
    sparsity_credit: bool            # 2:4 work skipped on some node
    idle_w: float

    @property
    def main_unit(self) -> str:
        """The unit with the largest share of the time."""
        return max(self.unit_ms, key=lambda u: self.unit_ms[u])

    @cached_property
    def _per_clock(self) -> tuple[Any, Any, float, float, float, float]:
        # A sustained run asks for the latency at thousands of clock fractions: the per-node
        # terms go into arrays once (a 20k-node graph took 25 s node by node).
        import numpy as np

        c = np.array([n.compute_ms for n in self.nodes], dtype=float)
        m = np.array([n.memory_ms for n in self.nodes], dtype=float)
        return (c, m, sum(n.overhead_ms for n in self.nodes),
                sum(n.transfer_ms for n in self.nodes) + self.output_transfer_ms,
                sum(n.compute_energy_mj for n in self.nodes),
                sum(n.memory_energy_mj for n in self.nodes))

    def latency_at(self, clock_fraction: float) -> float:
        """Latency in ms when every unit runs at ``clock_fraction`` of its top clock.

        Compute and dispatch slow down with the clock; DRAM traffic and transfers do not.
        """
        import numpy as np

        f = clock_fraction
        c, m, overhead, fixed, _, _ = self._per_clock
        return float(np.maximum(c / f, m).sum()) + overhead / f + fixed

    def dynamic_energy_mj_at(self, clock_fraction: float) -> float:
        """Energy of the units and DRAM for one inference (no idle), in mJ.

        Energy per operation goes with V^2 and voltage roughly with frequency, hence f^2.
        """
        _, _, _, _, compute_mj, memory_mj = self._per_clock
        return compute_mj * clock_fraction ** 2 + memory_mj

    @property
    def energy_mj(self) -> float:
        """Energy of one inference at full clock, idle power included, in mJ."""
        return self.dynamic_energy_mj_at(1.0) + self.idle_w * self.latency_ms

    @property
    def avg_power_w(self) -> float:
        return self.energy_mj / self.latency_ms if self.latency_ms > 0 else self.idle_w


@dataclass(frozen=True)
class Emulation:
    """What the emulator predicts for one model on one device: latency, energy and memory."""

    device: str
    latency: LatencyPrediction
    memory: MemoryPrediction
    uncalibrated: tuple[str, ...]    # profile figures that rest on assumptions

    @property
    def latency_ms(self) -> float:
        return self.latency.latency_ms

    @property
    def peak_memory_mb(self) -> float:
        return self.memory.peak_memory_mb

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready digest for a result row (no per-node detail)."""
        lat, mem = self.latency, self.memory
        return {
            "device": self.device,
            "precision": lat.precision,
            "unit": lat.main_unit,
            "latency_ms": lat.latency_ms,
            "energy_mj": lat.energy_mj,
            "avg_power_w": lat.avg_power_w,
            "work_gops": lat.work_gops,
            "bytes_mb": lat.bytes_mb,
            "unit_ms": dict(lat.unit_ms),
            "weights_mb": mem.weights_mb,
            "peak_activations_mb": mem.peak_activations_mb,
            "runtime_overhead_mb": mem.runtime_overhead_mb,
            "peak_memory_mb": mem.peak_memory_mb,
            "app_cap_mb": mem.app_cap_mb,
            "fits": mem.fits,
            "headroom_mb": mem.headroom_mb,
            "fallback_nodes": len(lat.fallbacks),
            "sparsity_credit": lat.sparsity_credit,
            "unknown_ops": list(lat.unknown_ops),
            "unresolved_tensors": len(lat.unresolved),
            "fixed_dims": list(lat.fixed_dims),
            "uncalibrated": list(self.uncalibrated),
            "notes": list(self.notes),
        }

    def breakdown(self) -> list[dict[str, Any]]:
        """Per node: unit, precision, predicted time, its share of the total, fallback reason,
        and (only where some are) the node's tensors whose shapes are not known, with why."""
        total = self.latency.latency_ms or 1.0
        return [{"node": n.name, "op": n.op_type, "op_class": n.op_class,
                 "precision": n.precision, "unit": n.unit, "run_precision": n.run_precision,
                 "time_ms": n.time_ms, "share": n.time_ms / total, "bound": n.bound,
                 "work_gops": n.work_gops, "bytes_mb": n.bytes_mb,
                 "transfer_ms": n.transfer_ms, "fallback": n.fallback,
                 **({"unknown_shapes": dict(n.unknown_shapes)} if n.unknown_shapes else {})}
                for n in self.latency.nodes]

    @property
    def notes(self) -> tuple[str, ...]:
        """Caveats worth printing beside the numbers."""
        out = [f"dynamic dimension {d}" for d in self.latency.fixed_dims]
        if self.latency.latency_ms == 0:
            out.append("the graph does no work a device would run (no nodes, or only views "
                       "and identities): latency 0; the runtime's own per-call cost is not "
                       "modelled")
        if self.latency.unknown_ops:
            out.append("ops costed as 1 op per output element (not in the cost tables): "
                       + ", ".join(self.latency.unknown_ops))
        if self.latency.unresolved:
            first = self.latency.unresolved[0]
            why = self.latency.unresolved_why.get(first)
            out.append(f"{len(self.latency.unresolved)} tensor shapes could not be inferred "
                       "(dims taken as 1)" + (f"; first {first!r}: {why}" if why else ""))
        if self.latency.fallbacks:
            out.append(f"{len(self.latency.fallbacks)} nodes placed off their fastest unit")
        return tuple(out)


def _what_if(g: Graph, precision: str | None) -> tuple[list[NodeFacts], Any]:
    """Nodes re-costed at a what-if precision, and the matching tensor scale for memory."""
    if precision is None:
        return list(g.nodes), lambda t: 1.0
    if precision not in WHAT_IF:
        raise unknown_name("precision", precision, WHAT_IF)
    wbits, abits, runs_at = WHAT_IF[precision]

    def scale(t: TensorInfo) -> float:
        own = _FLOAT_BITS.get(t.dtype)
        if own is None:
            return 1.0  # integers (indices, shapes, already-quantized data) stay as they are
        return min(1.0, (wbits if t.kind == "weight" else abits) / own)

    nodes = []
    for n in g.nodes:
        if n.fused or n.precision not in ("fp32", "fp16") or n.integer:
            nodes.append(n)
            continue
        w_scale = min(1.0, wbits / (32 if n.precision == "fp32" else 16))
        a_scale = min(1.0, abits / (32 if n.precision == "fp32" else 16))
        acts_read = n.bytes_read - n.weight_bytes
        nodes.append(replace(
            n, precision=runs_at,
            bytes_read=round(n.weight_bytes * w_scale + acts_read * a_scale),
            bytes_written=round(n.bytes_written * a_scale),
            weight_bytes=round(n.weight_bytes * w_scale)))
    return nodes, scale


def predict_latency(graph_or_model: Graph | ModelSource, profile: DeviceProfile, *,
                    unit: str = "auto", precision: str | None = None) -> LatencyPrediction:
    """Predict one inference's latency and energy on ``profile`` (rules in the module doc).

    ``unit`` is ``"auto"`` or the name of a unit to run every node on that it can take; nodes it
    cannot take fall back to the CPU. With ``"auto"`` the fastest of these plans wins: node by
    node greedy placement, or the whole graph delegated to one unit with CPU fallback (what
    TFLite/QNN delegates do; greedy placement alone can lock a graph onto a slow unit to avoid
    one hand-off). ``precision`` is a what-if precision (None: as stored). Unknown names are
    :class:`~harness.errors.InputError`.
    """
    g = load_graph(graph_or_model)
    nodes, _ = _what_if(g, precision)
    if unit != "auto":
        return _plan(g, nodes, profile, (profile.unit(unit),), asked=unit, precision=precision)
    plans = [_plan(g, nodes, profile, profile.units, asked="auto", precision=precision)]
    plans += [_plan(g, nodes, profile, (u,), asked=u.name, precision=precision)
              for u in profile.units]
    best = min(plans, key=lambda p: p.latency_ms)
    return replace(best, unit="auto")


def _plan(g: Graph, nodes: list[NodeFacts], profile: DeviceProfile,
          allowed: tuple[ComputeUnit, ...], *, asked: str,
          precision: str | None) -> LatencyPrediction:
    placer = _Placer(g, profile, allowed, asked=asked)
    costs = [placer.place(n) for n in nodes]
    out_ms = placer.outputs_back()
    unit_ms: dict[str, float] = {u.name: 0.0 for u in profile.units}
    for c in costs:
        if c.unit is not None:
            unit_ms[c.unit] += c.time_ms
    running = [c for c in costs if c.bound != "fused"]
    return LatencyPrediction(
        device=profile.name,
        unit=asked,
        precision=precision,
        latency_ms=sum(c.time_ms for c in costs) + out_ms,
        work_gops=sum(c.work_gops for c in running),
        bytes_mb=sum(c.bytes_mb for c in running),
        unit_ms=MappingProxyType(unit_ms),
        output_transfer_ms=out_ms,
        nodes=tuple(costs),
        fallbacks=tuple(f"{c.name} ({c.op_type}): {c.fallback}" for c in costs if c.fallback),
        unknown_ops=g.unknown_ops,
        unresolved=g.unresolved,
        unresolved_why=g.unresolved_why,
        fixed_dims=g.fixed_dims,
        sparsity_credit=placer.sparsity_credit,
        idle_w=profile.power.idle_w.value,
    )


def emulate(model: Graph | ModelSource, profile: DeviceProfile, *, unit: str = "auto",
            precision: str | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            dim_params: Mapping[str, int] | None = None) -> Emulation:
    """Predict latency, energy and memory of ``model`` on ``profile``, reading the model once.

    ``input_shapes`` and ``dim_params`` give dynamic input dimensions values (see
    :func:`~harness.emulator.graph.load_graph`; every other dynamic dimension is 1).
    ``precision`` emulates float nodes at a what-if precision without quantizing.
    """
    if isinstance(model, Graph):
        g = model
    else:
        g = load_graph(model, input_shapes=input_shapes, dim_params=dim_params)
    _, scale = _what_if(g, precision)
    return Emulation(
        device=profile.name,
        latency=predict_latency(g, profile, unit=unit, precision=precision),
        memory=predict_memory(g, profile, scale=scale),
        uncalibrated=tuple(profile.uncalibrated()),
    )


# --------------------------------------------------------------------------- one node


def roofline_ms(work_ops: float, nbytes: float, unit: ComputeUnit, precision: str,
                bandwidth_gb_s: float, *, op_class: str = "other") -> tuple[float, str]:
    """(time in ms, "compute" | "memory") of one node on ``unit`` at ``precision``.

    Memory time uses the profile's peak DRAM bandwidth as is.
    """
    compute_ms, memory_ms = _split_ms(work_ops, nbytes, unit, precision, bandwidth_gb_s,
                                      op_class)
    bound = "compute" if compute_ms > memory_ms else "memory"
    return max(compute_ms, memory_ms) + unit.dispatch_us.value / 1e3, bound


def _split_ms(work_ops: float, nbytes: float, unit: ComputeUnit, precision: str,
              bandwidth_gb_s: float, op_class: str) -> tuple[float, float]:
    gops = unit.peak_gops[precision].value * unit.efficiency_for(op_class)
    return work_ops / (gops * 1e6), nbytes / (bandwidth_gb_s * 1e6)   # G/s -> per ms


class _Placer:
    """Places nodes in execution order, remembering where each tensor was produced."""

    def __init__(self, g: Graph, profile: DeviceProfile, allowed: tuple[ComputeUnit, ...],
                 *, asked: str):
        self.g = g
        self.profile = profile
        self.allowed = allowed
        self.asked = asked
        self.bandwidth = profile.memory.effective_bandwidth_gb_s
        self.pj_per_byte = profile.memory.dram_pj_per_byte.value
        self.units = {u.name: u for u in profile.units}
        self.cpu = next((u for u in profile.units if u.kind == "cpu"), profile.units[0])
        # Inputs arrive from the app, on the CPU.
        self.where: dict[str, str] = {t: self.cpu.name for t in g.inputs}
        self.two_four = g.sparsity_pattern == "2:4"
        self.sparsity_credit = False
        # tensor -> (unit, made by a conv/matmul kernel): for epilogue fusion
        self.produced_by: dict[str, tuple[str, bool]] = {}
        # (tensor, unit) pairs already copied over: a tensor crosses to a unit once, however
        # many of that unit's nodes read it (a KV cache read by one Slice per head).
        self.copied: set[tuple[str, str]] = set()

    def _producer_unit(self, tensor: str) -> str | None:
        return self.where.get(tensor)   # weights and constants live wherever they are used

    def _transfer_ms(self, node: NodeFacts, u: ComputeUnit) -> float:
        total = 0.0
        for t in dict.fromkeys(node.inputs):
            src = self._producer_unit(t)
            if src is None or src == u.name or (t, u.name) in self.copied:
                continue
            info = self.g.tensors.get(t)
            nbytes = info.device_nbytes if info is not None else 0
            hand = max(u.handoff_us.value, self.units[src].handoff_us.value) / 1e3
            total += hand + nbytes / (self.bandwidth * 1e6)
        return total

    def _can_take(self, u: ComputeUnit, node: NodeFacts) -> bool:
        return (u.supports_op(node.op_type) and self._has_precision(u, node)
                and (node.shape_known or not u.static_shapes))

    @staticmethod
    def _has_precision(u: ComputeUnit, node: NodeFacts) -> bool:
        # Integer index and mask arithmetic needs no float or quantized rate: an NPU without
        # fp32 runs it all the same (QNN's HTP takes int32 Equal, Cast, CumSum, Gather...).
        return (u.supports_precision(node.precision) or (node.integer and bool(u.peak_gops))
                or (node.precision == "fp32" and u.fp32_as is not None))

    @staticmethod
    def _run_precision(u: ComputeUnit, node: NodeFacts) -> str:
        """The precision ``node`` runs at on ``u``: its own; an fp32 node on a unit that runs
        fp32 as another precision (``fp32_as``: QNN's HTP runs float graphs at fp16), that
        one; for integer arithmetic on a unit without it, the unit's int8 rate (else the first
        it has), which only sets the rate of a few ops per element."""
        if u.supports_precision(node.precision):
            return node.precision
        if node.precision == "fp32" and u.fp32_as is not None and not node.integer:
            return u.fp32_as
        if not node.integer:
            return node.precision
        return next(p for p in ("int8", "fp16", "fp32", "int4", *u.peak_gops)
                    if u.supports_precision(p))

    def _dram_bytes(self, node: NodeFacts, u: ComputeUnit) -> int:
        """Bytes the node moves through DRAM on ``u``.

        Weights always stream from DRAM. Activations stay in the unit's local memory when the
        node's working set of activations fits there (an NPU tiles and keeps them in its TCM).
        """
        activations = node.bytes_read - node.weight_bytes + node.bytes_written
        if u.onchip_mb is not None and activations <= u.onchip_mb.value * BYTES_PER_MB:
            return node.weight_bytes
        return node.bytes_read + node.bytes_written

    def _fuses_into_producer(self, node: NodeFacts, u: ComputeUnit) -> bool:
        """A unary elementwise op right after a conv/matmul on the same accelerator.

        NPU and GPU compilers fold activations (ReLU, clip, sigmoid, ...) into the producing
        kernel's epilogue: no launch, no extra pass over memory.
        """
        if u.kind == "cpu" or node.op_class != "elementwise":
            return False
        acts = [t for t in node.inputs if t in self.where]
        if len(acts) != 1:
            return False
        return self.produced_by.get(acts[0]) == (u.name, True)

    def _cost_on(self, node: NodeFacts, u: ComputeUnit, precision: str,
                 fallback: str | None = None) -> NodeCost:
        work = float(node.work_ops)
        if self.two_four and u.sparse_2_4 and node.op_class in _SPARSE_CLASSES:
            work /= 2   # the unit skips the zero half of each 2:4 group
            self.sparsity_credit = True
        if self._fuses_into_producer(node, u):
            return NodeCost(
                name=node.name, op_type=node.op_type, op_class=node.op_class,
                precision=node.precision, unit=u.name, run_precision=precision,
                work_gops=work / 1e9, bytes_mb=0.0, compute_ms=0.0, memory_ms=0.0,
                overhead_ms=0.0, transfer_ms=0.0, time_ms=0.0, bound="fused",
                compute_energy_mj=work * u.energy_pj_per_op(precision).value * 1e-9,
                memory_energy_mj=0.0, fallback=fallback,
                unknown_shapes=self._unknown_shapes(node))
        nbytes = self._dram_bytes(node, u)
        if node.precision == "fp32" and precision != "fp32" and not node.integer:
            # run below fp32 (fp32_as): the runtime converted its weights and activations at
            # load, so they move at the narrower width
            nbytes = int(nbytes * WHAT_IF[precision][1] / 32)
        compute_ms, memory_ms = _split_ms(work, nbytes, u, precision, self.bandwidth,
                                          node.op_class)
        overhead_ms = u.dispatch_us.value / 1e3
        transfer_ms = self._transfer_ms(node, u)
        return NodeCost(
            name=node.name, op_type=node.op_type, op_class=node.op_class,
            precision=node.precision, unit=u.name, run_precision=precision,
            work_gops=work / 1e9, bytes_mb=nbytes / BYTES_PER_MB,
            compute_ms=compute_ms, memory_ms=memory_ms, overhead_ms=overhead_ms,
            transfer_ms=transfer_ms,
            time_ms=max(compute_ms, memory_ms) + overhead_ms + transfer_ms,
            bound="compute" if compute_ms > memory_ms else "memory",
            compute_energy_mj=work * u.energy_pj_per_op(precision).value * 1e-9,
            memory_energy_mj=nbytes * self.pj_per_byte * 1e-9,
            fallback=fallback, unknown_shapes=self._unknown_shapes(node))

    def place(self, node: NodeFacts) -> NodeCost:
        if node.fused:
            # Q/DQ run inside the integer kernels next to them; views and constants are
            # resolved when the graph is compiled. Neither is a kernel launch on a device; the
            # output lives where the input was made, except a constant (a shape read off a
            # tensor, arithmetic on it): like a weight, it lives wherever it is used.
            src = next((self._producer_unit(t) for t in node.inputs
                        if self._producer_unit(t) is not None), None)
            for t in node.outputs:
                info = self.g.tensors.get(t)
                if src is not None and (info is None or info.kind != "weight"):
                    self.where[t] = src
            return NodeCost(node.name, node.op_type, node.op_class, node.precision, None,
                            node.precision, node.work_ops / 1e9,
                            (node.bytes_read + node.bytes_written) / BYTES_PER_MB,
                            0.0, 0.0, 0.0, 0.0, 0.0, "fused", 0.0, 0.0,
                            unknown_shapes=self._unknown_shapes(node))
        able = [u for u in self.allowed if self._can_take(u, node)]
        if able:
            options = [self._cost_on(node, u, self._run_precision(u, node)) for u in able]
            best = min(options, key=lambda c: c.time_ms)
            if self.asked == "auto":
                best = replace(best, fallback=self._lost_faster(node, best))
        else:
            cpu, precision = self._fallback(node)
            where = "no unit runs" if self.asked == "auto" else f"{self.asked} cannot run"
            why = "; ".join(self._why_not(u, node) for u in self.allowed)
            best = self._cost_on(node, cpu, precision, fallback=(
                f"{where} {node.op_type} at {node.precision} ({why}); "
                f"fell back to {cpu.name} at {precision}"))
        heavy = node.op_class in ("conv", "depthwise", "matmul") and best.bound != "fused"
        if best.unit is not None:
            self.copied.update((t, best.unit) for t in node.inputs if t in self.where)
        for t in node.outputs:
            self.where[t] = best.unit or self.cpu.name
            self.produced_by[t] = (best.unit or self.cpu.name, heavy)
        return best

    def outputs_back(self) -> float:
        """Handing the outputs back to the app on the CPU."""
        total = 0.0
        for t in self.g.outputs:
            src = self.where.get(t)
            if src is None or src == self.cpu.name:
                continue
            info = self.g.tensors.get(t)
            nbytes = info.device_nbytes if info is not None else 0
            total += self.units[src].handoff_us.value / 1e3 + nbytes / (self.bandwidth * 1e6)
        return total

    def _fallback(self, node: NodeFacts) -> tuple[ComputeUnit, str]:
        """The CPU and the nearest precision at or above the node's that it offers."""
        cpus = [u for u in self.profile.units if u.kind == "cpu"] or list(self.profile.units)
        cpu = next((u for u in cpus if u.supports_op(node.op_type)), cpus[0])
        for p in FALLBACK_LADDER[FALLBACK_LADDER.index(node.precision):]:
            if cpu.supports_precision(p):
                return cpu, p
        # The CPU offers only narrower precisions: use its widest (a profile oddity).
        return cpu, max(cpu.peak_gops, key=FALLBACK_LADDER.index)

    def _unknown_shapes(self, node: NodeFacts) -> Mapping[str, str]:
        if not node.unresolved:
            return MappingProxyType({})
        why = self.g.unresolved_why
        return MappingProxyType({t: why.get(t, "not inferred") for t in node.unresolved})

    def _why_not(self, u: ComputeUnit, node: NodeFacts) -> str:
        problems = []
        if not u.supports_op(node.op_type):
            problems.append(f"op: does not list {node.op_type}")
        if not self._has_precision(u, node):
            problems.append(f"precision: has no {node.precision}")
        if u.static_shapes and not node.shape_known:
            problem = "shape: needs static shapes and this node's are not known"
            if node.unresolved:
                first = node.unresolved[0]
                more = len(node.unresolved) - 1
                problem += (f" ({first!r}: {self.g.unresolved_why.get(first, 'not inferred')}"
                            + (f"; {more} more" if more else "") + ")")
            problems.append(problem)
        return f"{u.name} " + " and ".join(problems)

    def _lost_faster(self, node: NodeFacts, chosen: NodeCost) -> str | None:
        """Why a unit that would run ``node`` faster than ``chosen`` did not get it, if one.

        Only units with the node's precision are weighed; one lacking the precision is not a
        lost opportunity but a different model.
        """
        faster = []
        for u in self.profile.units:
            if u.name == chosen.unit or not self._has_precision(u, node):
                continue
            if self._can_take(u, node):
                continue   # it could take the node and was slower, transfers included
            c = self._cost_on(node, u, self._run_precision(u, node))
            if c.time_ms < chosen.time_ms:
                faster.append(c)
        if not faster:
            return None
        best = min(faster, key=lambda c: c.time_ms)
        u = self.units[best.unit or ""]
        reason = (f"op: does not list {node.op_type}" if not u.supports_op(node.op_type)
                  else "shape: needs static shapes")
        return (f"{u.name} would take {best.time_ms:.4g} ms but {reason}; placed on "
                f"{chosen.unit} ({chosen.time_ms:.4g} ms)")
