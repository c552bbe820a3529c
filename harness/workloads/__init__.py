"""Workloads: real models with their inputs, evaluation data and quality metric.

Workloads are found through a small registry keyed by name; each module is imported only when
its workload is used, so listing names stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.errors import unknown_name

if TYPE_CHECKING:
    from harness.suites import WorkloadRef
    from harness.workloads.base import Workload

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "digits_cnn": "harness.workloads.digits:DigitsCNN",
}


def registered() -> list[str]:
    """Names of the built-in workloads."""
    return sorted(_REGISTRY)


def get_workload(ref: WorkloadRef) -> Workload:
    """The workload a suite entry names: a registered one, or a user's ONNX file."""
    if ref.onnx is not None:
        from harness.workloads.onnxfile import OnnxFileWorkload

        return OnnxFileWorkload(name=ref.name, path=ref.onnx)
    if ref.name not in _REGISTRY:
        raise unknown_name("workload", ref.name, _REGISTRY)
    module, cls = _REGISTRY[ref.name].split(":")
    workload: Workload = getattr(importlib.import_module(module), cls)()
    return workload
