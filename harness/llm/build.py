"""Decoder artifacts from a Hugging Face checkpoint, built by ONNX Runtime GenAI's builder.

Two cached stages, as every artifact (:mod:`harness.build`): the workload's fp32 checkpoint
(``config.json``, ``model.safetensors``, tokenizer; pruned when the level asks), keyed by the
workload's fingerprint and the pruning level; then one GenAI model directory per quantization
level, keyed by the checkpoint's content hash and the builder's recipe. The builder runs as
``python -m onnxruntime_genai.models.builder`` in a subprocess: it is a script that imports its
own modules by bare name, and a subprocess also gives its memory back.

Every built directory is probed before it is committed: a prefill of a few tokens and two decode
steps on the CPU. A level the CPU provider cannot run is :class:`~harness.errors.Unsupported`
with the runtime's own message, never a cached artifact that fails later.

fp16 needs one repair: the builder's fp16 graph (it spells attention out with ``repeat_kv`` for
the CPU) annotates the ``repeat_kv`` outputs with the symbolic dim ``sequence_length`` where
they hold the past plus the new tokens; ONNX Runtime trusts the annotation, plans to re-use a
buffer across the two, and the first decode step fails ("Shape mismatch attempting to re-use
buffer. {1,1,576} != {1,5,576}"). The annotations of intermediate tensors (``value_info``) are
optional, so the fp16 recipe drops them and ONNX Runtime infers the shapes itself; greedy tokens
then equal the fp32 build's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import Unsupported


@dataclass(frozen=True)
class BuilderRecipe:
    """One quantization level as ONNX Runtime GenAI's model builder takes it."""

    precision: str                  # the builder's --precision: fp32, fp16, int8, int4
    accuracy_level: int | None = None  # MatMulNBits: 4 = int8 activations, 1 = fp32
    default_block_size: int | None = None
    # drop the graph's intermediate shape annotations after building (see the module docstring)
    drop_value_info: bool = False

    def options(self, block_size: int | None) -> list[str]:
        """``--extra_options`` key=value pairs for this level (block size from the level)."""
        out: list[str] = []
        if self.precision in ("int4", "int8"):
            out.append(f"block_size={block_size or self.default_block_size or 32}")
            if self.accuracy_level is not None:
                out.append(f"accuracy_level={self.accuracy_level}")
        return out


# Registered as quantization levels in harness.variants (genai-*).
FP32 = BuilderRecipe("fp32")
FP16 = BuilderRecipe("fp16", drop_value_info=True)
INT8 = BuilderRecipe("int8", accuracy_level=4, default_block_size=32)
INT4 = BuilderRecipe("int4", accuracy_level=4, default_block_size=32)
INT4_A32 = BuilderRecipe("int4", accuracy_level=1, default_block_size=32)


def dir_sha256(directory: Path) -> str:
    """sha256 over the names and contents of the files of ``directory`` (sorted)."""
    import hashlib

    from harness.cache import file_sha256

    h = hashlib.sha256()
    for f in sorted(p for p in directory.iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def run_builder(checkpoint: Path, out: Path, recipe: BuilderRecipe, *,
                block_size: int | None, work_dir: Path) -> None:
    """Build ``checkpoint`` into a GenAI model directory ``out`` for the CPU provider.

    Raises a RuntimeError with the builder's last output lines when it fails.
    """
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint),
           "-o", str(out), "-p", recipe.precision, "-e", "cpu", "-c", str(work_dir)]
    opts = recipe.options(block_size)
    if opts:
        cmd += ["--extra_options", *opts]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise RuntimeError(f"onnxruntime-genai's model builder failed "
                           f"(exit {proc.returncode}, precision {recipe.precision}):\n{tail}")
    if recipe.drop_value_info:
        for graph in sorted(out.glob("*.onnx")):
            drop_value_info(graph)


def drop_value_info(graph: Path) -> None:
    """Remove the intermediate tensors' shape annotations of ``graph`` in place (its weights,
    in an external data file, are not read or rewritten)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    del model.graph.value_info[:]
    onnx.save(model, str(graph))


def probe(model_dir: Path, level: str) -> None:
    """Prefill 4 tokens and decode 2 on the CPU; a failure is :class:`Unsupported` with the
    runtime's message (the level cannot run on this provider, whatever the sweep asks)."""
    import numpy as np

    from harness.runtimes.genai import generator, open_model

    try:
        model = open_model(model_dir, threads=1)
        gen = generator(model, max_length=8)
        gen.append_tokens(np.array([1, 2, 3, 4], dtype=np.int32))
        for _ in range(3):
            gen.generate_next_token()
    except Exception as exc:
        message = " ".join(str(exc).split())[:400]
        raise Unsupported(f"{level}: ONNX Runtime GenAI's CPU provider cannot run the "
                          f"builder's graph at this precision (probe of 4 prompt tokens and 2 "
                          f"decode steps failed: {message})") from exc


def tool_versions() -> dict[str, str | None]:
    """Versions of what builds and runs a GenAI artifact (part of its cache key)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in ("onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
