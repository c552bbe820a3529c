"""PyTorch -> ONNX export with the settings this stack needs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

OPSET = 17
# onnx >= 1.23 writes IR 14 by default, which onnxruntime 1.31 cannot load.
MAX_IR_VERSION = 10

BATCH: Mapping[int, str] = {0: "batch"}


def export_onnx(model: torch.nn.Module, example: Mapping[str, np.ndarray], out: Path, *,
                output_names: Sequence[str] = ("output",),
                input_axes: Mapping[int, str] | None = BATCH,
                output_axes: Mapping[int, str] | None = BATCH) -> None:
    """Export ``model`` (called with ``example``'s arrays, in order, named by its keys) with the
    legacy (TorchScript) exporter at :data:`OPSET`, and clamp the file's IR version to
    :data:`MAX_IR_VERSION` so onnxruntime can load it.

    ``input_axes`` / ``output_axes``: the dynamic dimensions of every input / output (default
    a dynamic batch dimension); None for none, so every dimension is fixed. The dynamo
    exporter's graphs (``torch.onnx.export(..., dynamo=True)``) can fail the shape inference of
    onnxruntime's quantizers (``quantize_dynamic``), so the legacy path is used on purpose.
    """
    import onnx
    import torch

    names = list(example)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    dynamic_axes: dict[str, dict[int, str]] = {}
    if input_axes:
        dynamic_axes.update({n: dict(input_axes) for n in names})
    if output_axes:
        dynamic_axes.update({n: dict(output_axes) for n in output_names})
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter announces its own deprecation (and that of helpers it uses) on
        # every call, and transformers warns about tracing its control flow; the exporter is
        # chosen on purpose, so those warnings are noise here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), args, str(out), dynamo=False, opset_version=OPSET,
            input_names=names, output_names=list(output_names),
            dynamic_axes=dynamic_axes or None)
    proto = onnx.load(str(out), load_external_data=False)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, str(out))
