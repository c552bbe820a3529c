"""A user's own ``.tflite`` file as a workload: measured as given, with seeded random inputs.

The harness does not convert, quantize or prune a TFLite model: its one level is ``as-is``
(the file itself, copied into the artifact cache by :func:`harness.build.build_as_is`), run by
LiteRT on the host and by ``benchmark_model`` on a phone. Every other level is
:class:`~harness.errors.Unsupported` with the reason. Like a user's ONNX file it has no quality
metric: the row carries latency, memory and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import Unsupported
from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Workload

_CALIBRATION_BATCHES = 16


class TfliteFileWorkload(Workload):
    """Benchmarks a ``.tflite`` model as given; inputs are seeded random data of its shapes."""

    def __init__(self, *, name: str, path: Path):
        self.name = name
        self.path = path

    def fingerprint(self) -> dict[str, Any]:
        from harness.cache import file_sha256

        return {"workload": "tflite-file", "sha256": file_sha256(self.path)}

    def tflite_file(self) -> Path:
        """The model file the ``as-is`` level copies into the cache."""
        return self.path

    def check(self) -> None:
        """Refuse a file that is not a readable TFLite model, that keeps weights in files
        beside it, or whose inputs cannot be generated (dynamic shapes, string inputs), before
        the sweep starts."""
        from harness.artifacts.tflite import check_self_contained

        check_self_contained(self.path)
        self.timing_inputs()

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        # reached by every level but as-is: each would start from an ONNX export
        raise Unsupported(f"workload {self.name!r} is a .tflite file, measured as given "
                          "(level 'as-is'): the harness does not convert, quantize or prune "
                          "TFLite models")

    def _random_feeds(self, seed: int) -> Feeds:
        from harness.artifacts.tflite import random_inputs

        return random_inputs(self.path, seed=seed)

    def timing_inputs(self) -> Feeds:
        return self._random_feeds(0)

    def calibration_inputs(self) -> list[Feeds]:
        return [self._random_feeds(1 + i) for i in range(_CALIBRATION_BATCHES)]
