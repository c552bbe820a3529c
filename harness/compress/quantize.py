"""Quantization with onnxruntime's own tools, picked from a registry keyed by level name."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness.variants import QUANT_LEVELS, QuantSpec

Feeds = dict[str, np.ndarray]
Quantizer = Callable[[Path, Path, list[Feeds]], None]


@contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    # onnxruntime.quantization logs a "consider pre-processing" warning through the root
    # logger on every call; we do pre-process, so it is noise in a sweep's progress output.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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
        if "Incomplete symbolic shape inference" not in str(exc):
            raise
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _fp32(src: Path, dst: Path, calibration: list[Feeds]) -> None:
    shutil.copy(src, dst)


def _int8_dynamic(src: Path, dst: Path, calibration: list[Feeds]) -> None:
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


def _int8_static(src: Path, dst: Path, calibration: list[Feeds]) -> None:
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
        raise ValueError("int8-static needs calibration inputs")
    pre = dst.with_name("preprocessed.onnx")
    _preprocess(src, pre)
    quantize_static(
        str(pre), str(dst), Reader(calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    pre.unlink()


QUANTIZERS: dict[str, Quantizer] = {
    "fp32": _fp32,
    "int8-dynamic": _int8_dynamic,
    "int8-static": _int8_static,
}
assert set(QUANTIZERS) == set(QUANT_LEVELS), "every declared level needs a quantizer"


def quantize(src: Path, dst: Path, spec: QuantSpec, *, calibration: list[Feeds]) -> None:
    """Write the ``spec``-quantized version of ``src`` to ``dst``."""
    with _quiet_ort_logging():
        QUANTIZERS[spec.name](src, dst, calibration)
