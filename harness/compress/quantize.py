"""Quantization with onnxruntime's own tools, one per level of the registry.

The quantizer of each level is registered in :data:`harness.variants.QUANTIZERS`, with the
level's description. Every quantizer takes ``(src, dst, spec, calibration)``: the fp32 ONNX
model, where to write the result, the level as written (its parameter, e.g. the int4 block
size, is ``spec.param``) and calibration inputs from the workload's training split. A level
a model cannot take raises :class:`harness.errors.Unsupported` with the reason, which the
sweep records as a row.
Levels run by PyTorch are built by :mod:`harness.compress.torch_quant` instead.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# ONNX metadata_props keys the quantizers write, read back into result rows by the artifact
# format (harness.artifacts.formats).
from harness.artifacts.formats import META_FLOAT_NODES, META_SENSITIVITY, onnx_quant_metadata
from harness.errors import Unsupported
from harness.plugins import load_plugin
from harness.variants import QUANTIZERS, QuantSpec

if TYPE_CHECKING:
    import onnx

Feeds = dict[str, np.ndarray]
Quantizer = Callable[[Path, Path, QuantSpec, list[Feeds]], None]


# Ops int8 QDQ quantizes the weights of: the candidates of the mixed-precision search.
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Calibration inputs used by the histogram methods and by the sensitivity search: histogram
# collection over every activation is the slow part (seconds per 32 inputs on small models),
# and ranges from 32 images already settle.
_HISTOGRAM_CALIBRATION = 32
_SENSITIVITY_INPUTS = 16


@contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    # onnxruntime.quantization logs a "consider pre-processing" warning through the root
    # logger on every call; we do pre-process, so it is noise in a sweep's progress output.
    # The MatMulNBits quantizer logs every node it visits at INFO on its own logger.
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization"),
               logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _preprocess(src: Path, dst: Path) -> None:
    """ORT's recommended pre-processing: symbolic shape inference and graph optimisation."""
    import contextlib
    import tempfile

    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # When symbolic inference gives up, ORT dumps its partial model (plus a ~model-sized
        # external data file) into the working directory: keep that out of the user's tree.
        with tempfile.TemporaryDirectory(prefix="harness-shape-") as tmp, contextlib.chdir(tmp):
            quant_pre_process(str(src.resolve()), str(dst.resolve()), skip_symbolic_shape=False)
    except Exception as exc:
        # Symbolic inference gives up on some graphs with dynamic axes (MiniLM's batch x
        # sequence, YOLOv8's computed anchor count); ONNX's own shape inference is enough
        # for the quantizers there.
        if "symbolic shape inference" not in str(exc):
            raise
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _session(model: Path | bytes) -> Any:
    """A quiet CPU session with ONNX Runtime's default thread count (as these always had)."""
    from harness.runtimes.onnxruntime import cpu_session

    return cpu_session(model, quiet=True)


def quantize_fp32(src: Path, dst: Path, spec: QuantSpec, calibration: list[Feeds]) -> None:
    shutil.copy(src, dst)


# "Could not find an implementation for Conv(11) node with name '/0/Conv'", or an op whose
# schema has no float16 at all: "Type (tensor(float16)) of input parameter (x) of operator
# (Celu) in node (n) is invalid."
_NO_KERNEL = re.compile(r"implementation for (\w+)\(\d+\) node|of operator \((\w+)\) in node")


def quantize_fp16(src: Path, dst: Path, spec: QuantSpec, calibration: list[Feeds]) -> None:
    """float16 weights and arithmetic; graph inputs and outputs stay fp32 (keep_io_types).

    ORT's CPU provider lacks fp16 kernels for some ops (it depends on the build and the CPU),
    and some ops have no fp16 in their schema (Celu); such ops are put on the converter's
    block list, so they run in fp32 between Cast nodes,
    until the model loads. Which ops that was is recorded in the metadata.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked: list[str] = []
    for _ in range(32):  # bounded: each round blocks one more op type
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                         op_block_list=[*DEFAULT_OP_BLOCK_LIST, *blocked])
        try:
            _session(model.SerializeToString())
        except Exception as exc:
            m = _NO_KERNEL.search(str(exc))
            op = m and (m.group(1) or m.group(2))
            if not op or op in blocked:
                raise
            blocked.append(op)
            continue
        if blocked:
            _set_meta(model, {META_FLOAT_NODES: json.dumps(
                [n.name for n in model.graph.node if n.op_type in blocked])})
        onnx.save(model, str(dst))
        return
    raise Unsupported("fp16: ONNX Runtime's CPU provider has no fp16 kernel for ops "
                      f"{', '.join(blocked)}")


def quantize_int8_dynamic(src: Path, dst: Path, spec: QuantSpec,
                          calibration: list[Feeds]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    pre = dst.with_name("preprocessed.onnx")
    _preprocess(src, pre)
    quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=False)
    pre.unlink()


class _Reader:
    """A ``CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: list[Feeds]):
        self._it = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._it, None)


