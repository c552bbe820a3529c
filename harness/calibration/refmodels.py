"""The reference architectures that ``published_latency.csv`` measures, as ONNX files.

Qualcomm AI Hub's model cards time torchvision's classifiers at 224x224, YOLOv8-N at 640x640,
MobileBERT at 384 tokens and Whisper tiny.en's encoder and one decoder step, all at batch 1.
torchvision cannot be installed beside torch 2.13 here and the pretrained weights may not be
downloaded, so each model is rebuilt in plain PyTorch from its published definition (MobileBERT
from ``transformers`` model classes built from a config) with seeded random weights: latency does
not depend on the values of the weights, only on the graph and its shapes.

Each :class:`RefModel` names the CSV's ``model`` value it stands for, its input shapes, and the
published multiply-accumulate count it should reproduce (or, where nothing is published for that
exact configuration, ``None`` and why). :meth:`RefModel.build_onnx` exports once with the legacy
exporter (opset 17, IR <= 10, static batch 1) into ``<cache>/refmodels/<name>-<key>.onnx``; the
key covers the recipe version and the torch (and transformers) version, so an upgrade rebuilds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.cache import default_cache_dir, key_of
from harness.compress.torch_export import OPSET, export_onnx
from harness.errors import InputError, Unsupported, unknown_name
from harness.fsutil import atomic_path

if TYPE_CHECKING:
    import torch

# Bump when a builder changes the graph it exports (cached files are keyed by it).
RECIPE_VERSION = 1
SEED = 0

TORCHVISION_DOCS = "https://pytorch.org/vision/stable/models.html (table: Params, GFLOPS)"


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (batch 1, every dimension fixed) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not self.name:
            raise InputError("an input needs a name", field="name")
        if not self.shape or any(not isinstance(d, int) or d < 1 for d in self.shape):
            raise InputError(f"expected positive integer dimensions, got {self.shape!r}",
                             field=f"{self.name}.shape")
        if self.dtype not in ("float32", "int32", "int64"):
            raise InputError(f"expected float32, int32 or int64, got {self.dtype!r}",
                             field=f"{self.name}.dtype")


@dataclass(frozen=True)
class RefModel:
    """A reference architecture of the calibration data, buildable as an ONNX file.

    ``published_macs`` / ``published_params`` are the figures the literature gives for exactly
    this configuration, ``None`` where there is none (``macs_source`` then says why); a test
    checks the exported graph against them.
    """

    name: str
    description: str
    input_shapes: tuple[InputSpec, ...]
    published_macs: float | None
    published_params: float | None
    macs_source: str
    builder: Callable[[], torch.nn.Module] = field(repr=False, compare=False)
    output_names: tuple[str, ...] = ("output",)
    needs: tuple[str, ...] = ()          # extra packages (besides torch) the builder imports

    def __post_init__(self) -> None:
        if not self.name or not self.input_shapes:
            raise InputError("a reference model needs a name and inputs", field="name")
        for fig in (self.published_macs, self.published_params):
            if fig is not None and not (math.isfinite(fig) and fig > 0):
                raise InputError(f"expected a positive figure, got {fig!r}",
                                 field=f"{self.name}.published")
        if not self.macs_source:
            raise InputError("every figure needs a source", field=f"{self.name}.macs_source")

    @property
    def file_stem(self) -> str:
        """The name as a file name ('whisper_tiny_en/WhisperEncoderInf' has a slash)."""
        return self.name.replace("/", ".")

    def cache_key(self) -> str:
        """What the exported file depends on: recipe, seed, inputs and tool versions."""
        import torch

        versions = {"torch": str(torch.__version__)}
        for pkg in self.needs:
            versions[pkg] = _version_of(pkg)
        return key_of({"recipe": RECIPE_VERSION, "seed": SEED, "name": self.name,
                       "inputs": [(i.name, i.shape, i.dtype) for i in self.input_shapes],
                       "opset": OPSET, **versions})[:16]

    def example_inputs(self) -> dict[str, np.ndarray]:
        """Seeded example inputs of the declared shapes (token ids and indices in range)."""
        rng = np.random.default_rng(SEED)
        out: dict[str, np.ndarray] = {}
        for spec in self.input_shapes:
            if spec.dtype == "float32":
                out[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
            else:   # ids, positions, indices: small non-negative integers are valid for all
                out[spec.name] = np.zeros(spec.shape, dtype=spec.dtype)
        return out

    def build_module(self) -> torch.nn.Module:
        """The torch module in eval mode, weights drawn from a fixed seed."""
        import torch

        for pkg in self.needs:
            _require(pkg, self.name)
        torch.manual_seed(SEED)
        return self.builder().eval()

    def build_onnx(self, cache_dir: Path | None = None) -> Path:
        """The exported model, built on first use and cached; returns its path.

        The file is written under a temporary name and renamed, so a concurrent or interrupted
        build never leaves a half-written model behind the final name.
        """
        cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
        out = cache_dir / "refmodels" / f"{self.file_stem}-{self.cache_key()}.onnx"
        if out.is_file():
            return out
        with atomic_path(out) as tmp:
            export_onnx(self.build_module(), self.example_inputs(), tmp,
                        output_names=self.output_names, input_axes=None, output_axes=None)
        return out


def param_count(module: torch.nn.Module) -> int:
    """Parameters of a module, each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def torch_macs(ref: RefModel) -> float:
    """MACs of one forward pass counted by torch's FlopCounterMode (matmuls and convolutions):
    an independent check of the ONNX count where no published figure exists."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = ref.build_module()
    args = [torch.from_numpy(a) for a in ref.example_inputs().values()]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops() / 2


@dataclass(frozen=True)
class BuildReport:
    """What building one reference model gave: file, size, time, parameters and MACs."""

    name: str
    path: Path
    params: int
    macs: float              # the emulator's count: Graph.work_ops / 2
    published_macs: float | None
    published_params: float | None
    torch_macs: float        # torch's FlopCounterMode / 2, matmuls and convolutions only
    export_s: float
    size_mb: float

    @property
    def macs_error_pct(self) -> float | None:
        if self.published_macs is None:
            return None
        return 100.0 * (self.macs - self.published_macs) / self.published_macs


def build_report(name: str, *, cache_dir: Path | None = None) -> BuildReport:
    """Build (or reuse) one reference model and measure it with the emulator's graph reader."""
    from harness.cache import artifact_size_bytes
    from harness.emulator import load_graph

    ref = get(name)
    t0 = time.perf_counter()
    path = ref.build_onnx(cache_dir)
    export_s = time.perf_counter() - t0
    graph = load_graph(path)
    return BuildReport(name=name, path=path, params=param_count(ref.build_module()),
                       macs=graph.work_ops / 2, published_macs=ref.published_macs,
                       published_params=ref.published_params, torch_macs=torch_macs(ref),
                       export_s=export_s,
                       size_mb=artifact_size_bytes(path) / 1e6)


