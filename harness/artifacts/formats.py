"""Artifact formats: one registration per kind of built model file.

A format says what an artifact of its kind is made of and who reads it: the name of its main
file in the cache, its files (main file plus external data), the runtime that executes it (a
name in :data:`harness.runtimes.RUNTIMES`), the ONNX graph the emulator costs for it (none for
a ``.tflite`` file), how its weights are inspected and what its quantizer recorded, and the
bytes that identify it (TFLite's FlatBuffer identifier). Everything that used to decide this
from a file suffix asks :func:`format_of` instead, so a new format (GGUF) is one registration
in :data:`FORMATS`.

This module imports neither onnx nor torch at import time, and nothing of ``harness.compress``
(which imports it): a format's inspector is a lazy ``"module:attr"``, as registry entries are.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError
from harness.registry import Registry

if TYPE_CHECKING:
    import onnx

# File the emulator reads for a PyTorch artifact: its ONNX twin, beside ``model.pt`` (the same
# recipe applied with onnxruntime's tools; see harness.compress.torch_quant).
TWIN_FILE = "twin.onnx"

# ONNX metadata_props keys the build writes: the pruning pattern and level (pruned artifacts,
# harness.compress.prune) and what a quantizer recorded (harness.compress.quantize).
PATTERN_KEY = "harness.sparsity_pattern"  # "unstructured", "2:4", "channel", "head", "neuron"
LEVEL_KEY = "harness.prune_level"  # the level's name, e.g. "channel-l1-25"
META_FLOAT_NODES = "harness.quant.float_nodes"          # JSON list of node names kept in float
META_SENSITIVITY = "harness.quant.sensitivity"          # JSON {node: relative L2 output error}


@dataclass(frozen=True)
class ArtifactStats:
    """Weights counted on an artifact as stored (see :mod:`harness.compress.inspect`)."""

    params: int  # weight elements in conv / matmul / gemm weights (biases excluded)
    zero_params: int | None  # None: the weights' storage is not decoded (packed .tflite int4)
    sparsity_pattern: str | None = None  # declared in the artifact's metadata; None = dense
    # Weight elements whose input dimension is a multiple of 4 (could hold 2:4), and those of
    # them in tensors where every group of 4 along the input dimension has at most 2 nonzeros.
    params_2_4_eligible: int = 0
    params_2_4: int = 0

    @property
    def sparsity(self) -> float | None:
        if self.zero_params is None:
            return None
        return self.zero_params / self.params if self.params else 0.0

    @property
    def is_2_4(self) -> bool:
        """Measured: every weight that could follow 2:4 does (and at least one could)."""
        return self.params_2_4_eligible > 0 and self.params_2_4 == self.params_2_4_eligible


def _no_data_files(path: Path) -> list[Path]:
    return []


def _itself(path: Path) -> Path:
    return path


def _no_metadata(path: Path) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of artifact file; see the module docstring."""

    name: str
    filename: str  # of the main file in the cache: "model.onnx"; its suffix identifies it
    runtime: str  # the runtime that executes it (harness.runtimes.RUNTIMES)
    description: str
    inspector: str  # "module:attr" of a (main file) -> ArtifactStats function, imported on use
    data_files: Callable[[Path], list[Path]] = _no_data_files  # files beside the main file
    graph: Callable[[Path], Path] = _itself  # main file -> the ONNX graph the emulator costs
    metadata: Callable[[Path], dict[str, Any]] = _no_metadata  # what the quantizer recorded
    # (offset, bytes) every file of the format has there: a file with the format's suffix but
    # other bytes is refused by format_of (a renamed ONNX file would fail deep in a runtime)
    magic: tuple[int, bytes] | None = None

    @property
    def suffix(self) -> str:
        return Path(self.filename).suffix

    def files(self, path: Path) -> list[Path]:
        """The main file and its external data files, in a fixed order (cache hashes them)."""
        return [path, *self.data_files(path)]

    def emulator_graph(self, path: Path) -> Path:
        """The ONNX graph the emulator costs for the artifact at ``path``; raises
        :class:`~harness.errors.Unsupported` for a format the emulator cannot cost."""
        return self.graph(path)

    def identifies(self, path: Path) -> bool:
        """Whether the file at ``path`` carries this format's identifying bytes (True for a
        format without any, and for a file that does not exist yet)."""
        if self.magic is None or not path.is_file():
            return True
        offset, want = self.magic
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(len(want)) == want

    def inspect(self, path: Path) -> ArtifactStats:
        """Parameter count, zeros and sparsity pattern of the weights stored in ``path``."""
        module, _, attr = self.inspector.partition(":")
        stats: ArtifactStats = getattr(importlib.import_module(module), attr)(path)
        return stats

    def quant_metadata(self, path: Path) -> dict[str, Any]:
        """What the quantizer recorded in the artifact (``float_nodes``, ``sensitivity``)."""
        return self.metadata(path)


# ------------------------------------------------------------------------------------ ONNX


