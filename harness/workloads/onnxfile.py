"""A user's own ONNX file as a workload: latency, size and device figures, no quality metric."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Workload

_CALIBRATION_BATCHES = 16


class OnnxFileWorkload(Workload):
    """Benchmarks an ONNX model as given; inputs are seeded random data of the right shape."""

    def __init__(self, *, name: str, path: Path):
        self.name = name
        self.path = path

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"workload": "onnx-file", "sha256": digest}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        import onnx

        from harness.compress.prune import prune_onnx

        # load + save (rather than copy) pulls any external data files in with the model;
        # protobuf cannot hold more than 2 GiB, so big models keep their weights outside.
        model = prune_onnx(onnx.load(str(self.path)), prune)
        big = model.ByteSize() > 1_800_000_000
        onnx.save(model, str(out), save_as_external_data=big,
                  location=out.name + ".data" if big else None)

    def _random_feeds(self, seed: int) -> Feeds:
        import onnx

        rng = np.random.default_rng(seed)
        model = onnx.load(str(self.path), load_external_data=False)
        feeds: Feeds = {}
        inits = {i.name for i in model.graph.initializer}
        for inp in model.graph.input:
            if inp.name in inits:
                continue
            t = inp.type.tensor_type
            # Symbolic or unknown dims (batch, sequence) become 1: one request at a time, as
            # an app runs it.
            shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                     for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
            if np.issubdtype(dtype, np.floating):
                feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feeds[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
        return feeds

    def timing_inputs(self) -> Feeds:
        return self._random_feeds(0)

    def calibration_inputs(self) -> list[Feeds]:
        return [self._random_feeds(1 + i) for i in range(_CALIBRATION_BATCHES)]
