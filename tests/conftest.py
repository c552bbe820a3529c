"""Shared fixtures: tiny models built in code, and an isolated artifact cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# the fake phone backend fixture (tests/sweep_fakes.py), for the sweep and fault tests
pytest_plugins = ("sweep_fakes",)


@pytest.fixture(autouse=True)
def _terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables are fitted to $COLUMNS, else the terminal, else 120 columns. The tests expect the
    width a run without a terminal gets, whatever the terminal they run in: pytest-xdist's
    workers have COLUMNS=80, and so would a developer's 80-column terminal. A test that wants
    another width passes ``width=`` or sets COLUMNS itself."""
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME (the adb backend creates ~/.android/adbkey in it) and quick telemetry
    samples; adb test modules with other needs define their own."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setattr("harness.backends.adb.backend.TELEMETRY_PERIOD_S", 0.05)
    return h


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(d))
    return d


def tiny_conv_onnx(path: Path, *, seed: int = 0) -> Path:
    """A 1x4x8x8 -> 2-class conv net exported from torch (conv, relu, pool, linear x2).

    Big enough (about 7k weights) that int8 weights outweigh quantization metadata.
    """
    import torch

    from harness.compress.torch_export import export_onnx

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 64),
        torch.nn.ReLU(), torch.nn.Linear(64, 2))
    export_onnx(model, {"input": np.zeros((1, 4, 8, 8), np.float32)}, path)
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return tiny_conv_onnx(tmp_path / "tiny.onnx")


def tiny_tflite(path: Path, *, seed: int = 0, inputs: int = 4, outputs: int = 3,
                fp16: bool = False, external: bool = False) -> Path:
    """A FULLY_CONNECTED model, float32 ``serving_default/x:0`` [1, inputs] -> [1, outputs],
    written as a TFLite FlatBuffer with the ``flatbuffers`` builder alone (no TensorFlow, no
    converter). ``fp16``: the weights stored as float16 and DEQUANTIZEd before the operator,
    as TFLite's float16 post-training quantization stores them. ``external``: the weight tensor
    claims an external buffer (Tensor.external_buffer, slot 10), as LiteRT's models with weights
    in a file beside them do.

    Field slots follow TFLite's schema.fbs (Model, SubGraph, Tensor, Operator, Buffer,
    OperatorCode); the first weight of each row is zero, so the inspector has zeros to count.
    """
    import flatbuffers

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((outputs, inputs)).astype(np.float32)
    weights[:, 0] = 0.0
    bias = rng.standard_normal(outputs).astype(np.float32)
    b = flatbuffers.Builder(1024)
    b.ForceDefaults(True)   # write every slot given, zeros included

    def ints(values: list[int]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def data(raw: bytes) -> int:
        b.StartVector(1, len(raw), 16)   # schema: force_align 16
        b.head = b.head - len(raw)
        b.Bytes[b.head:b.head + len(raw)] = raw
        return b.EndVector()

    def table(*slots: tuple[str, int, int]) -> int:
        b.StartObject(1 + max((s for _, s, _ in slots), default=-1))
        for kind, slot, value in slots:
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:
                getattr(b, f"Prepend{kind}Slot")(slot, value, 0)
        return b.EndObject()

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    stored = weights.astype(np.float16) if fp16 else weights
    # buffer 0 is the conventional empty one
    buffers = [table(), table(("off", 0, data(stored.tobytes()))),
               table(("off", 0, data(bias.tobytes())))]
    # Tensor: shape (0), type (1: FLOAT32 = 0, FLOAT16 = 1), buffer (2), name (3); named as
    # TF's converter names a SavedModel's signature tensors ('/' and ':' included)
    specs = [("serving_default/x:0", [1, inputs], 0, 0),
             ("w", [outputs, inputs], 0 if fp16 else 1, 0), ("b", [outputs], 2, 0),
             ("StatefulPartitionedCall:0", [1, outputs], 0, 0)]
    if fp16:
        specs.append(("w_fp16", [outputs, inputs], 1, 1))
    tensors = []
    for name, shape, buf, dtype in specs:
        name_off, shape_off = b.CreateString(name), ints(shape)
        slots = [("off", 0, shape_off), ("Int8", 1, dtype), ("Uint32", 2, buf),
                 ("off", 3, name_off)]
        if external and name == "w":
            slots.append(("Uint32", 10, 1))
        tensors.append(table(*slots))
    # Operator: opcode_index (0), inputs (1), outputs (2); OperatorCode:
    # deprecated_builtin_code (0), version (2), builtin_code (3): FULLY_CONNECTED = 9,
    # DEQUANTIZE = 6
    ops = [table(("Uint32", 0, 0), ("off", 1, ints([0, 1, 2])), ("off", 2, ints([3])))]
    codes = [table(("Int8", 0, 9), ("Int32", 2, 1), ("Int32", 3, 9))]
    if fp16:
        ops.insert(0, table(("Uint32", 0, 1), ("off", 1, ints([4])), ("off", 2, ints([1]))))
        codes.append(table(("Int8", 0, 6), ("Int32", 2, 3), ("Int32", 3, 6)))
    # SubGraph: tensors (0), inputs (1), outputs (2), operators (3), name (4)
    sub = table(("off", 0, vector(tensors)), ("off", 1, ints([0])), ("off", 2, ints([3])),
                ("off", 3, vector(ops)), ("off", 4, b.CreateString("main")))
    # Model: version (0), operator_codes (1), subgraphs (2), description (3), buffers (4)
    model = table(("Uint32", 0, 3), ("off", 1, vector(codes)), ("off", 2, vector([sub])),
                  ("off", 3, b.CreateString("tiny test model")),
                  ("off", 4, vector(buffers)))
    b.Finish(model, file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


@pytest.fixture
def tiny_tflite_model(tmp_path: Path) -> Path:
    pytest.importorskip("flatbuffers", reason="the tiny .tflite is written with flatbuffers "
                                              "(the test extra installs it with ai-edge-litert)")
    return tiny_tflite(tmp_path / "tiny.tflite")


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    """A stand-in for `onnxruntime_perf_test` to push to a fake phone (which acts as the tool
    when it is run; its bytes are never executed)."""
    path = tmp_path / "onnxruntime_perf_test"
    path.write_bytes(b"\x7fELF fake runner")
    return path