def _onnx_data_files(path: Path) -> list[Path]:
    """External data files the model's initializers point to (sorted by location)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    locations = set()
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [path.parent / loc for loc in sorted(locations)]


def onnx_quant_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """What the quantizer recorded in ``model``: ``float_nodes`` (list) and ``sensitivity``."""
    props = {p.key: p.value for p in model.metadata_props}
    out: dict[str, Any] = {}
    if META_FLOAT_NODES in props:
        out["float_nodes"] = json.loads(props[META_FLOAT_NODES])
    if META_SENSITIVITY in props:
        out["sensitivity"] = json.loads(props[META_SENSITIVITY])
    return out


def _onnx_file_quant_metadata(path: Path) -> dict[str, Any]:
    import onnx

    return onnx_quant_metadata(onnx.load(str(path), load_external_data=False))


def _torch_twin(path: Path) -> Path:
    return path.with_name(TWIN_FILE)


ONNX = ArtifactFormat(
    name="onnx", filename="model.onnx", runtime="onnxruntime",
    description="ONNX model, weights inline or in external data files beside it",
    inspector="harness.compress.inspect:inspect_onnx", data_files=_onnx_data_files,
    metadata=_onnx_file_quant_metadata)
TORCH = ArtifactFormat(
    name="torch", filename="model.pt", runtime="torch",
    description="pickled PyTorch module (harness.runtimes.torch), costed from its ONNX twin",
    inspector="harness.compress.inspect:inspect_torch", graph=_torch_twin)



# ------------------------------------------------------------------------- ONNX Runtime GenAI

GENAI_CONFIG = "genai_config.json"
GENAI_GRAPH = "model.onnx"


def _genai_data_files(path: Path) -> list[Path]:
    """Every other file of a GenAI model directory (graph, external data, tokenizer), sorted:
    all of them decide what runs, so all are hashed."""
    return sorted(p for p in path.parent.iterdir() if p.is_file() and p != path)


def _genai_graph(path: Path) -> Path:
    return path.parent / GENAI_GRAPH


def _genai_quant_metadata(path: Path) -> dict[str, Any]:
    return _onnx_file_quant_metadata(_genai_graph(path))


GENAI = ArtifactFormat(
    name="genai", filename=GENAI_CONFIG, runtime="onnxruntime-genai",
    description="ONNX Runtime GenAI model directory (genai_config.json, model.onnx with KV "
                "cache inputs, external data, tokenizer), built by its model builder",
    inspector="harness.compress.inspect:inspect_genai", data_files=_genai_data_files,
    graph=_genai_graph, metadata=_genai_quant_metadata)


# ------------------------------------------------------------------------- TFLite / LiteRT


def _no_onnx_graph(path: Path) -> Path:
    from harness.errors import Unsupported

    # Costing needs the ONNX graph the emulator's cost model reads; converting TFLite to ONNX
    # would cost a different graph than the one the phone runs, so no prediction is made.
    raise Unsupported(f"the emulator costs ONNX graphs; {path.name} is a TFLite FlatBuffer, "
                      "so it gets no device prediction (its host figures stand; run it on a "
                      "phone with --backend adb --runner benchmark_model)")


TFLITE = ArtifactFormat(
    name="tflite", filename="model.tflite", runtime="litert",
    description="TensorFlow Lite / LiteRT FlatBuffer (.tflite), measured as given: run by "
                "LiteRT on the host, by benchmark_model on a phone; not costed by the emulator",
    inspector="harness.artifacts.tflite:inspect_tflite", graph=_no_onnx_graph,
    magic=(4, b"TFL3"))

FORMATS: Registry[ArtifactFormat] = Registry("artifact format")
for _fmt in (ONNX, TORCH, GENAI, TFLITE):
    FORMATS.register(_fmt.name, _fmt, info=_fmt.description)


def _formats() -> list[ArtifactFormat]:
    return [FORMATS.get(name) for name in FORMATS.names()]


def format_of(path: Path) -> ArtifactFormat:
    """The format of the artifact file at ``path``, from its suffix (and, for a format with
    identifying bytes, those bytes when the file exists).

    Raises an :class:`InputError` naming the file and the known formats, or what the bytes
    of a misnamed file are.
    """
    for fmt in _formats():
        if fmt.suffix == path.suffix:
            if not fmt.identifies(path):
                assert fmt.magic is not None
                offset, want = fmt.magic
                with path.open("rb") as fh:
                    fh.seek(offset)
                    got = fh.read(len(want))
                raise InputError(f"not a {fmt.name} file: bytes {offset}..{offset + len(want)} "
                                 f"are {got!r}, not {want!r}", file=path)
            return fmt
    known = ", ".join(f"{f.name} ({f.filename})" for f in _formats())
    raise InputError(f"no artifact format (so no runtime) reads "
                     f"{path.suffix or 'suffix-less'!r} files "
                     f"(known formats: {known})", file=path)


def format_for_runtime(runtime: str) -> ArtifactFormat:
    """The format of the artifacts ``runtime`` executes."""
    for fmt in _formats():
        if fmt.runtime == runtime:
            return fmt
    raise ValueError(f"no artifact format is run by {runtime!r} "
                     f"(known: {', '.join(f.runtime for f in _formats())})")
