"""PyTorch eager on the CPU: artifacts written by :func:`save`, a pickled module + input names.

The whole ``nn.Module`` is pickled (``torch.save``) rather than a TorchScript trace or an
``ExportedProgram``: it loads in a fresh worker without any training (unpickling needs only
the module's classes importable: torch's own for the digits CNN), and it runs in eager mode,
which is what the level promises. ``torch.export`` cannot take
``torch.ao`` dynamically quantized Linear layers (their packed-params objects do not flatten),
and ``torch.jit`` is deprecated in torch 2.13.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch  # this module is imported only to run (or inspect) a PyTorch artifact

from harness.runtimes import Feeds, Loaded

FORMAT = "edge-harness-torch/1"


def save(module: torch.nn.Module, *, input_names: list[str], out: Path) -> None:
    """Write ``module`` (in eval mode) with the names of its positional inputs."""
    torch.save({"format": FORMAT, "module": module.eval(), "input_names": input_names}, out)


def load_module(artifact: Path) -> tuple[torch.nn.Module, list[str]]:
    """The module and its input names. Unpickling runs code: only for artifacts this harness
    built into its own content-addressed cache."""
    with warnings.catch_warnings():
        # Quantized tensors unpickle through TypedStorage and the quantized-tensor
        # constructors, which torch 2.13 deprecates (they still work).
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        payload = torch.load(artifact, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{artifact}: not a {FORMAT} artifact")
    return payload["module"].eval(), list(payload["input_names"])


def load(artifact: Path, *, threads: int) -> Loaded:
    """The module on the CPU in eager mode; ``threads`` intra-op threads, 1 inter-op."""
    if threads:
        torch.set_num_threads(threads)
        # only settable before the first parallel work in the process
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    # The worker process only does inference: no autograd bookkeeping in the timed calls.
    torch.set_grad_enabled(False)
    module, names = load_module(artifact)

    def timing_call(_: Any, feeds: Feeds) -> Any:
        return module(*[torch.from_numpy(feeds[n]) for n in names])

    def run(feeds: Feeds) -> list[np.ndarray]:
        out = timing_call(None, feeds)
        outs = out if isinstance(out, tuple | list) else [out]
        return [o.detach().numpy() for o in outs]

    return Loaded(runtime="torch", version=torch.__version__,
                  providers=[f"cpu (quantized engine {torch.backends.quantized.engine})"],
                  run=run, timing_call=timing_call)