def get(name: str) -> RefModel:
    """The reference model called ``name`` (the CSV's ``model`` value); InputError if unknown."""
    try:
        return REFERENCE_MODELS[name]
    except KeyError:
        raise unknown_name("reference model", name, REFERENCE_MODELS, field="model") from None


def _version_of(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "absent"


def _require(pkg: str, name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(pkg) is None:
        raise Unsupported(f"reference model {name!r} needs the {pkg!r} package "
                          "(pip install -c constraints.txt -e '.[build]')")


# =========================================================================== builders
# Every builder imports torch inside, so importing this module stays cheap.


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (MobileNet/EfficientNet): nearest multiple, >= 90% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: Callable[[], torch.nn.Module] | None = None) -> torch.nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias), BatchNorm, optional activation."""
    from torch import nn

    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _mobilenet_v2() -> torch.nn.Module:
    """torchvision.models.mobilenet_v2 (width 1.0, 1000 classes)."""
    from torch import nn

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int):
            super().__init__()
            hidden = round(cin * expand)
            self.use_res = stride == 1 and cin == cout
            layers: list[nn.Module] = []
            if expand != 1:
                layers.append(_conv_bn_act(cin, hidden, 1, act=nn.ReLU6))
            layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                       _conv_bn_act(hidden, cout, 1)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res else self.conv(x)

    # (expansion t, channels c, repeats n, first stride s): torchvision's table.
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    cin = _make_divisible(32)
    features: list[nn.Module] = [_conv_bn_act(3, cin, 3, 2, act=nn.ReLU6)]
    for t, c, n, s in settings:
        cout = _make_divisible(c)
        for i in range(n):
            features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
    features.append(_conv_bn_act(cin, 1280, 1, act=nn.ReLU6))
    return nn.Sequential(nn.Sequential(*features), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Dropout(0.2), nn.Linear(1280, 1000))


def _resnet50() -> torch.nn.Module:
    """torchvision.models.resnet50 (Bottleneck [3, 4, 6, 3], stride on the 3x3: 'v1.5')."""
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                _conv_bn_act(cin, width, 1, act=lambda: nn.ReLU(inplace=True)),
                _conv_bn_act(width, width, 3, stride, act=lambda: nn.ReLU(inplace=True)),
                _conv_bn_act(width, cout, 1))
            self.down = (_conv_bn_act(cin, cout, 1, stride) if stride != 1 or cin != cout
                         else nn.Identity())
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.body(x) + self.down(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


def _vit_b_16() -> torch.nn.Module:
    """torchvision.models.vit_b_16 at 224: 16x16 patches, 12 layers, width 768, 12 heads."""
    import torch
    from torch import nn

    hidden, heads, layers, mlp, patch, image = 768, 12, 12, 3072, 16, 224
    seq = (image // patch) ** 2 + 1

    class EncoderBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
            # nn.MultiheadAttention's weights (one packed in-projection, an out-projection),
            # written out: in eval its fused fast path has no ONNX export.
            self.in_proj = nn.Linear(hidden, 3 * hidden)
            self.out_proj = nn.Linear(hidden, hidden)
            self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Linear(mlp, hidden))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, heads, -1).transpose(1, 2)
                       for z in self.in_proj(self.ln_1(x)).chunk(3, dim=-1))
            w = torch.softmax(q @ k.transpose(-1, -2) * (hidden // heads) ** -0.5, dim=-1)
            x = x + self.out_proj((w @ v).transpose(1, 2).reshape(b, t, hidden))
            return x + self.mlp(self.ln_2(x))

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_proj = nn.Conv2d(3, hidden, patch, patch)
            self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
            self.pos_embedding = nn.Parameter(torch.empty(1, seq, hidden).normal_(std=0.02))
            self.layers = nn.Sequential(*(EncoderBlock() for _ in range(layers)))
            self.ln = nn.LayerNorm(hidden, eps=1e-6)
            self.head = nn.Linear(hidden, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv_proj(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.ln(self.layers(x + self.pos_embedding))
            return self.head(x[:, 0])

    return ViT()


def _efficientnet_b0() -> torch.nn.Module:
    """torchvision.models.efficientnet_b0: MBConv with squeeze-excitation, SiLU, 1280 head."""
    from torch import nn

    class MBConv(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
            super().__init__()
            hidden = _make_divisible(cin * expand)
            squeeze = max(1, cin // 4)          # torchvision: a quarter of the block's input
            self.use_res = stride == 1 and cin == cout
            layers: list[nn.Module] = []
            if hidden != cin:
                layers.append(_conv_bn_act(cin, hidden, 1, act=nn.SiLU))
            layers.append(_conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU))
            self.pre = nn.Sequential(*layers)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden, squeeze, 1),
                                    nn.SiLU(), nn.Conv2d(squeeze, hidden, 1), nn.Sigmoid())
            self.project = _conv_bn_act(hidden, cout, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.pre(x)
            y = self.project(y * self.se(y))
            return x + y if self.use_res else y   # stochastic depth is the identity in eval

    # (expand, kernel, stride, in, out, repeats): torchvision's B0 table (width = depth = 1.0).
    table = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
             (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
             (6, 3, 1, 192, 320, 1)]
    layers: list[nn.Module] = [_conv_bn_act(3, 32, 3, 2, act=nn.SiLU)]
    for expand, k, stride, cin, cout, n in table:
        for i in range(n):
            layers.append(MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1,
                                 expand))
    layers.append(_conv_bn_act(320, 1280, 1, act=nn.SiLU))
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Dropout(0.2), nn.Linear(1280, 1000))


def _yolov8n_det() -> torch.nn.Module:
    """Ultralytics YOLOv8-N detection (yolov8.yaml, scale n: depth 0.33, width 0.25), 80 classes,
    with the decoding AI Hub's YoloV8Detector exports: DFL box decoding to xyxy pixels, best class
    score and index per anchor (8400 anchors at 640x640)."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, k: int = 1, s: int = 1) -> nn.Sequential:
        return _conv_bn_act(cin, cout, k, s, act=nn.SiLU)

    class Bottleneck(nn.Module):
        def __init__(self, c: int, shortcut: bool):
            super().__init__()
            self.cv1, self.cv2, self.add = conv(c, c, 3), conv(c, c, 3), shortcut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, cin: int, cout: int, n: int, shortcut: bool):
            super().__init__()
            self.c = cout // 2
            self.cv1 = conv(cin, 2 * self.c)
            self.cv2 = conv((2 + n) * self.c, cout)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = list(self.cv1(x).chunk(2, 1))
            for m in self.m:
                y.append(m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.cv1, self.cv2 = conv(cin, cin // 2), conv(cin // 2 * 4, cout)
            self.m = nn.MaxPool2d(5, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = [self.cv1(x)]
            for _ in range(3):
                y.append(self.m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class Detect(nn.Module):
        def __init__(self, nc: int, ch: tuple[int, ...], image: int):
            super().__init__()
            self.nc, self.reg_max = nc, 16
            c2, c3 = max(16, ch[0] // 4, self.reg_max * 4), max(ch[0], min(nc, 100))
            self.cv2 = nn.ModuleList(nn.Sequential(conv(x, c2, 3), conv(c2, c2, 3),
                                                   nn.Conv2d(c2, 4 * self.reg_max, 1))
                                     for x in ch)
            self.cv3 = nn.ModuleList(nn.Sequential(conv(x, c3, 3), conv(c3, c3, 3),
                                                   nn.Conv2d(c3, nc, 1)) for x in ch)
            self.dfl = nn.Conv2d(self.reg_max, 1, 1, bias=False).requires_grad_(False)
            self.dfl.weight.data[:] = torch.arange(self.reg_max, dtype=torch.float32).view(
                1, self.reg_max, 1, 1)
            anchors, strides = [], []
            for stride in (8, 16, 32):   # P3, P4, P5
                n = image // stride
                sy, sx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5,
                                        indexing="ij")
                anchors.append(torch.stack((sx, sy), -1).view(-1, 2))
                strides.append(torch.full((n * n, 1), float(stride)))
            self.register_buffer("anchors", torch.cat(anchors).T.unsqueeze(0))   # 1,2,A
            self.register_buffer("strides", torch.cat(strides).T.unsqueeze(0))   # 1,1,A

        def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
            b = feats[0].shape[0]
            x = torch.cat([torch.cat((self.cv2[i](f), self.cv3[i](f)), 1).view(
                b, 4 * self.reg_max + self.nc, -1) for i, f in enumerate(feats)], 2)
            box, cls = x.split((4 * self.reg_max, self.nc), 1)
            a = box.shape[-1]
            dist = self.dfl(box.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1))
            lt, rb = dist.view(b, 4, a).chunk(2, 1)
            anchors: Any = self.anchors      # registered buffers (mypy sees Tensor | Module)
            strides: Any = self.strides
            xyxy = torch.cat((anchors - lt, anchors + rb), 1) * strides
            scores, classes = cls.sigmoid().max(1)
            return xyxy.transpose(1, 2), scores, classes

    class YOLOv8(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Channels: width 0.25 of (64, 128, 256, 512, 1024); C2f repeats: round(n * 0.33).
            self.b0, self.b1 = conv(3, 16, 3, 2), conv(16, 32, 3, 2)
            self.b2, self.b3 = C2f(32, 32, 1, True), conv(32, 64, 3, 2)
            self.b4, self.b5 = C2f(64, 64, 2, True), conv(64, 128, 3, 2)
            self.b6, self.b7 = C2f(128, 128, 2, True), conv(128, 256, 3, 2)
            self.b8, self.b9 = C2f(256, 256, 1, True), SPPF(256, 256)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.h12, self.h15 = C2f(384, 128, 1, False), C2f(192, 64, 1, False)
            self.h16, self.h18 = conv(64, 64, 3, 2), C2f(192, 128, 1, False)
            self.h19, self.h21 = conv(128, 128, 3, 2), C2f(384, 256, 1, False)
            self.detect = Detect(80, (64, 128, 256), 640)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
            p4 = self.b6(self.b5(p3))
            p5 = self.b9(self.b8(self.b7(p4)))
            h12 = self.h12(torch.cat((self.up(p5), p4), 1))
            h15 = self.h15(torch.cat((self.up(h12), p3), 1))
            h18 = self.h18(torch.cat((self.h16(h15), h12), 1))
            h21 = self.h21(torch.cat((self.h19(h18), p5), 1))
            return self.detect([h15, h18, h21])

    return YOLOv8()


def _mobile_bert() -> torch.nn.Module:
    """AI Hub's MobileBertUncasedGoogle: transformers' MobileBertForMaskedLM (default config =
    google/mobilebert-uncased: 24 layers, 512 wide, 128-d bottlenecks, 4 stacked FFNs) over 384
    tokens, then the logits at the masked position and their argmax."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")   # configs are built in code, never fetched
    import torch
    from transformers import MobileBertConfig, MobileBertForMaskedLM

    class MaskedToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Eager attention: the traced graph is the plain matmul/softmax AI Hub compiles.
            config = MobileBertConfig()
            config._attn_implementation = "eager"
            self.model = MobileBertForMaskedLM(config)

        def forward(self, input_tokens: torch.Tensor, attention_masks: torch.Tensor,
                    mask_indices: torch.Tensor) -> torch.Tensor:
            logits = self.model(input_tokens, attention_mask=attention_masks).logits
            picked = logits[torch.arange(input_tokens.shape[0]), mask_indices.long()]
            return picked.argmax(dim=-1)

    return MaskedToken()


# Whisper tiny.en (openai-whisper ModelDimensions) and AI Hub's export constants
# (qai_hub_models/models/_shared/whisper/model.py): 30 s of audio = 3000 mel frames -> 1500
# encoder positions; the decoder is timed for one token with a 224-entry self-attention cache.
WHISPER_MELS, WHISPER_FRAMES, WHISPER_AUDIO_CTX = 80, 3000, 1500
WHISPER_STATE, WHISPER_HEADS, WHISPER_LAYERS, WHISPER_VOCAB = 384, 6, 4, 51864
WHISPER_DECODE_LEN = 224


def _whisper_block(cross: bool) -> torch.nn.Module:
    """openai-whisper's ResidualAttentionBlock weights (attention + optional cross + MLP)."""
    from torch import nn

    d = WHISPER_STATE

    def mha() -> nn.ModuleDict:
        return nn.ModuleDict({"query": nn.Linear(d, d), "key": nn.Linear(d, d, bias=False),
                              "value": nn.Linear(d, d), "out": nn.Linear(d, d)})

    parts: dict[str, nn.Module] = {"attn": mha(), "attn_ln": nn.LayerNorm(d),
                                   "mlp": nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(),
                                                        nn.Linear(4 * d, d)),
                                   "mlp_ln": nn.LayerNorm(d)}
    if cross:
        parts |= {"cross_attn": mha(), "cross_attn_ln": nn.LayerNorm(d)}
    return nn.ModuleDict(parts)


def _per_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """AI Hub's qkv_attention: q [1,H,1,dh], k [1,H,dh,T], v [1,H,T,dh], one matmul pair per
    head (that is the graph it compiles: many small matmuls, not one batched one)."""
    import torch

    outs = []
    for h in range(q.shape[1]):
        qk = q[:, h:h + 1] @ k[:, h:h + 1]
        if mask is not None:
            qk = qk + mask
        outs.append(torch.softmax(qk, dim=-1) @ v[:, h:h + 1])
    wv = torch.cat(outs, dim=1)
    return wv.reshape(wv.shape[0], 1, -1)


def _whisper_encoder() -> torch.nn.Module:
    """AI Hub's WhisperEncoderInf for tiny.en: the audio encoder (2 convs, 4 attention blocks
    over 1500 positions) followed by every decoder block's cross-attention key and value
    projections, returned as the cross-attention caches [4,6,64,1500] and [4,6,1500,64]."""
    import torch
    from torch import nn

    d, h, dh = WHISPER_STATE, WHISPER_HEADS, WHISPER_STATE // WHISPER_HEADS

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(WHISPER_MELS, d, 3, padding=1)
            self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
            self.register_buffer("positional_embedding", _sinusoids(WHISPER_AUDIO_CTX, d))
            self.blocks = nn.ModuleList(_whisper_block(cross=False)
                                        for _ in range(WHISPER_LAYERS))
            self.ln_post = nn.LayerNorm(d)
            # SplitLinear: the decoder blocks' cross K (no bias) / V projections, one per head.
            self.cross_k = nn.ModuleList(nn.ModuleList(nn.Linear(d, dh, bias=False)
                                                       for _ in range(h))
                                         for _ in range(WHISPER_LAYERS))
            self.cross_v = nn.ModuleList(nn.ModuleList(nn.Linear(d, dh) for _ in range(h))
                                         for _ in range(WHISPER_LAYERS))

        def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = nn.functional.gelu(self.conv1(audio))
            x = nn.functional.gelu(self.conv2(x)).permute(0, 2, 1)
            pos: Any = self.positional_embedding
            blocks: Any = self.blocks        # ModuleDicts: indexed by name below
            x = x + pos
            for blk in blocks:
                x = x + _self_attention(blk["attn"], blk["attn_ln"](x))
                x = x + blk["mlp"](blk["mlp_ln"](x))
            x = self.ln_post(x)
            cross_k: Any = self.cross_k
            cross_v: Any = self.cross_v
            k = torch.cat([torch.cat([lin(x).transpose(-1, -2) for lin in ks], dim=-3)
                           .unsqueeze(0) for ks in cross_k], dim=0)
            v = torch.cat([torch.cat([lin(x) for lin in vs], dim=-3).unsqueeze(0)
                           for vs in cross_v], dim=0)
            return k, v

    return Encoder()


def _sinusoids(length: int, channels: int) -> torch.Tensor:
    """openai-whisper's fixed positional embedding of the audio encoder."""
    import torch

    inc = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def _self_attention(attn: Any, x: torch.Tensor) -> torch.Tensor:
    """openai-whisper's MultiHeadAttention over the whole sequence (the encoder's case)."""
    import torch

    b, t, d = x.shape
    h = WHISPER_HEADS
    scale = (d // h) ** -0.25
    q = attn["query"](x).view(b, t, h, -1).permute(0, 2, 1, 3) * scale
    k = attn["key"](x).view(b, t, h, -1).permute(0, 2, 3, 1) * scale
    v = attn["value"](x).view(b, t, h, -1).permute(0, 2, 1, 3)
    w = torch.softmax(q @ k, dim=-1)
    return attn["out"]((w @ v).permute(0, 2, 1, 3).flatten(start_dim=2))


def _whisper_decoder() -> torch.nn.Module:
    """AI Hub's WhisperDecoderInf for tiny.en: one token through the 4 decoder blocks with a
    fixed 224-entry self-attention cache (shifted, the new entry appended) and the precomputed
    1500-entry cross-attention cache, then logits over the 51864-token vocabulary (tied to the
    token embedding). Returns logits and the updated self-attention caches."""
    import torch
    from torch import nn

    d, h, n = WHISPER_STATE, WHISPER_HEADS, WHISPER_DECODE_LEN

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token_embedding = nn.Embedding(WHISPER_VOCAB, d)
            self.positional_embedding = nn.Embedding(n, d)
            self.mask = nn.Embedding(n, n)      # row i masks the cache entries not yet filled
            self.blocks = nn.ModuleList(_whisper_block(cross=True)
                                        for _ in range(WHISPER_LAYERS))
            self.ln = nn.LayerNorm(d)
            self.register_buffer("logits_bias", torch.zeros(WHISPER_VOCAB))

        def forward(self, x: torch.Tensor, index: torch.Tensor, k_cache_cross: torch.Tensor,
                    v_cache_cross: torch.Tensor, k_cache_self: torch.Tensor,
                    v_cache_self: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = self.token_embedding(x) + self.positional_embedding(index)
            mask = self.mask(index)
            k_new, v_new = [], []
            blocks: Any = self.blocks        # ModuleDicts: indexed by name below
            for i, blk in enumerate(blocks):
                a = blk["attn"]
                z = blk["attn_ln"](y)
                q = a["query"](z).view(1, h, 1, -1)
                k = a["key"](z).unsqueeze(3).view(1, h, -1, 1)
                v = a["value"](z).unsqueeze(2).view(1, h, 1, -1)
                k = torch.cat((k_cache_self[i:i + 1, :, :, 1:], k), dim=-1)
                v = torch.cat((v_cache_self[i:i + 1, :, 1:, :], v), dim=-2)
                y = y + a["out"](_per_head_attention(q, k, v, mask))
                c = blk["cross_attn"]
                q = c["query"](blk["cross_attn_ln"](y)).view(1, h, 1, -1)
                y = y + c["out"](_per_head_attention(q, k_cache_cross[i:i + 1],
                                                     v_cache_cross[i:i + 1]))
                y = y + blk["mlp"](blk["mlp_ln"](y))
                k_new.append(k)
                v_new.append(v)
            # Logits through the tied embedding as one Gemm (transB) on the same initializer:
            # the exporter turns a bias-free linear into MatMul(x, W^T) and constant-folds W^T
            # into a second 80 MB copy; with a (zero) bias it emits Gemm on W itself.
            bias: Any = self.logits_bias
            logits = nn.functional.linear(self.ln(y).view(1, d), self.token_embedding.weight,
                                          bias)
            return logits.view(1, 1, -1), torch.cat(k_new), torch.cat(v_new)

    return Decoder()


def _whisper_decoder_inputs() -> tuple[InputSpec, ...]:
    layers, heads, dh = WHISPER_LAYERS, WHISPER_HEADS, WHISPER_STATE // WHISPER_HEADS
    return (InputSpec("x", (1, 1), "int32"), InputSpec("index", (1, 1), "int32"),
            InputSpec("k_cache_cross", (layers, heads, dh, WHISPER_AUDIO_CTX)),
            InputSpec("v_cache_cross", (layers, heads, WHISPER_AUDIO_CTX, dh)),
            InputSpec("k_cache_self", (layers, heads, dh, WHISPER_DECODE_LEN)),
            InputSpec("v_cache_self", (layers, heads, WHISPER_DECODE_LEN, dh)))


AIHUB = "github:quic/ai-hub-models qai_hub_models/models"
_IMAGE_224 = (InputSpec("image", (1, 3, 224, 224)),)

_MODELS = (
    RefModel(
        name="mobilenet_v2",
        description="torchvision MobileNetV2 (width 1.0), 224x224, batch 1",
        input_shapes=_IMAGE_224, published_macs=0.30e9, published_params=3_504_872,
        macs_source=f"torchvision mobilenet_v2 IMAGENET1K_V1: 0.3 GFLOPS, 3,504,872 params; "
                    f"{TORCHVISION_DOCS}",
        builder=_mobilenet_v2),
    RefModel(
        name="resnet50",
        description="torchvision ResNet-50 (Bottleneck [3,4,6,3]), 224x224, batch 1",
        input_shapes=_IMAGE_224, published_macs=4.09e9, published_params=25_557_032,
        macs_source=f"torchvision resnet50 IMAGENET1K_V1: 4.09 GFLOPS, 25,557,032 params; "
                    f"{TORCHVISION_DOCS}",
        builder=_resnet50),
    RefModel(
        name="vit",
        description="torchvision ViT-B/16 at 224x224 (AI Hub's 'vit' is vit_b_16), batch 1",
        input_shapes=_IMAGE_224, published_macs=17.56e9, published_params=86_567_656,
        macs_source=f"torchvision vit_b_16 IMAGENET1K_V1: 17.56 GFLOPS, 86,567,656 params; "
                    f"{TORCHVISION_DOCS}",
        builder=_vit_b_16),
    RefModel(
        name="efficientnet_b0",
        description="torchvision EfficientNet-B0 (MBConv + SE, SiLU), 224x224, batch 1",
        input_shapes=_IMAGE_224, published_macs=0.39e9, published_params=5_288_548,
        macs_source=f"torchvision efficientnet_b0 IMAGENET1K_V1: 0.39 GFLOPS, 5,288,548 "
                    f"params; {TORCHVISION_DOCS}",
        builder=_efficientnet_b0),
    RefModel(
        name="yolov8_det",
        description="YOLOv8-N detection at 640x640 with AI Hub's box decoding, batch 1",
        input_shapes=(InputSpec("image", (1, 3, 640, 640)),),
        # Ultralytics' FLOPs are 2 x MACs (thop MACs doubled), of the BN-fused model.
        published_macs=8.7e9 / 2, published_params=3_151_904,
        macs_source="Ultralytics YOLOv8n: 8.7 GFLOPs (= 2 x MACs) at 640, 3.2M params "
                    "(https://docs.ultralytics.com/models/yolov8/, performance table; "
                    "3,151,904 params fused); AI Hub's checkpoint is YOLOv8-N at 640x640 "
                    f"({AIHUB}/yolov8_det/info.yaml)",
        builder=_yolov8n_det, output_names=("boxes", "scores", "class_idx")),
    RefModel(
        name="mobile_bert_uncased_google",
        description="MobileBERT (transformers MobileBertForMaskedLM, default config) over "
                    "384 tokens + masked-token argmax, as AI Hub exports it, batch 1",
        input_shapes=(InputSpec("input_tokens", (1, 384), "int32"),
                      InputSpec("attention_masks", (1, 384)),
                      InputSpec("mask_indices", (1,), "int32")),
        published_macs=None, published_params=None,
        macs_source="no published MAC count for 384 tokens with the MLM head; the paper's "
                    "5.7 GFLOPs / 25.3M params (Sun et al. 2020, MobileBERT) are the encoder at "
                    "128 tokens, which this config reproduces (a slow test checks it); input "
                    f"spec 1x384 from {AIHUB}/_shared/bert_hf/model.py",
        builder=_mobile_bert, output_names=("token_id",), needs=("transformers",)),
    RefModel(
        name="whisper_tiny_en/WhisperEncoderInf",
        description="Whisper tiny.en audio encoder (80 mels x 3000 frames) + cross-attention "
                    "K/V caches, as AI Hub's WhisperEncoderInf, batch 1",
        input_shapes=(InputSpec("audio", (1, WHISPER_MELS, WHISPER_FRAMES)),),
        published_macs=None, published_params=None,
        macs_source="no published MAC count; shapes from AI Hub's WhisperEncoderInf "
                    f"({AIHUB}/_shared/whisper/model.py, openai-whisper tiny.en dims)",
        builder=_whisper_encoder, output_names=("k_cache", "v_cache")),
    RefModel(
        name="whisper_tiny_en/WhisperDecoderInf",
        description="Whisper tiny.en one decoder step with 224-entry self and 1500-entry "
                    "cross caches, as AI Hub's WhisperDecoderInf, batch 1",
        input_shapes=_whisper_decoder_inputs(),
        published_macs=None, published_params=None,
        macs_source="no published MAC count; shapes from AI Hub's WhisperDecoderInf "
                    f"({AIHUB}/_shared/whisper/model.py: MEAN_DECODE_LEN 224)",
        builder=_whisper_decoder, output_names=("logits", "k_cache", "v_cache")),
)

REFERENCE_MODELS: Mapping[str, RefModel] = MappingProxyType({m.name: m for m in _MODELS})
"""Reference models by the ``model`` value of published_latency.csv. llama_v3_2_1b_instruct is
left out on purpose: its rows are tokens/s of a 1.2B-parameter generator, not one inference."""
