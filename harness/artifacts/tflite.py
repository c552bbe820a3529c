"""TensorFlow Lite / LiteRT model files (``.tflite``), read without TensorFlow or LiteRT.

A ``.tflite`` file is a FlatBuffer of TFLite's ``schema.fbs`` whose file identifier ``TFL3``
lies at bytes 4..8. The few fields the harness needs (the main subgraph's inputs, the
operators' constant weights) are read here by a small FlatBuffer reader of its own, so that
identifying a file, counting its weights and generating its inputs need neither TensorFlow nor
``ai-edge-litert``: a sweep that only runs the file on a phone (``benchmark_model`` over adb)
does not have to install a runtime on the host.

Field numbers follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs`` (schema version 3):
they never change meaning, new fields are only appended.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.artifacts.formats import ArtifactStats

IDENTIFIER = b"TFL3"
IDENTIFIER_AT = 4   # a FlatBuffer's identifier follows its 4-byte root offset

# TensorType -> numpy dtype, for the types a weight or an input can have here; the others
# (string, resource, variant, packed int4...) are named by TYPE_NAMES only.
DTYPES: dict[int, str] = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64",
                          6: "bool", 7: "int16", 9: "int8", 10: "float64", 12: "uint64",
                          15: "uint32", 16: "uint16"}
TYPE_NAMES: dict[int, str] = {**DTYPES, 5: "string", 8: "complex64", 11: "complex128",
                              13: "resource", 14: "variant", 17: "int4", 18: "bfloat16",
                              19: "int2", 20: "uint4"}

# BuiltinOperator codes whose input 1, when constant, is a weight matrix or kernel: what
# ArtifactStats.params counts, as the ONNX inspector counts conv / matmul / gemm weights.
WEIGHT_OPS: dict[int, str] = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED",
                              67: "TRANSPOSE_CONV", 126: "BATCH_MATMUL", 146: "CONV_3D"}


DEQUANTIZE = 6   # an fp16 / int8 constant turned float before a weight op: the weight counted


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """The file's bytes, memory-mapped: a model of several GB is not read into memory to
    count its weights."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield b""      # mmap refuses empty files
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def has_identifier(path: Path) -> bool:
    """Whether the file at ``path`` carries the TFLite FlatBuffer identifier."""
    with path.open("rb") as fh:
        head = fh.read(IDENTIFIER_AT + len(IDENTIFIER))
    return head[IDENTIFIER_AT:] == IDENTIFIER


