"""Levels run by PyTorch eager: the workload's (pruned) torch model, quantized by torch.

Each level's :class:`TorchQuantizer` is registered in :data:`harness.variants.QUANTIZERS`, like
the ONNX Runtime levels of :mod:`harness.compress.quantize`. Each level also names its *ONNX
twin*: the same recipe applied to the fp32 ONNX export with onnxruntime's
tools, which the emulator reads to predict the device (it reads ONNX graphs only). The twin
has the same ops at the same precisions; it is never what the torch row measures on the host.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# TWIN_FILE: the file name the torch artifact format costs in the emulator.
from harness.artifacts.formats import TWIN_FILE
from harness.plugins import load_plugin
from harness.variants import QUANTIZERS, QuantSpec

if TYPE_CHECKING:
    import torch



def _fp32(model: torch.nn.Module) -> torch.nn.Module:
    return model


def _int8_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights for ``nn.Linear`` (per tensor), activations quantized per call (fbgemm).

    ``torch.ao.quantization.quantize_dynamic`` only handles Linear/LSTM/GRU layers: convs
    stay fp32. torchao (its successor) was tried: torchao 0.18 quantizes on CPU but runs
    through tensor-subclass dispatch (about 15x slower than these fbgemm kernels on a small
    MLP) and loads CUDA extensions on import, so the still-working torch.ao path is used.
    """
    import torch
    from torch import nn

    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.ao.quantization (moving to torchao) and quantized
        # tensor constructors; both still work, the warnings are expected here.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        q: torch.nn.Module = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8, inplace=False)
    return q


def _twin_copy(fp32: Path, out: Path) -> None:
    shutil.copy(fp32, out)


def _twin_int8_dynamic(fp32: Path, out: Path) -> None:
    """ORT dynamic int8 on the Linear layers only (MatMul/Gemm), as torch quantizes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from harness.compress.quantize import _preprocess, _quiet_ort_logging

    pre = out.with_name("twin-preprocessed.onnx")
    with _quiet_ort_logging():
        _preprocess(fp32, pre)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=False,
                         op_types_to_quantize=["MatMul", "Gemm"])
    pre.unlink()


@dataclass(frozen=True)
class TorchQuantizer:
    """A level PyTorch runs: how it quantizes the torch model, and how it writes the ONNX twin
    (the same recipe on the fp32 ONNX export) the emulator reads."""

    quantize_model: Callable[[torch.nn.Module], torch.nn.Module]
    twin: Callable[[Path, Path], None]  # (fp32 ONNX, out)


TORCH_FP32 = TorchQuantizer(_fp32, _twin_copy)
TORCH_INT8_DYNAMIC = TorchQuantizer(_int8_dynamic, _twin_int8_dynamic)


def build_torch_artifact(model: torch.nn.Module, spec: QuantSpec, *, input_names: list[str],
                         fp32_onnx: Path, out_dir: Path) -> Path:
    """Write ``model.pt`` (the quantized module) and its ONNX twin into ``out_dir``."""
    from harness.runtimes import artifact_file
    from harness.runtimes.torch import save

    quantizer: TorchQuantizer = load_plugin(QUANTIZERS, spec.level)
    if not isinstance(quantizer, TorchQuantizer):
        raise ValueError(f"{spec.name} is built from ONNX by harness.compress.quantize, "
                         "not from the PyTorch model")
    out = out_dir / artifact_file("torch")
    save(quantizer.quantize_model(model), input_names=input_names, out=out)
    quantizer.twin(fp32_onnx, out_dir / TWIN_FILE)
    return out
