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


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    """A stand-in for `onnxruntime_perf_test` to push to a fake phone (which acts as the tool
    when it is run; its bytes are never executed)."""
    path = tmp_path / "onnxruntime_perf_test"
    path.write_bytes(b"\x7fELF fake runner")
    return path