class _Reader:
    """Just enough FlatBuffer decoding for the fields read here (tables, vectors, scalars)."""

    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data, self.path = data, path

    def _span(self, start: int, nbytes: int) -> None:
        """Refuse a vector that would run past the end of the file (a corrupt length)."""
        if start + nbytes > len(self.data):
            raise InputError(f"not a valid TFLite model: a vector at {start} runs past the end "
                             f"of the file ({len(self.data)} bytes)", file=self.path)

    def _u(self, fmt: str, pos: int) -> int:
        try:
            value: int = struct.unpack_from(fmt, self.data, pos)[0]
        except struct.error:
            raise InputError(f"not a valid TFLite model: an offset ({pos}) points past the "
                             f"end of the file ({len(self.data)} bytes)",
                             file=self.path) from None
        return value

    def root(self) -> int:
        return self._u("<I", 0)

    def field(self, table: int, slot: int) -> int | None:
        """Position of field ``slot`` of the table at ``table``; None when absent."""
        vtable = table - self._u("<i", table)
        vsize = self._u("<H", vtable)
        at = 4 + 2 * slot
        if at >= vsize:
            return None
        off = self._u("<H", vtable + at)
        return table + off if off else None

    def scalar(self, table: int, slot: int, fmt: str, default: int = 0) -> int:
        pos = self.field(table, slot)
        return default if pos is None else self._u(fmt, pos)

    def table(self, table: int, slot: int) -> int | None:
        pos = self.field(table, slot)
        return None if pos is None else pos + self._u("<I", pos)

    def vector(self, table: int, slot: int) -> tuple[int, int]:
        """(position of the first element, length) of a vector field; (0, 0) when absent."""
        pos = self.field(table, slot)
        if pos is None:
            return 0, 0
        start = pos + self._u("<I", pos)
        return start + 4, self._u("<I", start)

    def tables(self, table: int, slot: int) -> list[int]:
        start, n = self.vector(table, slot)
        self._span(start, 4 * n)
        return [start + 4 * i + self._u("<I", start + 4 * i) for i in range(n)]

    def ints(self, table: int, slot: int, fmt: str = "<i") -> list[int]:
        start, n = self.vector(table, slot)
        size = struct.calcsize(fmt)
        self._span(start, size * n)
        return [self._u(fmt, start + size * i) for i in range(n)]

    def string(self, table: int, slot: int) -> str:
        start, n = self.vector(table, slot)
        self._span(start, n)
        return bytes(self.data[start:start + n]).decode("utf-8", "replace")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main subgraph, as stored."""

    name: str
    shape: tuple[int, ...]
    type_code: int
    buffer: int
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    external_buffer: int = 0   # its data in a file beside the model (Model.external_buffers)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type_code, f"type {self.type_code}")


@dataclass(frozen=True)
class TfliteModel:
    """What the harness reads of a ``.tflite`` file: the main subgraph's tensors, its inputs
    and outputs, the constant weights of its operators (tensor index per weight op)."""

    path: Path
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    weights: tuple[int, ...]                       # tensors that are a weight op's input 1
    buffers: tuple[tuple[int, int], ...]           # (file offset, size) of each buffer's data
    subgraphs: int = 1


def read_model(path: Path) -> TfliteModel:
    """Read ``path`` as a TFLite FlatBuffer; an InputError naming the file if it is not one."""
    with _mapped(path) as data:
        return _parse(data, path)


def _parse(data: mmap.mmap | bytes, path: Path) -> TfliteModel:
    if len(data) < 8 or data[IDENTIFIER_AT:IDENTIFIER_AT + 4] != IDENTIFIER:
        raise InputError(f"not a TFLite model: bytes 4..8 are {data[4:8]!r}, not the "
                         f"FlatBuffer identifier {IDENTIFIER!r}", file=path)
    r = _Reader(data, path)
    model = r.root()
    subgraphs = r.tables(model, 2)
    if not subgraphs:
        raise InputError("not a valid TFLite model: it has no subgraph", file=path)
    # Buffer: data [ubyte] (0), or offset (1) / size (2) into the file for models over 2 GB
    buffers = []
    for buf in r.tables(model, 4):
        start, n = r.vector(buf, 0)
        offset, size = r.scalar(buf, 1, "<Q"), r.scalar(buf, 2, "<Q")
        buffers.append((start, n) if n else (offset, size) if offset > 1 else (0, 0))
    # OperatorCode: deprecated_builtin_code (0, int8) holds codes below 127; builtin_code (3)
    # the rest: the larger of the two is the operator
    codes = [max(r.scalar(c, 0, "<b"), r.scalar(c, 3, "<i")) for c in r.tables(model, 1)]
    main = subgraphs[0]
    tensors = []
    for t in r.tables(main, 0):
        quant = r.table(t, 4)
        zps: tuple[int, ...] = ()
        qdim = 0
        if quant is not None:
            zps = tuple(r.ints(quant, 3, "<q"))
            qdim = r.scalar(quant, 6, "<i")
        tensors.append(TensorInfo(name=r.string(t, 3), shape=tuple(r.ints(t, 0)),
                                  type_code=r.scalar(t, 1, "<b"), buffer=r.scalar(t, 2, "<I"),
                                  zero_points=zps, quantized_dimension=qdim,
                                  external_buffer=r.scalar(t, 10, "<I")))
    ops = []   # (operator code, inputs, outputs)
    for op in r.tables(main, 3):
        index = r.scalar(op, 0, "<I")
        ops.append((codes[index] if index < len(codes) else -1, r.ints(op, 1), r.ints(op, 2)))
    dequantized = {outs[0]: ins[0] for code, ins, outs in ops
                   if code == DEQUANTIZE and ins and outs}
    weights: list[int] = []
    for code, ins, _ in ops:
        if code in WEIGHT_OPS and len(ins) > 1 and 0 <= ins[1] < len(tensors):
            # an fp16 model keeps its weights as fp16 constants dequantized before the op
            w = dequantized.get(ins[1], ins[1])
            if 0 <= w < len(tensors) and _constant(tensors[w], buffers) and w not in weights:
                weights.append(w)
    return TfliteModel(path=path, tensors=tuple(tensors), inputs=tuple(r.ints(main, 1)),
                       outputs=tuple(r.ints(main, 2)), weights=tuple(weights),
                       buffers=tuple(buffers), subgraphs=len(subgraphs))


def _constant(t: TensorInfo, buffers: list[tuple[int, int]]) -> bool:
    return 0 < t.buffer < len(buffers) and buffers[t.buffer][1] > 0


def inspect_tflite(path: Path) -> ArtifactStats:
    """Weight elements (input 1 of conv / depthwise / fully connected / transpose conv / batch
    matmul operators, when constant) and how many of them are zero (a stored value equal to
    the tensor's zero point when quantized). A weight stored in a type this reader cannot
    decode (packed int4, sparse encodings) has no zero count: then ``zero_params`` is None
    rather than a guess."""
    from harness.artifacts.formats import ArtifactStats

    params, zeros = 0, 0
    decodable = True
    with _mapped(path) as data:
        m = _parse(data, path)
        for w in m.weights:
            t = m.tensors[w]
            n = int(np.prod(t.shape)) if t.shape else 1
            params += n
            offset, size = m.buffers[t.buffer]
            dtype = DTYPES.get(t.type_code)
            zp = _zero_point(t)
            if dtype is None or size != n * np.dtype(dtype).itemsize or zp is None \
                    or offset + size > len(data):
                decodable = False   # packed or sparse storage: its zeros are not read here
                continue
            values = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
            zeros += int(np.count_nonzero(values.reshape(t.shape) == zp))
            del values   # the map cannot close while an array views it
    return ArtifactStats(params=params, zero_params=zeros if decodable else None)


def _zero_point(t: TensorInfo) -> np.ndarray | int | None:
    """What a stored zero is in ``t``: 0 (float, or no quantization), its zero point, or one
    per channel shaped to broadcast; None when the zero points do not fit the shape."""
    if len(t.zero_points) <= 1:
        return t.zero_points[0] if t.zero_points else 0
    if len(t.shape) > t.quantized_dimension \
            and t.shape[t.quantized_dimension] == len(t.zero_points):
        shape = [1] * len(t.shape)
        shape[t.quantized_dimension] = len(t.zero_points)
        return np.asarray(t.zero_points).reshape(shape)
    return None


def check_self_contained(path: Path) -> None:
    """Refuse a model whose tensors keep their data in files beside it (LiteRT's external
    buffers): the harness copies, hashes and pushes the one ``.tflite`` file."""
    m = read_model(path)
    outside = [t.name for t in m.tensors if t.external_buffer]
    if outside:
        raise InputError(f"{len(outside)} tensor(s) keep their data in external buffer files "
                         f"(first: {outside[0]!r}); only a self-contained .tflite file is "
                         "measured", file=path)


def random_inputs(path: Path, *, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs of the main subgraph, keyed by tensor name, at the shapes stored in the
    model (a dynamic batch is stored as 1, as ``benchmark_model`` runs it): standard normal
    floats, 0 or 1 for integer and boolean inputs (as for an ONNX file: token ids, indices and
    masks stay in range)."""
    m = read_model(path)
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for i in m.inputs:
        t = m.tensors[i]
        dtype = DTYPES.get(t.type_code)
        if dtype is None:
            raise InputError(f"input {t.name!r} is of type {t.type_name}: no random input "
                             "of that type is generated", file=path)
        if any(d < 1 for d in t.shape):
            raise InputError(f"input {t.name!r} has a dynamic shape {list(t.shape)}: only "
                             "models with fixed input shapes are timed", file=path)
        if np.issubdtype(np.dtype(dtype), np.floating):
            feeds[t.name] = rng.standard_normal(t.shape).astype(dtype)
        elif dtype == "bool":
            feeds[t.name] = rng.integers(0, 2, size=t.shape).astype(bool)
        else:
            feeds[t.name] = rng.integers(0, 2, size=t.shape).astype(dtype)
    return feeds
