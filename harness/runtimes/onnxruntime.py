"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort  # this module is imported only to run an ONNX artifact

from harness.runtimes import Feeds, Loaded


def load(artifact: Path, *, threads: int) -> Loaded:
    """An ``InferenceSession`` on the CPU provider; ``threads`` intra-op threads, 1 inter-op."""

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), sess_options=opts,
                                   providers=["CPUExecutionProvider"])

    def run(feeds: Feeds) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, feeds)]

    return Loaded(runtime="onnxruntime", version=ort.__version__,
                  providers=list(session.get_providers()), run=run, timing_call=session.run)
