"""Workloads: real models with their inputs, evaluation data and quality metric.

Workloads are found through a small registry keyed by name; each module is imported only when
its workload is used, so listing names stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.errors import unknown_name

if TYPE_CHECKING:
    from harness.core.types import WorkloadRef
    from harness.workloads.base import Workload

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "digits_cnn": "harness.workloads.digits:DigitsCNN",
    "minilm": "harness.workloads.minilm:MiniLM",
    "ppocr_det": "harness.workloads.ppocr:PPOCRDet",
    "ppocr_rec": "harness.workloads.ppocr:PPOCRRec",
    "yolov8n_det": "harness.workloads.yolov8n:YOLOv8nDet",
}


def registered() -> list[str]:
    """Names of the built-in workloads."""
    return sorted(_REGISTRY)


def get_workload(ref: WorkloadRef, *, eval_size: str = "small") -> Workload:
    """The workload a suite entry names: a registered one, or a user's ONNX file.

    ``eval_size`` ("small" or "full") picks how much evaluation data its metric uses.
    """
    from harness.workloads.base import EVAL_SIZES

    if eval_size not in EVAL_SIZES:
        raise unknown_name("evaluation size", eval_size, EVAL_SIZES)
    workload: Workload
    if ref.onnx is not None:
        from harness.workloads.onnxfile import OnnxFileWorkload

        workload = OnnxFileWorkload(name=ref.name, path=ref.onnx)
    else:
        if ref.name not in _REGISTRY:
            raise unknown_name("workload", ref.name, _REGISTRY)
        module, cls = _REGISTRY[ref.name].split(":")
        workload = getattr(importlib.import_module(module), cls)()
    workload.eval_size = eval_size
    return workload
