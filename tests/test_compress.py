"""Real pruning and quantization on tiny models built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from harness.cache import ArtifactStore, artifact_size_bytes
from harness.compress.inspect import inspect_artifact
from harness.compress.prune import prune_model
from harness.compress.quantize import quantize
from harness.compress.torch_export import export_onnx
from harness.variants import parse_prune, parse_quant

RNG = np.random.default_rng(0)
CALIB = [{"input": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(8)]


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_magnitude_pruning_is_global_permanent_and_copies() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 3))
    before = [p.detach().clone() for p in model.parameters()]
    pruned = prune_model(model, parse_prune(50))
    weights = [m.weight for m in pruned.modules() if hasattr(m, "weight")]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.5 * total)
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())
    for p, b in zip(model.parameters(), before, strict=True):  # the input is untouched
        assert torch.equal(p, b)
    assert prune_model(model, parse_prune(0)) is model


def test_sparsity_is_measured_from_the_exported_artifact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 64, 2))
    export_onnx(prune_model(model, parse_prune(70)),
                {"input": np.zeros((1, 4, 8, 8), np.float32)}, tmp_path / "p.onnx")
    stats = inspect_artifact(tmp_path / "p.onnx")
    assert stats.params == 4 * 8 * 9 + 8 * 64 * 2
    assert stats.sparsity == pytest.approx(0.7, abs=1 / stats.params)


def test_export_writes_an_ir_version_onnxruntime_loads(tiny_model: Path) -> None:
    assert onnx.load(str(tiny_model)).ir_version <= 10
    x = RNG.standard_normal((3, 4, 8, 8)).astype(np.float32)
    assert _run(tiny_model, x).shape == (3, 2)  # dynamic batch


@pytest.mark.parametrize(("level", "int8_ops"), [
    ("int8-dynamic", {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}),
    ("int8-static", {"QuantizeLinear", "DequantizeLinear"}),
])
def test_int8_levels_quantize_for_real(tiny_model: Path, tmp_path: Path, level: str,
                                       int8_ops: set[str]) -> None:
    out = tmp_path / f"{level}.onnx"
    quantize(tiny_model, out, parse_quant(level), calibration=CALIB)
    assert _ops(out) & int8_ops
    assert artifact_size_bytes(out) < artifact_size_bytes(tiny_model)
    x = CALIB[0]["input"]
    ref, got = _run(tiny_model, x), _run(out, x)
    # int8 is close to fp32 but not equal: both directions can fail.
    assert not np.array_equal(ref, got)
    assert np.abs(ref - got).max() < 0.1 * np.abs(ref).max() + 1e-3


def test_static_quantization_keeps_pruned_zeros(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 64, 4))
    export_onnx(prune_model(model, parse_prune(50)),
                {"input": np.zeros((1, 4, 8, 8), np.float32)}, tmp_path / "p.onnx")
    quantize(tmp_path / "p.onnx", tmp_path / "q.onnx", parse_quant("int8-static"),
             calibration=CALIB)
    # Tiny weights may round to the zero point too, so the share can only grow.
    assert inspect_artifact(tmp_path / "q.onnx").sparsity >= 0.5


def test_static_quantization_needs_calibration(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize(tiny_model, tmp_path / "q.onnx", parse_quant("int8-static"), calibration=[])


def test_artifact_store_commit_is_atomic(tmp_path: Path, tiny_model: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.get("k") is None
    stage = store.staging("k")
    (stage / "model.onnx").write_bytes(tiny_model.read_bytes())
    path = store.commit("k", stage)
    assert store.get("k") == path and not stage.exists()


def test_onnx_magnitude_pruning_matches_torch(tmp_path: Path) -> None:
    """Pruning an ONNX file's initializers zeroes exactly what torch's global pruning does."""
    from onnx import numpy_helper

    from harness.compress.prune import prune_onnx

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 64, 4))
    example = {"input": np.zeros((1, 4, 8, 8), np.float32)}
    export_onnx(model, example, tmp_path / "dense.onnx")
    export_onnx(prune_model(model, parse_prune(50)), example, tmp_path / "torch.onnx")
    pruned = prune_onnx(onnx.load(str(tmp_path / "dense.onnx")), parse_prune(50))
    onnx.save(pruned, str(tmp_path / "onnx.onnx"))

    def masks(path: Path) -> dict[str, np.ndarray]:
        m = onnx.load(str(path))
        return {i.name: numpy_helper.to_array(i) == 0 for i in m.graph.initializer
                if len(i.dims) >= 2}

    a, b = masks(tmp_path / "torch.onnx"), masks(tmp_path / "onnx.onnx")
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert inspect_artifact(tmp_path / "onnx.onnx").sparsity == pytest.approx(0.5, abs=1e-3)
    # the input model is untouched
    assert inspect_artifact(tmp_path / "dense.onnx").sparsity == 0.0
