"""The emulator on architectures outside the calibration set, built in code (issue 12).

Each architecture is a ``transformers`` model class with a tiny random-weight config (nothing
is downloaded), exported to ONNX with fully static inputs by the exporter the harness uses
(:func:`harness.compress.torch_export.export_onnx`), loaded with ``load_graph`` and costed on
the Snapdragon 8 Gen 3 profile. They cover op classes the calibration set lacks or has once:
grouped convolutions with squeeze-excitation (RegNet), dense dilated convolutions in an ASPP
segmentation head (MobileViT + DeepLabV3), dilated depthwise convolutions with a DeepLabV3+
head (MobileNetV2 at output stride 8), depthwise-separable stacks with LayerNorm and GELU
(ConvNeXt), a transformer with efficient (spatially reduced) attention and an all-MLP
segmentation decoder (SegFormer), and a GELU/LayerNorm encoder with an ``attention_mask`` input
and position ids computed from the token ids (RoBERTa).

No published latency exists for these exact models, so nothing here checks a latency. What is
checked are the principles the emulator promises for any model with static inputs:

* every tensor's shape is resolved and no node leaves the NPU for want of shapes;
* every convolution and matrix product does work, of the right op class (a grouped convolution
  is a dense conv with its work divided by the groups, one channel per group is depthwise);
* the work of those nodes equals the MACs torch counts for the same forward pass;
* at int8 and fp16 (what-if precision), with ``unit="auto"`` and ``unit="npu"``, every
  convolution and matrix product runs on the NPU and no node falls back to the CPU (every op
  these graphs use is on the QNN HTP op list);
* quantized as stored by the harness's own quantizers (int8-static QDQ, fp16), every
  convolution and matrix product runs on the NPU at the artifact's precision and nothing else
  leaves it but the casts at the graph's edges (float ops left in a QDQ graph run at fp16 on
  the HTP, as QNN's EP runs them).

Four fixes came out of these models, pinned on small graphs in tests/test_emulator.py: CumSum
(RoBERTa's position ids) had no cost rule; the QNN HTP op set lacked IsNaN (written by torch's
exporter into attention with a boolean mask), which sent each attention layer of such an
encoder to the CPU and back; arithmetic on constants (MobileNetV2's pads, computed from its
static shape) ran as int64 nodes the NPU refused instead of being folded; and integer index
and mask arithmetic (RoBERTa's position ids) was taken as fp32, which the NPU lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from harness.emulator import Graph, load_graph, predict_latency
from harness.emulator.graph import DATA_MOVEMENT_OPS
from harness.profiles import DeviceProfile, load_profile

pytest.importorskip("transformers")
pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # every model is built from a config, never fetched

import torch  # after the importorskip guards
import transformers

HEAVY_OPS = ("Conv", "MatMul", "Gemm")
IMAGE = 64          # pixels a side: small enough for ~1 s per model, deep enough for 4 stages
SEQUENCE = 64       # tokens


# --------------------------------------------------------------------------- the architectures


@dataclass(frozen=True)
class Arch:
    """How to build one architecture. ``make(attn)`` returns the model and its config; ``attn``
    is an attention implementation to force (None: the model's default, which users export)."""

    make: Callable[[str | None], tuple[torch.nn.Module, Any]]
    inputs: Callable[[], dict[str, np.ndarray]]
    # Submodules torch runs but whose output never reaches the model's output: tracing drops
    # them from the ONNX graph, so their MACs are taken out of torch's count.
    dead: tuple[str, ...] = ()


def _pixels() -> dict[str, np.ndarray]:
    return {"pixel_values": np.random.default_rng(0).standard_normal(
        (1, 3, IMAGE, IMAGE)).astype(np.float32)}


def _tokens() -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(3, 1000, size=(1, SEQUENCE), dtype=np.int64)
    mask = np.ones((1, SEQUENCE), dtype=np.int64)
    mask[:, -8:] = 0   # padded tail: the mask is a real input, not all ones
    return {"input_ids": ids, "attention_mask": mask}


def _config(cls: type, attn: str | None, **kw: Any) -> Any:
    config = cls(**kw)
    if attn is not None:
        config._attn_implementation = attn
    return config


def _regnet(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # RegNetY: grouped 3x3 convs (8 channels per group, so groups > 1 but not depthwise) and a
    # squeeze-excitation block (GlobalAveragePool -> 1x1 conv -> ReLU -> 1x1 conv -> Sigmoid)
    # in every layer.
    c = _config(transformers.RegNetConfig, attn, embedding_size=16,
                hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 2, 1], groups_width=8,
                layer_type="y")
    return transformers.RegNetModel(c), c


def _mobilevit_deeplab(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # MobileViT with its DeepLabV3 head: ASPP with three dense 3x3 convs dilated by the atrous
    # rates, an image-pooling branch and a projection; output stride 16 also dilates the last
    # stage's depthwise convs.
    c = _config(transformers.MobileViTConfig, attn, image_size=IMAGE, hidden_sizes=[32, 48, 64],
                neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 96], num_attention_heads=2,
                aspp_out_channels=32, atrous_rates=[2, 4, 6], output_stride=16, num_labels=5)
    return transformers.MobileViTForSemanticSegmentation(c), c


def _mobilenet_v2_deeplab(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # MobileNetV2 at output stride 8 (its last stages' depthwise convs dilated by 2 and 4) with
    # the DeepLabV3+ style head; TF "same" padding makes Pad nodes from computed shapes.
    c = _config(transformers.MobileNetV2Config, attn, image_size=IMAGE, depth_multiplier=0.35,
                output_stride=8, num_labels=5)
    return transformers.MobileNetV2ForSemanticSegmentation(c), c


def _convnext(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # Depthwise 7x7 conv -> LayerNorm -> Linear -> GELU -> Linear blocks (pointwise MatMuls).
    c = _config(transformers.ConvNextConfig, attn, image_size=IMAGE,
                hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 2, 1])
    return transformers.ConvNextModel(c), c


def _segformer(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # Efficient attention (keys and values from a strided conv of the sequence), Mix-FFN with a
    # depthwise conv, and the all-MLP decoder that resizes and fuses four scales.
    c = _config(transformers.SegformerConfig, attn, image_size=IMAGE,
                hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                num_attention_heads=[1, 2, 2, 4], decoder_hidden_size=32, num_labels=5)
    return transformers.SegformerForSemanticSegmentation(c), c


def _roberta(attn: str | None) -> tuple[torch.nn.Module, Any]:
    # A BERT-family encoder whose position ids come from the token ids (Equal/Not -> CumSum)
    # and whose attention_mask input is turned into an additive mask inside the graph.
    c = _config(transformers.RobertaConfig, attn, vocab_size=1000, hidden_size=64,
                num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                max_position_embeddings=SEQUENCE + 2)
    return transformers.RobertaModel(c, add_pooling_layer=False), c


ARCHS: Mapping[str, Arch] = {
    "regnet-y": Arch(_regnet, _pixels),
    "mobilevit-deeplabv3": Arch(_mobilevit_deeplab, _pixels),
    # The backbone's final 1x1 conv (to 1280 channels) feeds only the classifier's pooler,
    # which the segmentation model does not use.
    "mobilenetv2-deeplabv3plus": Arch(_mobilenet_v2_deeplab, _pixels,
                                      dead=("mobilenet_v2.conv_1x1",)),
    "convnext": Arch(_convnext, _pixels),
    "segformer": Arch(_segformer, _pixels),
    "roberta": Arch(_roberta, _tokens),
}


class _FirstOutput(torch.nn.Module):
    """The model called with named inputs, returning its first output (last hidden state or
    logits), as a user exporting it would."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args, strict=True)))[0]


@dataclass(frozen=True)
class Built:
    name: str
    path: Path
    graph: Graph
    proto: onnx.ModelProto
    config: Any
    torch_macs: float


def _torch_macs(arch: Arch, example: Mapping[str, np.ndarray]) -> float:
    """MACs of one forward pass by torch's FlopCounterMode, as harness.calibration.refmodels
    counts them (convolutions and matrix products), minus the arch's dead submodules.

    Counted with eager attention: FlopCounterMode has no formula for the CPU kernel of
    scaled_dot_product_attention (aten._scaled_dot_product_flash_attention_for_cpu), so with
    the default SDPA the attention's two matrix products would be missing from the count.
    Same shapes, same arithmetic.
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, _ = arch.make("eager")
    wrapper = _FirstOutput(model.eval(), list(example))
    args = [torch.from_numpy(a) for a in example.values()]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        wrapper(*args)
    per_module = counter.get_flop_counts()
    root = f"{type(wrapper).__name__}.model"
    dead = sum(sum(per_module[f"{root}.{d}"].values()) for d in arch.dead)
    return (counter.get_total_flops() - dead) / 2


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Builds and exports each architecture once for the module."""
    from harness.compress.torch_export import export_onnx

    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            arch = ARCHS[name]
            example = arch.inputs()
            torch.manual_seed(0)
            model, config = arch.make(None)
            out = tmp_path_factory.mktemp("coverage") / f"{name}.onnx"
            # input_axes/output_axes None: every dimension static, as for an NPU.
            export_onnx(_FirstOutput(model.eval(), list(example)), example, out,
                        input_axes=None, output_axes=None)
            proto = onnx.load(out, load_external_data=False)
            cache[name] = Built(name, out, load_graph(out), proto, config,
                                _torch_macs(arch, example))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def gen3() -> DeviceProfile:
    return load_profile("snapdragon8gen3")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _weight_dims(proto: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in proto.graph.initializer}


# --------------------------------------------------------------------------- the principles


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_shape_resolves_from_static_inputs(build: Callable[[str], Built],
                                                 name: str) -> None:
    g = build(name).graph
    assert g.fixed_dims == ()   # nothing assumed: the inputs are static
    assert g.unresolved == (), dict(g.unresolved_why)
    assert [n.name for n in g.nodes if not n.shape_known] == []
    assert g.unknown_ops == ()   # every op has a cost rule


@pytest.mark.parametrize("name", list(ARCHS))
def test_heavy_nodes_do_work_of_their_class(build: Callable[[str], Built], name: str) -> None:
    """Every Conv/MatMul/Gemm does work, in the class its weight says; no node a device runs
    does zero work unless it only moves data."""
    b = build(name)
    weights = _weight_dims(b.proto)
    protos = {n.name: n for n in b.proto.graph.node}
    heavy = [n for n in b.graph.nodes if n.op_type in HEAVY_OPS]
    assert heavy
    for n in heavy:
        assert n.work_ops > 0, n.name
        if n.op_type != "Conv":
            assert n.op_class == "matmul", n.name
            continue
        group = _attrs(protos[n.name]).get("group", 1)
        per_group = weights[protos[n.name].input[1]][1]    # W: [Cout, Cin/groups, kh, kw]
        want = "depthwise" if group > 1 and per_group == 1 else "conv"
        assert n.op_class == want, (n.name, group, per_group)
    idle = [n.name for n in b.graph.nodes
            if not n.fused and n.work_ops == 0 and n.op_type not in DATA_MOVEMENT_OPS]
    assert idle == []


@pytest.mark.parametrize("name", list(ARCHS))
def test_work_equals_torch_macs(build: Callable[[str], Built], name: str) -> None:
    """The convolutions' and matrix products' work is what torch counts for the same pass."""
    b = build(name)
    macs = sum(n.work_ops for n in b.graph.nodes if n.op_type in HEAVY_OPS) / 2
    assert macs == pytest.approx(b.torch_macs, rel=0.02)


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("precision", ["int8", "fp16"])
@pytest.mark.parametrize("unit", ["auto", "npu"])
def test_runs_on_the_npu_without_fallback(build: Callable[[str], Built], gen3: DeviceProfile,
                                          name: str, precision: str, unit: str) -> None:
    lat = predict_latency(build(name).graph, gen3, unit=unit, precision=precision)
    assert [f for f in lat.fallbacks if "shape:" in f] == []
    assert [n.name for n in lat.nodes if n.unknown_shapes] == []
    # Nothing leaves the NPU: every op of these graphs is on the QNN HTP list.
    assert lat.fallbacks == ()
    off_npu = [(n.name, n.unit) for n in lat.nodes
               if n.op_type in HEAVY_OPS and n.unit != "npu"]
    assert off_npu == []
    assert lat.main_unit == "npu"


# --------------------------------------------------------------------------- as quantized

# The float ops ORT's QDQ quantizer leaves unquantized (GELU's Div and Erf; in a transformer,
# LayerNorm, Softmax, the adds) are fp32 nodes. They used to fall back to the CPU and back
# (the NPU has no fp32 rate); the Snapdragon profiles now say their HTP runs fp32 at fp16
# (`fp32_as`, QNN EP's enable_htp_fp16_precision), so these pass for MobileViT, SegFormer,
# ConvNeXt and RoBERTa at int8-static as well.


@pytest.fixture(scope="module")
def quantized(build: Callable[[str], Built],
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Graph]:
    """Each export quantized by the harness's own quantizer, as a sweep builds its artifacts."""
    from harness.compress.quantize import quantize
    from harness.variants import parse_quant

    cache: dict[tuple[str, str], Graph] = {}

    def get(name: str, level: str) -> Graph:
        if (name, level) not in cache:
            dst = tmp_path_factory.mktemp("quantized") / f"{name}.{level}.onnx"
            example = ARCHS[name].inputs()
            quantize(build(name).path, dst, parse_quant(level), calibration=[example] * 2)
            cache[name, level] = load_graph(dst)
        return cache[name, level]

    return get


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize(("level", "precision"), [("int8-static", "int8"), ("fp16", "fp16")])
def test_quantized_artifact_runs_on_the_npu(quantized: Callable[[str, str], Graph],
                                           gen3: DeviceProfile, name: str, level: str,
                                           precision: str) -> None:
    """As stored (no what-if precision): every Conv/MatMul/Gemm on the NPU at the artifact's
    precision, and nothing off the NPU but the casts at the graph's edges (the fp16 converter
    keeps fp32 inputs and outputs; the app's side of the cast is the CPU's)."""
    g = quantized(name, level)
    assert g.unresolved == (), dict(g.unresolved_why)
    edges = set(g.inputs) | set(g.outputs)
    for unit in ("auto", "npu"):
        lat = predict_latency(g, gen3, unit=unit)
        assert [f for f in lat.fallbacks if "shape:" in f] == []
        heavy = [(n.name, n.unit, n.run_precision) for n in lat.nodes if n.op_type in HEAVY_OPS]
        assert heavy and all(u == "npu" and p == precision for _, u, p in heavy), (unit, heavy)
        facts = {f.name: f for f in g.nodes}
        stray = [n.name for n in lat.nodes if n.fallback and not (
            n.op_type == "Cast" and set(facts[n.name].inputs + facts[n.name].outputs) & edges)]
        assert stray == [], unit


# --------------------------------------------------------------------------- hand counts


def test_grouped_conv_is_dense_work_divided_by_groups(build: Callable[[str], Built]) -> None:
    """RegNetY's first stage: the 3x3 grouped conv (stride 2) after the stem.

    The stem (stride 2) gives 16 channels at 32x32; the stage's bottleneck keeps 16 channels
    and its grouped conv, 16 / groups_width 8 = 2 groups of 8 channels, strides to 16x16:
    16 x 16 x 16 outputs x 8 input channels x 9 taps MACs.
    """
    b = build("regnet-y")
    protos = {n.name: n for n in b.proto.graph.node}
    grouped = [n for n in b.graph.nodes
               if n.op_type == "Conv" and _attrs(protos[n.name]).get("group", 1) > 1]
    assert len(grouped) == 5   # one per layer: depths 1 + 1 + 2 + 1
    first = grouped[0]
    assert _attrs(protos[first.name])["group"] == 2
    assert b.graph.tensors[first.outputs[0]].shape == (1, 16, 16, 16)
    assert first.op_class == "conv"
    assert first.work_ops == 2 * (16 * 16 * 16) * 8 * 9


def test_dilated_aspp_convs_are_hand_counted(build: Callable[[str], Built]) -> None:
    """MobileViT's ASPP: one dense 3x3 conv per atrous rate, dilated by it, on the last stage's
    map (64 / output stride 16 = 4x4) of neck_hidden_sizes[-2] channels, to aspp_out_channels.
    Dilation spreads the taps; it does not change the MACs per output."""
    b = build("mobilevit-deeplabv3")
    c = b.config
    side = IMAGE // c.output_stride
    protos = {n.name: n for n in b.proto.graph.node}
    by_rate = {}
    for n in b.graph.nodes:
        a = _attrs(protos[n.name]) if n.op_type == "Conv" else {}
        if a.get("group", 1) == 1 and a.get("dilations", [1, 1])[0] > 1:
            by_rate[a["dilations"][0]] = n
    assert sorted(by_rate) == sorted(c.atrous_rates)
    want = 2 * (c.aspp_out_channels * side * side) * c.neck_hidden_sizes[-2] * 9
    for rate, n in by_rate.items():
        assert b.graph.tensors[n.outputs[0]].shape == (1, c.aspp_out_channels, side, side), rate
        assert n.op_class == "conv"
        assert n.work_ops == want, rate


def test_dilated_depthwise_convs_are_depthwise(build: Callable[[str], Built]) -> None:
    """MobileNetV2 at output stride 8 dilates its later depthwise convs instead of striding:
    they stay depthwise, on an 8x8 map, with 9 MACs per output."""
    b = build("mobilenetv2-deeplabv3plus")
    protos = {n.name: n for n in b.proto.graph.node}
    dilated = [n for n in b.graph.nodes if n.op_type == "Conv"
               and _attrs(protos[n.name]).get("dilations", [1, 1])[0] > 1]
    assert {_attrs(protos[n.name])["dilations"][0] for n in dilated} == {2, 4}
    for n in dilated:
        out = b.graph.tensors[n.outputs[0]].shape
        assert out[2:] == (IMAGE // 8, IMAGE // 8)
        assert n.op_class == "depthwise"
        assert n.work_ops == 2 * int(np.prod(out)) * 9


# --------------------------------------------------------------------------- the exports


def test_exports_are_static_and_run_in_onnxruntime(build: Callable[[str], Built]) -> None:
    """The exports are fully static files onnxruntime can load (a guard on the exporter path,
    so a failure above is the emulator's and not a broken export)."""
    import onnxruntime as ort

    b = build("roberta")
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in b.proto.graph.input]
    assert dims == [[1, SEQUENCE], [1, SEQUENCE]]
    session = ort.InferenceSession(b.proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, _tokens())
    assert out.shape == (1, SEQUENCE, 64)
