"""The YOLOv8n-based 320 px detector shipped as ONNX by the ``nudenet`` package (18 classes of
body parts and faces).

There is no labelled data for its classes that ships offline, so quality is *agreement with the
fp32 model*: mAP@0.5 of a variant's detections, using the shipped fp32 model's detections on the
same images as the references (fp32 against itself scores 1.0). The reference detections come
from the original ONNX file, run here with onnxruntime (one thread, so they are repeatable).

Images: photographs bundled with scikit-image (``skimage/data``, read with Pillow, without
importing scikit-image). The evaluation split uses the photos with people in them (astronaut,
camera man) plus two without (coffee, motorcycle), as seeded random square crops and mirror
images; calibration uses other photos (chelsea, rocket, motorcycle_right, retina), so the two
never share a source image. Pre-processing is nudenet's: pad bottom/right to a square, resize to
320x320, RGB scaled to [0, 1]. Post-processing: class score = max over the 18 classes, boxes with
score >= 0.05 kept (lower than nudenet's 0.2, so that there are enough reference boxes for a
meaningful mAP on few images), then per-class NMS at IoU 0.45 (numpy).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Quality, RunFn, Workload
from harness.workloads.metrics import Detections

_SIZE = 320
_SCORE_THRESHOLD = 0.05
_NMS_IOU = 0.45
_EVAL_PHOTOS = ("astronaut.png", "camera.png", "coffee.png", "motorcycle_left.png")
_CALIBRATION_PHOTOS = ("chelsea.png", "rocket.jpg", "motorcycle_right.png", "retina.jpg")
_EVAL_IMAGES = {"small": 12, "full": 48}
_CALIBRATION_IMAGES = 16
_EVAL_SEED, _CALIBRATION_SEED = 1, 2


def onnx_path() -> Path:
    """nudenet's ``320n.onnx``, found without importing nudenet (its ``__init__`` needs cv2)."""
    from harness.workloads.resources import package_file

    return package_file("nudenet", "320n.onnx")


def _photo(name: str) -> Any:
    from PIL import Image

    from harness.workloads.resources import package_file

    return Image.open(package_file("skimage", "data", name, dist="scikit-image")).convert("RGB")


def preprocess(img: Any) -> np.ndarray:
    """nudenet's: pad bottom/right to a square (black), resize to 320, RGB / 255, 1x3x320x320."""
    from PIL import Image

    side = max(img.size)
    square = Image.new("RGB", (side, side), "black")
    square.paste(img, (0, 0))
    resized = square.resize((_SIZE, _SIZE), Image.Resampling.BILINEAR)
    arr = np.asarray(resized, dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)[None]


@cache
def images(photos: tuple[str, ...], seed: int, n: int) -> np.ndarray:
    """``n`` inputs (n, 3, 320, 320): the whole photos first, then seeded crops and mirrors."""
    from PIL import ImageOps

    rng = np.random.default_rng(seed)
    sources = [_photo(p) for p in photos]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        if i >= len(sources):
            w, h = img.size
            scale = rng.uniform(0.5, 0.9)
            cw, ch = int(w * scale), int(h * scale)
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = img.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                img = ImageOps.mirror(img)
        out.append(preprocess(img)[0])
    return np.stack(out)


def decode(output: np.ndarray) -> Detections:
    """Boxes ``[x0, y0, x1, y1]`` (320 px input space), scores, labels from one (22, N) output."""
    from harness.workloads.metrics import nms

    pred = np.asarray(output, dtype=np.float64).T  # (N, 4 + classes)
    cls_scores = pred[:, 4:]
    labels = cls_scores.argmax(axis=1)
    scores = cls_scores.max(axis=1)
    keep = scores >= _SCORE_THRESHOLD
    cx, cy, w, h = pred[keep, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores, labels = scores[keep], labels[keep]
    kept: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        kept += [int(idx[i]) for i in nms(boxes[idx], scores[idx], iou_threshold=_NMS_IOU)]
    kept.sort()
    return boxes[kept].reshape(-1, 4), scores[kept], labels[kept]


def detect(run: RunFn, batch: np.ndarray) -> list[Detections]:
    """Detections for each image, one image per call (batch 1, as an app runs it)."""
    return [decode(np.asarray(run({"images": batch[i:i + 1]})[0])[0])
            for i in range(len(batch))]


@cache
def _reference(n: int) -> tuple[Detections, ...]:
    from harness.runtimes.onnxruntime import cpu_session

    session = cpu_session(onnx_path(), threads=1)
    return tuple(detect(lambda f: session.run(None, f),
                        images(_EVAL_PHOTOS, _EVAL_SEED, n)))


class YOLOv8nDet(Workload):
    name = "yolov8n_det"
    metric = "map50_vs_fp32"

    def fingerprint(self) -> dict[str, Any]:
        import hashlib

        return {"workload": self.name, "recipe": 1,
                "onnx_sha256": hashlib.sha256(onnx_path().read_bytes()).hexdigest()}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        import onnx

        from harness.compress.prune import prune_onnx

        onnx.save(prune_onnx(onnx.load(str(onnx_path())), prune), str(out))

    def timing_inputs(self) -> Feeds:
        return {"images": images(_EVAL_PHOTOS, _EVAL_SEED, 1)[:1].copy()}

    def calibration_inputs(self) -> list[Feeds]:
        batch = images(_CALIBRATION_PHOTOS, _CALIBRATION_SEED, _CALIBRATION_IMAGES)
        return [{"images": batch[i:i + 1]} for i in range(len(batch))]

    def evaluate(self, run: RunFn) -> Quality:
        from harness.workloads.metrics import average_precision_50

        n = _EVAL_IMAGES[self.eval_size]
        refs = _reference(n)
        preds = detect(run, images(_EVAL_PHOTOS, _EVAL_SEED, n))
        return Quality(metric="map50_vs_fp32", value=average_precision_50(preds, refs),
                       n_examples=n,
                       extra={"reference_boxes": float(sum(len(r[0]) for r in refs))})
