"""PP-OCRv4 mobile text detection and recognition, as shipped by ``rapidocr-onnxruntime==1.4.4``.

The ONNX files are located without importing the package (its ``__init__`` needs OpenCV).
Both models are ONNX-only: pruning goes through :func:`harness.compress.prune.prune_onnx`.

Data are text lines rendered with Pillow's own scalable font (``ImageFont.load_default(size=)``,
bundled with Pillow's FreeType build, so no system font is needed), black on white, from seeded
random words, so the ground truth is known exactly. Calibration and evaluation use different
seeds. Pre-processing follows rapidocr's ``config.yaml``: pixels scaled to [0, 1], then
``(x - 0.5) / 0.5`` per channel; recognition input 3x48x320 (height 48, aspect kept, padded
right with zeros); detection input 3xHxW with H, W multiples of 32.

- ``ppocr_rec``: character accuracy (1 - normalised edit distance, mean over lines) of CTC
  greedy decoding with the dictionary carried in the model's ``character`` metadata.
- ``ppocr_det``: recall of the rendered line boxes. Post-processing is a simplified DB
  (Differentiable Binarization) decoder: probability map > 0.3, connected components (scipy),
  components whose mean probability is < 0.5 or smaller than 3 px dropped, each component's
  bounding box grown by DB's unclip distance ``area * 1.6 / perimeter`` (rapidocr's
  ``unclip_ratio``, applied to the axis-aligned box rather than a polygon). A ground-truth box
  counts as found when a predicted box overlaps it with IoU >= 0.5 (one-to-one, greedy).
  Precision is reported as an extra metric.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Quality, RunFn, Workload

_PACKAGE = "rapidocr_onnxruntime"
_PACKAGE_VERSION = "1.4.4"
_DET_FILE = "models/ch_PP-OCRv4_det_infer.onnx"
_REC_FILE = "models/ch_PP-OCRv4_rec_infer.onnx"

_REC_HEIGHT, _REC_WIDTH = 48, 320
_REC_BATCH = 8
_REC_LINES = {"small": 64, "full": 256}
_REC_CALIBRATION_LINES = 16

_DET_HEIGHT, _DET_WIDTH = 320, 640
_DET_LINES_PER_IMAGE = 3
_DET_IMAGES = {"small": 8, "full": 48}
_DET_CALIBRATION_IMAGES = 4

_EVAL_SEED, _CALIBRATION_SEED, _TIMING_SEED = 1, 2, 3
_DB_THRESHOLD, _DB_BOX_THRESHOLD, _DB_UNCLIP_RATIO, _DB_MIN_SIZE = 0.3, 0.5, 1.6, 3

_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def package_file(relative: str) -> Path:
    """A file inside the installed rapidocr-onnxruntime package, found without importing it."""
    from harness.workloads import resources

    return resources.package_file(_PACKAGE, relative,
                                  dist=f"rapidocr-onnxruntime=={_PACKAGE_VERSION}")


def random_text(rng: np.random.Generator, *, max_chars: int = 14) -> str:
    """Two or three words: lower-case, Capitalised or digit groups, at most ``max_chars``."""
    words: list[str] = []
    for _ in range(int(rng.integers(2, 4))):
        kind = int(rng.integers(0, 3))
        if kind == 2:
            word = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(2, 5))))
        else:
            word = "".join(rng.choice(list(_ALPHABET), size=int(rng.integers(3, 7))))
            word = word.capitalize() if kind == 1 else word
        if len(" ".join([*words, word])) > max_chars:
            break
        words.append(word)
    return " ".join(words)


@cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 in [-1, 1] (rapidocr: mean 0.5, std 0.5 after /255)."""
    return ((rgb.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def render_line(text: str, *, font_size: int = 32) -> np.ndarray:
    """A tight crop of ``text`` (black on white, 4 px margin) as HxWx3 uint8."""
    from PIL import Image, ImageDraw

    font = _font(font_size)
    x0, y0, x1, y1 = (round(v) for v in ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=font))
    margin = 4
    img = Image.new("RGB", (x1 - x0 + 2 * margin, y1 - y0 + 2 * margin), "white")
    ImageDraw.Draw(img).text((margin - x0, margin - y0), text, font=font, fill="black")
    return np.asarray(img)


def rec_input(line: np.ndarray) -> np.ndarray:
    """rapidocr's ``resize_norm_img``: height 48, aspect kept (squeezed past 320), zero pad."""
    from PIL import Image

    h, w = line.shape[:2]
    new_w = min(_REC_WIDTH, int(np.ceil(_REC_HEIGHT * w / h)))
    resized = np.asarray(Image.fromarray(line).resize((new_w, _REC_HEIGHT),
                                                      Image.Resampling.BILINEAR))
    out = np.zeros((3, _REC_HEIGHT, _REC_WIDTH), dtype=np.float32)
    out[:, :, :new_w] = _normalise(resized)
    return out


@cache
def rec_lines(seed: int, n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """``n`` random lines and their recognition inputs (n, 3, 48, 320)."""
    rng = np.random.default_rng(seed)
    texts = tuple(random_text(rng) for _ in range(n))
    sizes = rng.integers(24, 41, size=n)
    batch = np.stack([rec_input(render_line(t, font_size=int(s)))
                      for t, s in zip(texts, sizes, strict=True)])
    return texts, batch


@cache
def rec_charset() -> tuple[str, ...]:
    """CTC classes: blank, the model's ``character`` metadata, then space (as rapidocr does)."""
    import onnx

    model = onnx.load(str(package_file(_REC_FILE)), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return ("", *meta["character"].splitlines(), " ")


def ctc_greedy_decode(probs: np.ndarray, charset: tuple[str, ...]) -> list[str]:
    """Best path per line: argmax per time step, repeats collapsed, blanks (class 0) dropped."""
    best = np.asarray(probs).argmax(axis=-1)
    out = []
    for seq in best:
        keep = np.ones(len(seq), dtype=bool)
        keep[1:] = seq[1:] != seq[:-1]
        out.append("".join(charset[i] for i in seq[keep] if i != 0))
    return out


def fix_input_shape(model: Any, height: int, width: int) -> None:
    """Pin the image input's height and width (batch stays dynamic), in place.

    The shipped graphs take any size; a deployed app feeds one size, and ORT's symbolic shape
    inference (quantization pre-processing) cannot finish on the fully dynamic graph.
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = height
    dims[3].Clear()
    dims[3].dim_value = width


class _OnnxOnly(Workload):
    """A model shipped as an ONNX file: export = normalised, input-pinned, (pruned) copy."""

    onnx_file: str
    input_hw: tuple[int, int]

    def fingerprint(self) -> dict[str, Any]:
        import hashlib

        digest = hashlib.sha256(package_file(self.onnx_file).read_bytes()).hexdigest()
        return {"workload": self.name, "recipe": 3, "onnx_sha256": digest,
                "input_hw": list(self.input_hw)}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        import onnx

        from harness.compress.onnx_utils import constants_to_initializers
        from harness.compress.prune import prune_onnx
        from harness.compress.torch_export import OPSET

        model = onnx.load(str(package_file(self.onnx_file)))
        constants_to_initializers(model)
        fix_input_shape(model, *self.input_hw)
        # The files ship at opset 12; per-channel QDQ (DequantizeLinear's axis) needs >= 13.
        model = onnx.version_converter.convert_version(model, OPSET)
        onnx.checker.check_model(model)
        onnx.save(prune_onnx(model, prune), str(out))


class PPOCRRec(_OnnxOnly):
    name = "ppocr_rec"
    metric = "char_accuracy"
    onnx_file = _REC_FILE
    input_hw = (_REC_HEIGHT, _REC_WIDTH)
    top1_axis = -1  # per-time-step class probabilities (batch, steps, classes)

    def timing_inputs(self) -> Feeds:
        return {"x": rec_lines(_TIMING_SEED, 1)[1].copy()}

    def calibration_inputs(self) -> list[Feeds]:
        batch = rec_lines(_CALIBRATION_SEED, _REC_CALIBRATION_LINES)[1]
        return [{"x": batch[i:i + 1]} for i in range(len(batch))]

    def evaluate(self, run: RunFn) -> Quality:
        from harness.workloads.metrics import char_accuracy

        texts, batch = rec_lines(_EVAL_SEED, _REC_LINES[self.eval_size])
        charset = rec_charset()
        predicted: list[str] = []
        for i in range(0, len(batch), _REC_BATCH):
            predicted += ctc_greedy_decode(run({"x": batch[i:i + _REC_BATCH]})[0], charset)
        exact = float(np.mean([p == t for p, t in zip(predicted, texts, strict=True)]))
        return Quality(metric="char_accuracy", value=char_accuracy(predicted, list(texts)),
                       n_examples=len(texts), extra={"line_accuracy": exact})


@cache
def det_images(seed: int, n: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """``n`` pages (n, 3, 320, 640) with three lines each, and each page's line boxes (k, 4)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pages, boxes = [], []
    band = _DET_HEIGHT // _DET_LINES_PER_IMAGE
    for _ in range(n):
        img = Image.new("RGB", (_DET_WIDTH, _DET_HEIGHT), "white")
        draw = ImageDraw.Draw(img)
        page_boxes = []
        for k in range(_DET_LINES_PER_IMAGE):
            text = random_text(rng, max_chars=24)
            font = _font(int(rng.integers(22, 41)))
            x0, y0, x1, y1 = (round(v) for v in draw.textbbox((0, 0), text, font=font))
            x = int(rng.integers(8, max(9, _DET_WIDTH - (x1 - x0) - 8)))
            y = k * band + int(rng.integers(4, max(5, band - (y1 - y0) - 4)))
            draw.text((x - x0, y - y0), text, font=font, fill="black")
            page_boxes.append([x, y, x + x1 - x0, y + y1 - y0])
        pages.append(_normalise(np.asarray(img)))
        boxes.append(np.array(page_boxes, dtype=np.float64))
    return np.stack(pages), tuple(boxes)


def db_boxes(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[x0, y0, x1, y1]`` and scores from one HxW DB probability map (see module doc)."""
    from scipy import ndimage

    labels, _ = ndimage.label(prob > _DB_THRESHOLD)
    boxes, scores = [], []
    h, w = prob.shape
    for i, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None:
            continue
        ys, xs = sl
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        if min(bh, bw) < _DB_MIN_SIZE:
            continue
        score = float(prob[sl][labels[sl] == i].mean())
        if score < _DB_BOX_THRESHOLD:
            continue
        d = bh * bw * _DB_UNCLIP_RATIO / (2 * (bh + bw))
        boxes.append([max(0.0, xs.start - d), max(0.0, ys.start - d),
                      min(float(w), xs.stop + d), min(float(h), ys.stop + d)])
        scores.append(score)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores)


def match_count(predicted: np.ndarray, truth: np.ndarray, *, iou: float = 0.5) -> int:
    """Ground-truth boxes matched one-to-one (greedy, best IoU first) at IoU >= ``iou``."""
    from harness.workloads.metrics import box_iou

    if len(predicted) == 0 or len(truth) == 0:
        return 0
    ious = np.stack([box_iou(t, predicted) for t in truth])
    matched = 0
    while True:
        t, p = np.unravel_index(int(np.argmax(ious)), ious.shape)
        if ious[t, p] < iou:
            return matched
        matched += 1
        ious[t, :] = -1.0
        ious[:, p] = -1.0


class PPOCRDet(_OnnxOnly):
    name = "ppocr_det"
    metric = "det_recall"
    onnx_file = _DET_FILE
    input_hw = (_DET_HEIGHT, _DET_WIDTH)

    def timing_inputs(self) -> Feeds:
        return {"x": det_images(_TIMING_SEED, 1)[0].copy()}

    def calibration_inputs(self) -> list[Feeds]:
        pages = det_images(_CALIBRATION_SEED, _DET_CALIBRATION_IMAGES)[0]
        return [{"x": pages[i:i + 1]} for i in range(len(pages))]

    def evaluate(self, run: RunFn) -> Quality:
        pages, truth = det_images(_EVAL_SEED, _DET_IMAGES[self.eval_size])
        found = predicted = total = 0
        for i in range(len(pages)):
            prob = np.asarray(run({"x": pages[i:i + 1]})[0])[0, 0]
            boxes, _ = db_boxes(prob)
            found += match_count(boxes, truth[i])
            predicted += len(boxes)
            total += len(truth[i])
        return Quality(metric="det_recall", value=found / total, n_examples=total,
                       extra={"det_precision": found / predicted if predicted else 0.0})
