"""PyTorch -> ONNX export with the settings this stack needs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

OPSET = 17
# onnx >= 1.23 writes IR 14 by default, which onnxruntime 1.31 cannot load.
MAX_IR_VERSION = 10


def export_onnx(model: torch.nn.Module, example: dict[str, np.ndarray], out: Path) -> None:
    """Export with the legacy (TorchScript) exporter and a dynamic batch dimension.

    The dynamo exporter's graphs (``torch.onnx.export(..., dynamo=True)``) can fail the shape
    inference of onnxruntime's quantizers (``quantize_dynamic``), so the legacy path is used on
    purpose.
    """
    import onnx
    import torch

    names = list(example)
    args = tuple(torch.from_numpy(example[n]) for n in names)
    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation (and that of helpers it uses)
        # on every call; it is chosen on purpose, so those warnings are noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(), args, str(out), dynamo=False, opset_version=OPSET,
            input_names=names, output_names=["output"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
        )
    proto = onnx.load(str(out))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, str(out))
