"""The runtime registry: the same model run by ONNX Runtime and by PyTorch eager."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from harness.compress.inspect import inspect_artifact
from harness.compress.torch_export import export_onnx
from harness.compress.torch_quant import TWIN_FILE, build_torch_artifact
from harness.errors import InputError, Unsupported
from harness.launcher import run_in_worker as _in_worker
from harness.runtimes import load, runtime_of
from harness.runtimes.torch import load_module
from harness.variants import parse_quant
from harness.worker import run_task
from harness.workloads.onnxfile import OnnxFileWorkload

X = np.random.default_rng(0).standard_normal((3, 4, 8, 8)).astype(np.float32)


def _conv_linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(16 * 64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


def _build(tmp_path: Path, level: str) -> tuple[Path, Path, torch.nn.Module]:
    model = _conv_linear()
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(model, {"input": X[:1]}, fp32)
    out_dir = tmp_path / level
    out_dir.mkdir()
    art = build_torch_artifact(model, parse_quant(level), input_names=["input"],
                               fp32_onnx=fp32, out_dir=out_dir)
    return art, fp32, model


def test_torch_int8_dynamic_quantizes_only_the_linear_layers(tmp_path: Path) -> None:
    art, fp32, model = _build(tmp_path, "torch-int8-dynamic")
    assert art.name == "model.pt" and runtime_of(art) == "torch"
    module, names = load_module(art)
    assert names == ["input"]
    kinds = [type(m).__name__ for m in module]
    assert kinds.count("Conv2d") == 1 and isinstance(module[0].weight, torch.nn.Parameter)
    assert kinds.count("Linear") == 2  # torch.ao's dynamic Linear keeps the class name ...
    assert all("quantized" in type(m).__module__ for m in module if type(m).__name__ == "Linear")
    # ... the twin the emulator reads has the same recipe: int8 matmuls, float conv
    twin_ops = {n.op_type for n in onnx.load(str(art.with_name(TWIN_FILE))).graph.node}
    assert "MatMulInteger" in twin_ops and "Conv" in twin_ops and "ConvInteger" not in twin_ops
    # same weights counted from both formats
    assert inspect_artifact(art).params == inspect_artifact(fp32).params == 4 * 16 * 9 + (
        16 * 64 * 32 + 32 * 4)

    got = load(art, threads=1).run({"input": X})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(X)).numpy()
    assert got.shape == ref.shape and not np.array_equal(got, ref)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_torch_fp32_matches_onnxruntime_on_the_same_model(tmp_path: Path) -> None:
    art, fp32, _ = _build(tmp_path, "torch-fp32")
    torch_out = load(art, threads=1)
    ort_out = load(fp32, threads=1)
    assert (torch_out.runtime, ort_out.runtime) == ("torch", "onnxruntime")
    assert ort_out.providers == ["CPUExecutionProvider"]
    a, b = torch_out.run({"input": X})[0], ort_out.run({"input": X})[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(ort_out.timing_call(None, {"input": X})[0],
                                  sess.run(None, {"input": X})[0])


def test_torch_artifact_is_measured_in_a_worker(tmp_path: Path) -> None:
    art, _, _ = _build(tmp_path, "torch-int8-dynamic")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=X[:1])
    out = _in_worker({"kind": "measure", "workload": {"name": "t", "onnx": str(
        art.with_name(TWIN_FILE))}, "artifact": str(art), "inputs": str(inputs), "warmup": 2,
        "iterations": 9, "threads": 1}, timeout_s=120, log=tmp_path / "log")
    assert out["status"] == "ok", out
    row = out["result"]["measured"]
    assert row["runtime"] == "torch" and row["runtime_version"] == torch.__version__
    samples = row["phases"][0]["samples"]
    assert len(samples) == 9 and all(s > 0 for s in samples)
    assert row["cold_start"]["load_ns"] > 0 and row["peak_memory_mb"] > 0


def test_onnx_only_workloads_have_no_torch_model(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(Unsupported, match="ships as ONNX"):
        OnnxFileWorkload(name="tiny", path=tiny_model).torch_model(tmp_path)
    out = run_task({"kind": "build", "workload": {"name": "tiny", "onnx": str(tiny_model)},
                    "quant": "torch-int8-dynamic", "prune": {"method": "magnitude",
                                                             "amount": 0.0},
                    "cache_dir": str(tmp_path / "cache")})
    assert out["status"] == "unsupported" and "no PyTorch model" in out["reason"]


def test_unknown_artifact_kind_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model\.mlmodel: no artifact format \(so no runtime\) "
                                         r"reads '\.mlmodel' files.*onnx \(model\.onnx\)"):
        runtime_of(tmp_path / "model.mlmodel")
