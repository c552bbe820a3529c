"""Workloads: real models with their inputs, evaluation data and quality metric.

Workloads are registered in :data:`WORKLOADS` by name, each as a lazy ``"module:Class"``: a
module is imported only when its workload is used, so listing names stays cheap. A test or a
plugin adds one with ``WORKLOADS.registered(name, cls)``; :func:`get_workload` finds it there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import unknown_name
from harness.plugins import load_plugin
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.core.types import WorkloadRef
    from harness.workloads.base import Workload

# name -> a Workload subclass (constructed with no arguments)
WORKLOADS: Registry[type[Workload]] = Registry("workload")
WORKLOADS.register("digits_cnn", "harness.workloads.digits:DigitsCNN")
WORKLOADS.register("minilm", "harness.workloads.minilm:MiniLM")
WORKLOADS.register("ppocr_det", "harness.workloads.ppocr:PPOCRDet")
WORKLOADS.register("ppocr_rec", "harness.workloads.ppocr:PPOCRRec")
WORKLOADS.register("yolov8n_det", "harness.workloads.yolov8n:YOLOv8nDet")
WORKLOADS.register("smollm2", "harness.workloads.smollm2:SmolLM2")


def registered() -> list[str]:
    """Names of the registered workloads, sorted."""
    return sorted(WORKLOADS.names())


def get_workload(ref: WorkloadRef, *, eval_size: str = "small") -> Workload:
    """The workload a suite entry names: a registered one, or a user's ONNX or .tflite file.

    ``eval_size`` ("small" or "full") picks how much evaluation data its metric uses.
    """
    from harness.workloads.base import EVAL_SIZES

    if eval_size not in EVAL_SIZES:
        raise unknown_name("evaluation size", eval_size, EVAL_SIZES)
    workload: Workload
    if ref.onnx is not None:
        from harness.workloads.onnxfile import OnnxFileWorkload

        workload = OnnxFileWorkload(name=ref.name, path=ref.onnx, shapes=ref.shape_map)
    elif ref.tflite is not None:
        from harness.workloads.tflitefile import TfliteFileWorkload

        workload = TfliteFileWorkload(name=ref.name, path=ref.tflite)
    else:
        workload = load_plugin(WORKLOADS, ref.name)()
    workload.eval_size = eval_size
    return workload