def _static_op_types(model_path: Path) -> list[str] | None:
    """Which op types static int8 quantizes: ORT's default set for graphs with convolutions,
    only the weight ops' inputs (MatMul/Gemm) otherwise.

    ORT's default set also puts QDQ around pools, activations and elementwise ops, which its
    CNN fusions use (on the digits CNN it halves the predicted device latency). In transformer
    graphs it also quantizes the attention-mask arithmetic (an Add of float32's most negative
    value), whose range int8 cannot represent: all-MiniLM-L6-v2 drops to 0.47 cosine to fp32
    that way, and to 0.95 with MatMul/Gemm (and embedding Gather) inputs only, ORT's recipe
    for transformers.
    """
    import onnx

    ops = {n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    # Gather too: embedding tables are most of a small encoder's weights.
    return None if ops & {"Conv", "ConvTranspose"} else [*_WEIGHT_OPS, "Gather"]


def _static_qdq(pre: Path, dst: Path, calibration: list[Feeds], *, method: str,
                nodes_to_exclude: list[str] | None = None,
                calibration_cache: Path | None = None) -> None:
    """QDQ, per-channel int8 weights and int8 activations, calibrated by ``method``.

    ``calibration_cache``: a file for the calibrated ranges; when it exists calibration is
    skipped (ranges come from the float model, so they hold whatever nodes are excluded).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Reader, CalibrationDataReader):
        pass

    if not calibration:
        raise ValueError("static quantization needs calibration inputs")
    # No entropy level: quantize_static gives CalibrationMethod.Entropy a fixed 128-bin
    # histogram, and with one outlier every ordinary value lands in its first bin, so the
    # KL search returns the MinMax range (checked on the outlier model of the tests).
    calib_method = {"minmax": CalibrationMethod.MinMax,
                    "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {}
    if method != "minmax":
        calibration = calibration[:_HISTOGRAM_CALIBRATION]
    if method == "percentile":
        # Clip the top 0.001% of |x| (ORT's default, stated so the level does not drift);
        # the histogram keeps ORT's 2048 bins (quantize_static passes no bin option).
        extra = {"CalibPercentile": 99.999}
    try:
        quantize_static(
            str(pre), str(dst), Reader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=calib_method, nodes_to_exclude=nodes_to_exclude or [],
            op_types_to_quantize=_static_op_types(pre), extra_options=extra,
            calibration_cache_path=calibration_cache,
        )
    except ValueError as exc:
        if "not finite" in str(exc):  # e.g. a tensor that overflows to inf in calibration
            raise Unsupported(f"static int8 calibration: {exc}") from exc
        raise


def _int8_static_with(method: str) -> Quantizer:
    def quantizer(src: Path, dst: Path, spec: QuantSpec, calibration: list[Feeds]) -> None:
        if not calibration:
            raise ValueError(f"{spec.name} needs calibration inputs")
        pre = dst.with_name("preprocessed.onnx")
        _preprocess(src, pre)
        _static_qdq(pre, dst, calibration, method=method)
        pre.unlink()

    return quantizer


quantize_int8_static = _int8_static_with("minmax")
quantize_int8_static_percentile = _int8_static_with("percentile")


# ----------------------------------------------------------------------------- int4


def _gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite ``Gemm(A, B, C)`` with a constant B as ``MatMul(A, B') + C``, in place.

    MatMulNBits replaces MatMul only, while the legacy exporter writes every ``nn.Linear`` on
    2-D inputs as Gemm (transB=1). A Gemm with alpha = beta = 1 and no transposed A is exactly
    a MatMul by the (transposed) weight plus the bias, so the rewrite changes no arithmetic
    and lets int4 reach the Linear layers of CNN heads. Returns how many Gemms were rewritten.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
        w_name = node.input[1] + "_kn"
        model.graph.initializer.append(numpy_helper.from_array(w, w_name))
        name = node.name or f"gemm_{rewritten}"
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = node.output[0] + "_matmul" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out],
                                          name=name + "_MatMul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                              name=name + "_Add"))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    # drop initializers nothing reads any more (the transposed-away Gemm weights)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return rewritten


def quantize_int4(src: Path, dst: Path, spec: QuantSpec, calibration: list[Feeds]) -> None:
    """4-bit weight-only (MatMulNBits), symmetric, blocks of ``spec.param`` along K.

    Only MatMuls with a constant 2-D weight whose K is a multiple of 16 take it; everything
    else keeps fp32, and a model with no such MatMul is :class:`Unsupported`.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    block = int(spec.param or 32)
    model = onnx.load(str(src))
    _gemm_to_matmul(model)
    inits = {i.name: i for i in model.graph.initializer}
    candidates = [n for n in model.graph.node if n.op_type == "MatMul"
                  and n.input[1] in inits and len(inits[n.input[1]].dims) == 2]
    if not candidates:
        raise Unsupported("int4 is weight-only MatMulNBits: no MatMul to quantize "
                          "(no MatMul or Gemm with a constant 2-D weight)")
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block, is_symmetric=True)
    quantizer.process()
    out = quantizer.model.model
    if not any(n.op_type == "MatMulNBits" for n in out.graph.node):
        raise Unsupported(f"int4: ORT's MatMulNBits quantizer took none of the "
                          f"{len(candidates)} MatMul(s) (block size {block})")
    onnx.save(out, str(dst))


