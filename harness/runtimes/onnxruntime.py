"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort  # this module is imported only to run an ONNX artifact

from harness.runtimes import Feeds, Loaded


def cpu_session(model: Path | str | bytes, *, threads: int = 0,
                quiet: bool = False) -> ort.InferenceSession:
    """An ``InferenceSession`` of ``model`` (a file or serialized bytes) on the CPU provider.

    ``threads``: intra-op threads, with 1 inter-op thread (0 leaves both to ONNX Runtime's
    defaults). ``quiet`` drops ONNX Runtime's warnings from the log (errors only), for
    sessions that probe whether a model loads.
    """
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if quiet:
        opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def load(artifact: Path, *, threads: int) -> Loaded:
    """An ``InferenceSession`` on the CPU provider; ``threads`` intra-op threads, 1 inter-op."""
    session = cpu_session(artifact, threads=threads)

    def run(feeds: Feeds) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, feeds)]

    return Loaded(runtime="onnxruntime", version=ort.__version__,
                  providers=list(session.get_providers()), run=run, timing_call=session.run)
