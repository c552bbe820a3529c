"""Pruning levels on tiny models built in code: every figure is read back from the artifact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from harness.cache import artifact_size_bytes
from harness.compress.inspect import PATTERN_KEY, inspect_artifact
from harness.compress.prune import prune_model, prune_onnx, record_sparsity_pattern
from harness.compress.torch_export import export_onnx
from harness.errors import InputError, Unsupported
from harness.variants import PruneSpec, parse_prune, prune_level_names
from harness.workloads.base import Feeds, Workload

X = {"input": np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)}
CALIB = [{"input": np.random.default_rng(i).standard_normal((1, 4, 8, 8)).astype(np.float32)}
         for i in range(8)]


def _cnn(seed: int = 0) -> torch.nn.Module:
    """Conv -> BN -> conv -> pool -> conv -> Flatten -> Linear -> Linear, input 1x4x8x8."""
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(4, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 3))
    bn = model[1]
    with torch.no_grad():  # non-trivial statistics, so a wrong BN slice would show
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _export(model: torch.nn.Module, spec: PruneSpec, path: Path,
            example: Feeds = X) -> Path:
    export_onnx(prune_model(model, spec, example=example), example, path)
    record_sparsity_pattern(path, spec)
    return path


def _run(path: Path, feeds: Feeds) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if len(i.dims) >= 2}


# ----------------------------------------------------------------------------- level names


def test_every_offered_level_parses_and_round_trips() -> None:
    names = prune_level_names()
    for required in ("0", "30", "50", "70", "90", "2:4", "channel-l1-25", "channel-l2-50",
                     "head-l1-25", "head-l2-50", "neuron-l1-25", "neuron-l2-50",
                     "channel-l2-50+ft", "head-l1-25+ft"):
        assert required in names
    for name in names:
        spec = parse_prune(name)
        assert spec.name == name and parse_prune(spec.name) == spec
    assert parse_prune(50) == parse_prune("50%") == PruneSpec("magnitude", 0.5)
    assert parse_prune("Channel-L1-25%") == PruneSpec("channel-l1", 0.25)
    assert parse_prune("2:4") == PruneSpec("2:4", 0.5)
    assert parse_prune("0").sparsity_pattern is None
    assert parse_prune("head-l2-50").sparsity_pattern == "head"
    ft = parse_prune("channel-l2-50+ft")
    assert ft.finetune and ft.base_method == "channel-l2" and ft.sparsity_pattern == "channel"
    assert not parse_prune("channel-l2-50").finetune


@pytest.mark.parametrize(("typo", "hints"), [
    ("chanel-l1-25", ["channel-l1-25"]),
    ("head-25", ["head-l1-25", "head-l2-25"]),
    ("2:5", ["2:4"]),
    ("neuron-l3-50", ["neuron-l1-50"]),
])
def test_unknown_level_names_list_close_matches(typo: str, hints: list[str]) -> None:
    with pytest.raises(InputError, match=f"unknown pruning level '{typo}'") as err:
        parse_prune(typo)
    suggested = str(err.value).split("Did you mean ")[1].split("?")[0]
    for hint in hints:
        assert f"'{hint}'" in suggested


@pytest.mark.parametrize("bad", [150, -1, "channel-l1-0", "channel-l2-100", "2:4-50", True,
                                 [50], "50+ft", "2:4+ft"])
def test_out_of_range_levels_are_input_errors(bad: Any) -> None:
    with pytest.raises(InputError):
        parse_prune(bad)


# ----------------------------------------------------------------------------- magnitude


@pytest.mark.parametrize("pct", [0, 30, 50, 70, 90])
def test_magnitude_levels_measured_from_the_artifact(tmp_path: Path, pct: int) -> None:
    path = _export(_cnn(), parse_prune(pct), tmp_path / "m.onnx")
    stats = inspect_artifact(path)
    assert stats.sparsity == pytest.approx(pct / 100, abs=1 / stats.params)
    assert stats.sparsity_pattern == (None if pct == 0 else "unstructured")


# ----------------------------------------------------------------------------- channels


@pytest.mark.parametrize(("level", "keep"), [("channel-l1-25", 0.75), ("channel-l2-50", 0.5)])
def test_channel_pruning_shrinks_the_graph(tmp_path: Path, level: str, keep: float) -> None:
    model = _cnn()
    dense = _export(model, parse_prune(0), tmp_path / "dense.onnx")
    pruned = _export(model, parse_prune(level), tmp_path / "pruned.onnx")
    c1, c2, c3 = (round(keep * c) for c in (16, 32, 32))
    # every conv loses its share of output channels; the next conv and the Linear after the
    # Flatten lose the matching inputs; the classifier's outputs stay.
    expected = (4 * c1 * 9 + c1 * c2 * 9 + c2 * c3 * 9 + c3 * 4 * 16 + 16 * 3)
    stats = inspect_artifact(pruned)
    assert stats.params == expected
    assert inspect_artifact(dense).params == 4 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9 + 128 * 16 + 48
    assert stats.sparsity == 0.0 and stats.sparsity_pattern == "channel"
    # the file shrinks with the weights (fp32: 4 bytes each, plus a few KB of graph)
    ratio = artifact_size_bytes(pruned) / artifact_size_bytes(dense)
    assert ratio == pytest.approx(stats.params / inspect_artifact(dense).params, abs=0.05)
    batch = {"input": np.concatenate([CALIB[i]["input"] for i in range(3)])}
    assert _run(pruned, batch).shape == _run(dense, batch).shape == (3, 3)


def test_channel_pruning_keeps_the_filters_of_largest_norm() -> None:
    model = _cnn(seed=2)
    w = model[0].weight.detach()
    for p, level in ((1, "channel-l1-50"), (2, "channel-l2-50")):
        norms = w.abs().pow(p).sum(dim=(1, 2, 3))
        kept = torch.sort(torch.topk(norms, 8).indices).values
        pruned = prune_model(model, parse_prune(level), example=X)
        assert torch.equal(pruned[0].weight.detach(), w[kept])
        bn = pruned[1]  # BatchNorm follows its conv's channels
        assert torch.equal(bn.running_mean, model[1].running_mean[kept])


def test_channel_pruning_keeps_convs_that_feed_the_output(tmp_path: Path) -> None:
    from torch import nn

    torch.manual_seed(0)
    fully_conv = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3),
                               nn.ReLU(), nn.Conv2d(8, 5, 1)).eval()
    pruned = prune_model(fully_conv, parse_prune("channel-l2-50"), example=X)
    convs = [m for m in pruned if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 5]
    assert pruned(torch.from_numpy(X["input"])).shape == (1, 5, 4, 4)


def test_structured_methods_without_their_layers_are_unsupported() -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    with pytest.raises(Unsupported, match="conv"):
        prune_model(mlp, parse_prune("channel-l1-25"), example=X)
    for level in ("head-l2-25", "neuron-l1-50"):
        with pytest.raises(Unsupported, match="BERT-style"):
            prune_model(_cnn(), parse_prune(level))


# ----------------------------------------------------------------------------- 2:4


def _assert_2_4_of(original: np.ndarray, pruned: np.ndarray, axis: int) -> None:
    """``pruned`` keeps exactly the 2 largest of every 4 along ``axis`` of ``original``."""
    o = np.moveaxis(original, axis, -1).reshape(-1, 4)
    p = np.moveaxis(pruned, axis, -1).reshape(-1, 4)
    assert ((p != 0).sum(axis=1) == 2).all()
    kept_min = np.where(p != 0, np.abs(o), np.inf).min(axis=1)
    dropped_max = np.where(p == 0, np.abs(o), -np.inf).max(axis=1)
    assert (kept_min >= dropped_max).all()
    assert np.array_equal(p[p != 0], o[p != 0])


def test_2_4_pattern_on_stored_weights_torch_path(tmp_path: Path) -> None:
    model = _cnn(seed=3)
    dense = _weights(_export(model, parse_prune(0), tmp_path / "dense.onnx"))
    path = _export(model, parse_prune("2:4"), tmp_path / "24.onnx")
    pruned = _weights(path)
    graph = onnx.load(str(path)).graph
    gemm_b = {n.input[1] for n in graph.node if n.op_type == "Gemm"}
    for name, w in pruned.items():
        axis = 1  # Conv [Cout, Cin, kh, kw] and Gemm B [out, in] (transB=1): both axis 1
        assert name in gemm_b or w.ndim == 4
        _assert_2_4_of(dense[name], w, axis)
    stats = inspect_artifact(path)
    assert stats.is_2_4 and stats.sparsity_pattern == "2:4"
    assert stats.params_2_4 == stats.params_2_4_eligible == stats.params
    assert stats.sparsity == pytest.approx(0.5)
    # the check can fail: unstructured 50% zeros do not follow 2:4
    assert not inspect_artifact(_export(model, parse_prune(50), tmp_path / "m.onnx")).is_2_4


def test_2_4_leaves_layers_whose_input_is_not_a_multiple_of_4_dense(tmp_path: Path) -> None:
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),  # next conv: Cin = 6
                          nn.Conv2d(6, 8, 3, padding=1), nn.Flatten(),
                          nn.Linear(8 * 64, 2)).eval()
    stats = inspect_artifact(_export(model, parse_prune("2:4"), tmp_path / "p.onnx"))
    assert stats.is_2_4
    assert stats.params_2_4_eligible == 4 * 6 * 9 + 8 * 64 * 2
    assert stats.zero_params == stats.params_2_4_eligible // 2


def _matmul_model(k: int, n: int, *, trans_b: bool) -> onnx.ModelProto:
    """x[1, K] -> MatMul(W[K, N]) and Gemm(W2, transB) -> y; both weights random."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w2 = rng.standard_normal((n, n)).astype(np.float32)  # Gemm B as [N_out, N_in] if transB
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Gemm", ["h", "w2"], ["y"], transB=int(trans_b))]
    graph = helper.make_graph(
        nodes, "mm", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


@pytest.mark.parametrize("trans_b", [False, True])
def test_2_4_on_onnx_only_models_groups_along_k(tmp_path: Path, trans_b: bool) -> None:
    model = _matmul_model(8, 8, trans_b=trans_b)
    pruned = prune_onnx(model, parse_prune("2:4"))
    w0 = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w1 = {i.name: numpy_helper.to_array(i) for i in pruned.graph.initializer}
    _assert_2_4_of(w0["w"], w1["w"], axis=0)  # MatMul [K, N]: along K
    _assert_2_4_of(w0["w2"], w1["w2"], axis=1 if trans_b else 0)
    path = tmp_path / "p.onnx"
    onnx.save(pruned, str(path))
    record_sparsity_pattern(path, parse_prune("2:4"))
    stats = inspect_artifact(path)
    assert stats.is_2_4 and stats.sparsity_pattern == "2:4"
    assert _run(path, {"x": np.ones((1, 8), np.float32)}).shape == (1, 8)


def test_2_4_onnx_path_matches_the_torch_path(tmp_path: Path) -> None:
    model = _cnn(seed=4)
    via_torch = _weights(_export(model, parse_prune("2:4"), tmp_path / "t.onnx"))
    dense = onnx.load(str(_export(model, parse_prune(0), tmp_path / "d.onnx")))
    via_onnx = {i.name: numpy_helper.to_array(i)
                for i in prune_onnx(dense, parse_prune("2:4")).graph.initializer
                if len(i.dims) >= 2}
    assert via_torch.keys() == via_onnx.keys()
    for name in via_torch:
        assert np.array_equal(via_torch[name] == 0, via_onnx[name] == 0), name


@pytest.mark.parametrize("level", ["channel-l1-25", "head-l2-50", "neuron-l1-25"])
def test_structured_levels_on_onnx_only_models_are_unsupported(level: str) -> None:
    with pytest.raises(Unsupported, match="PyTorch source"):
        prune_onnx(_matmul_model(8, 8, trans_b=False), parse_prune(level))


# ----------------------------------------------------------------------------- transformers


class _Encoder(torch.nn.Module):
    """A thin wrapper, as a workload would hold it: the BertModel is found by walking."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@pytest.fixture(scope="module")
def tiny_bert() -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=16, attn_implementation="eager")
    return _Encoder(BertModel(config)).eval()


TOKENS = {"input_ids": (np.arange(10, dtype=np.int64)[None] * 7) % 64,
          "attention_mask": np.ones((1, 10), np.int64)}


def _attention_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if ".attention." in name and "LayerNorm" not in name)


# The legacy exporter's warnings about transformers' mask code: expected, the graph is checked.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:Exporting aten..index operator:UserWarning")
@pytest.mark.parametrize(("level", "heads", "ffn"), [
    ("head-l2-50", 2, 64), ("head-l1-25", 3, 64), ("neuron-l2-50", 4, 32),
])
def test_transformer_pruning_removes_heads_and_neurons(tiny_bert: torch.nn.Module,
                                                       tmp_path: Path, level: str,
                                                       heads: int, ffn: int) -> None:
    pruned = prune_model(tiny_bert, parse_prune(level))
    for layer in pruned.bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == heads
        assert layer.attention.self.query.out_features == heads * 8
        assert layer.attention.output.dense.in_features == heads * 8
        assert layer.intermediate.dense.out_features == ffn
        assert layer.output.dense.in_features == ffn
    # q/k/v weights + biases and the output projection's weight shrink with the head count
    assert _attention_params(tiny_bert) - _attention_params(pruned) == 2 * (4 - heads) * 8 * (
        3 * 32 + 3 + 32)
    assert tiny_bert.bert.encoder.layer[0].attention.self.num_attention_heads == 4  # a copy

    ids = {k: torch.from_numpy(v) for k, v in TOKENS.items()}
    with torch.no_grad():
        ref = tiny_bert(**ids).numpy()
        got = pruned(**ids).numpy()
    assert got.shape == ref.shape and not np.allclose(got, ref)
    path = _export(tiny_bert, parse_prune(level), tmp_path / "bert.onnx", example=TOKENS)
    assert onnx.load(str(path)).opset_import[0].version == 17
    np.testing.assert_allclose(_run(path, TOKENS), got, atol=1e-4)
    stats = inspect_artifact(path)
    dense_matmul = 2 * (4 * 32 * 32 + 2 * 32 * 64)
    removed = 2 * ((4 - heads) * 8 * 32 * 4 + (64 - ffn) * 32 * 2)
    assert stats.params == dense_matmul - removed
    assert stats.sparsity_pattern == level.split("-")[0]


def test_head_pruning_keeps_the_heads_of_largest_norm(tiny_bert: torch.nn.Module) -> None:
    sa = tiny_bert.bert.encoder.layer[1].attention.self
    dense = tiny_bert.bert.encoder.layer[1].attention.output.dense
    score = sum((getattr(sa, k).weight.detach() ** 2).sum(1).view(4, 8).sum(1)
                for k in ("query", "key", "value"))
    score = score + (dense.weight.detach() ** 2).sum(0).view(4, 8).sum(1)
    kept = torch.sort(torch.topk(score, 2).indices).values
    rows = (kept[:, None] * 8 + torch.arange(8)).reshape(-1)
    pruned = prune_model(tiny_bert, parse_prune("head-l2-50"))
    got = pruned.bert.encoder.layer[1].attention.self.key.weight.detach()
    assert torch.equal(got, sa.key.weight.detach()[rows])


# ----------------------------------------------------------------------------- with quantization


class _TinyCNN(Workload):
    """A tiny real workload for the build path (prune -> export -> quantize)."""

    name = "tiny_cnn"

    def __init__(self, *, honour_prune: bool = True):
        self.honour_prune = honour_prune

    def fingerprint(self) -> dict[str, Any]:
        return {"workload": self.name, "honour_prune": self.honour_prune}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        spec = prune if self.honour_prune else parse_prune(0)
        export_onnx(prune_model(_cnn(seed=6), spec, example=X), X, out)

    def timing_inputs(self) -> Feeds:
        return X

    def calibration_inputs(self) -> list[Feeds]:
        return CALIB


@pytest.mark.parametrize("quant", ["int8-static", "int8-dynamic"])
def test_prune_then_quantize_keeps_pattern_and_params(tmp_path: Path, quant: str) -> None:
    from harness.build import build_artifact
    from harness.core.types import ArtifactRef
    from harness.predict import artifact_facts
    from harness.variants import parse_quant

    work, q = _TinyCNN(), parse_quant(quant)
    fp32_24 = build_artifact(work, quant=parse_quant("fp32"), prune=parse_prune("2:4"),
                             cache_dir=tmp_path)
    int8_24 = build_artifact(work, quant=q, prune=parse_prune("2:4"), cache_dir=tmp_path)
    s = inspect_artifact(int8_24)
    assert s.sparsity_pattern == "2:4" and s.is_2_4  # zeros quantize to the zero point
    assert s.params == inspect_artifact(fp32_24).params

    fp32_ch = build_artifact(work, quant=parse_quant("fp32"),
                             prune=parse_prune("channel-l2-50"), cache_dir=tmp_path)
    int8_ch = build_artifact(work, quant=q, prune=parse_prune("channel-l2-50"),
                             cache_dir=tmp_path)
    facts = artifact_facts(int8_ch, ref=ArtifactRef.from_path(int8_ch, format="onnx"))
    assert facts.sparsity_pattern == "channel" and facts.is_2_4 is False
    assert facts.params == inspect_artifact(fp32_ch).params
    dense = build_artifact(work, quant=q, prune=parse_prune(0), cache_dir=tmp_path)
    assert facts.params < 0.4 * inspect_artifact(dense).params
    assert inspect_artifact(dense).sparsity_pattern is None
    assert _run(int8_ch, X).shape == (1, 3)


def test_finetune_levels_need_a_workload_that_can_finetune(tmp_path: Path) -> None:
    from harness.build import build_artifact
    from harness.variants import parse_quant

    with pytest.raises(Unsupported, match="no fine-tuning recipe"):
        build_artifact(_TinyCNN(), quant=parse_quant("fp32"),
                       prune=parse_prune("channel-l1-25+ft"), cache_dir=tmp_path)


def test_build_refuses_a_2_4_claim_the_weights_do_not_keep(tmp_path: Path) -> None:
    from harness.build import build_artifact
    from harness.variants import parse_quant

    with pytest.raises(RuntimeError, match="does not follow 2:4"):
        build_artifact(_TinyCNN(honour_prune=False), quant=parse_quant("fp32"),
                       prune=parse_prune("2:4"), cache_dir=tmp_path)
    stamped = tmp_path / "s.onnx"
    _export(_cnn(), parse_prune("2:4"), stamped)
    assert {p.key for p in onnx.load(str(stamped)).metadata_props} >= {PATTERN_KEY}


@pytest.mark.slow
def test_digits_channel_pruning_shrinks_and_finetune_recovers(tmp_path: Path) -> None:
    """The real digits CNN: 50% of channels go, and the deterministic fine-tune pays back."""
    from harness.workloads.digits import DigitsCNN

    work = DigitsCNN()

    def build(level: str, name: str) -> tuple[Path, float]:
        path = tmp_path / f"{name}.onnx"
        work.export_fp32(path, prune=parse_prune(level), cache_dir=tmp_path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        quality = work.evaluate(lambda f: sess.run(None, f))
        assert quality is not None
        return path, quality.value

    dense, acc_dense = build("0", "dense")
    pruned, acc_pruned = build("channel-l1-50", "pruned")
    tuned, acc_tuned = build("channel-l1-50+ft", "tuned")
    again, _ = build("channel-l1-50+ft", "again")
    assert inspect_artifact(pruned).params < 0.4 * inspect_artifact(dense).params
    assert inspect_artifact(tuned).params == inspect_artifact(pruned).params
    assert artifact_size_bytes(pruned) < 0.4 * artifact_size_bytes(dense)
    assert acc_tuned > acc_pruned and acc_tuned >= acc_dense - 0.02
    assert _weights(tuned).keys() == _weights(again).keys()
    for name, w in _weights(tuned).items():  # the fine-tune is deterministic
        assert np.array_equal(w, _weights(again)[name]), name


class _Residual(torch.nn.Module):
    """Stem, a residual block with a depthwise conv, global pool, classifier."""

    def __init__(self) -> None:
        from torch import nn

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.pw(torch.relu(self.dw(h))))


def test_channel_pruning_follows_residual_and_depthwise_couplings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Residual().eval()
    pruned = prune_model(model, parse_prune("channel-l2-50"), example=X)
    # the add couples stem and pw outputs; the depthwise conv follows its input channels
    assert pruned.stem[0].out_channels == pruned.pw.out_channels == pruned.dw.groups == 8
    assert pruned.head[2].in_features == 8
    path = _export(model, parse_prune("channel-l2-50"), tmp_path / "res.onnx")
    assert _run(path, X).shape == (1, 3)
    assert inspect_artifact(path).params == 4 * 8 * 9 + 8 * 9 + 8 * 8 + 8 * 3


def test_onnx_weights_stored_in_constant_nodes_are_pruned_and_counted(tmp_path: Path) -> None:
    """PaddlePaddle exports (PP-OCR) keep conv weights in Constant nodes, not initializers."""
    w = np.random.default_rng(7).standard_normal((8, 8, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w")),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "c", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, str(tmp_path / "dense.onnx"))
    assert inspect_artifact(tmp_path / "dense.onnx").params == w.size
    for level in ("2:4", "50"):
        path = tmp_path / "p.onnx"
        onnx.save(prune_onnx(model, parse_prune(level)), str(path))
        stats = inspect_artifact(path)
        assert stats.params == w.size and stats.sparsity == pytest.approx(0.5)
        assert stats.is_2_4 == (level == "2:4")
        x = {"x": np.ones((1, 8, 4, 4), np.float32)}
        assert _run(path, x).shape == (1, 8, 4, 4)
    empty = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "e",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]), ir_version=10)
    for level in ("2:4", "50"):
        with pytest.raises(Unsupported):
            prune_onnx(empty, parse_prune(level))