# ------------------------------------------------------------------ mixed precision


def _rel_l2(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Relative L2 error of all outputs, concatenated: ||got - ref|| / ||ref||."""
    r = np.concatenate([np.asarray(a, np.float64).ravel() for a in ref])
    g = np.concatenate([np.asarray(a, np.float64).ravel() for a in got])
    return float(np.linalg.norm(g - r)) / max(float(np.linalg.norm(r)), 1e-12)


def _outputs(model: Path, inputs: list[Feeds]) -> list[np.ndarray]:
    sess = _session(model)
    return [o for f in inputs for o in sess.run(None, f)]


def node_sensitivity(pre: Path, calibration: list[Feeds], *, work: Path,
                     calibration_cache: Path | None = None) -> dict[str, float]:
    """Each quantizable node's sensitivity: the relative L2 error of the model's outputs
    (on a few calibration inputs) when that node *alone* is int8-quantized (static QDQ,
    MinMax, the same recipe as the final model), all else in fp32.

    This is the measurement the level is defined by, rather than the cheaper "quantize all,
    then blame each node's local error", because local errors do not say how much of it
    survives to the outputs (a node before a saturating nonlinearity barely matters, one at
    the end matters fully). It costs one quantization and one short run per candidate
    (calibration runs once when ``calibration_cache`` is given).
    """
    import onnx

    model = onnx.load(str(pre))
    inits = {i.name for i in model.graph.initializer}
    names = [n.name for n in model.graph.node
             if n.op_type in _WEIGHT_OPS and len(n.input) > 1 and n.input[1] in inits]
    if len(set(names)) != len(names) or not all(names):
        raise Unsupported("int8-mixed needs unique node names to exclude nodes by name")
    probe = calibration[:_SENSITIVITY_INPUTS]
    ref = _outputs(pre, probe)
    out: dict[str, float] = {}
    for name in names:
        one = work / "one-node.onnx"
        # calibrated once, on the first candidate; the others reuse the cached ranges
        _static_qdq(pre, one, calibration, method="minmax",
                    nodes_to_exclude=[n for n in names if n != name],
                    calibration_cache=calibration_cache)
        out[name] = _rel_l2(ref, _outputs(one, probe))
        one.unlink()
    return out


def float_share_count(share_pct: int, n_nodes: int) -> int:
    """How many of ``n_nodes`` a level keeping ``share_pct`` % in float keeps: rounded up, so
    any nonzero share keeps at least one node."""
    return min(n_nodes, math.ceil(share_pct * n_nodes / 100 - 1e-9))


def quantize_int8_mixed(src: Path, dst: Path, spec: QuantSpec,
                        calibration: list[Feeds]) -> None:
    """int8-static (QDQ, MinMax) with the most sensitive ``spec.param`` % of the quantizable
    nodes left in float; the kept nodes and every node's sensitivity go in the metadata."""
    import onnx

    if not calibration:
        raise ValueError(f"{spec.name} needs calibration inputs")
    pre = dst.with_name("preprocessed.onnx")
    _preprocess(src, pre)
    cache = dst.with_name("calibration.json")
    sens = node_sensitivity(pre, calibration, work=dst.parent, calibration_cache=cache)
    if not sens:
        raise Unsupported("int8-mixed: no Conv/Gemm/MatMul with a constant weight to quantize")
    keep = float_share_count(int(spec.param or 0), len(sens))
    ranked = sorted(sens, key=lambda n: sens[n], reverse=True)
    excluded = ranked[:keep]
    _static_qdq(pre, dst, calibration, method="minmax", nodes_to_exclude=excluded,
                calibration_cache=cache)
    pre.unlink()
    cache.unlink()
    model = onnx.load(str(dst))
    _set_meta(model, {META_FLOAT_NODES: json.dumps(excluded),
                      META_SENSITIVITY: json.dumps({n: round(sens[n], 6) for n in ranked})})
    onnx.save(model, str(dst))


def _set_meta(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    props = {p.key: p for p in model.metadata_props}
    for key, value in entries.items():
        if key in props:
            props[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def quant_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """What the quantizer recorded in the model: ``float_nodes`` (list) and ``sensitivity``."""
    return onnx_quant_metadata(model)


def quantize(src: Path, dst: Path, spec: QuantSpec, *, calibration: list[Feeds]) -> None:
    """Write the ``spec``-quantized version of ``src`` to ``dst`` (ONNX Runtime levels)."""
    if spec.runtime != "onnxruntime":
        raise ValueError(f"{spec.name} is built from the PyTorch model, not from ONNX")
    quantizer: Quantizer = load_plugin(QUANTIZERS, spec.level)
    with _quiet_ort_logging():
        quantizer(src, dst, spec, calibration)
