"""Quality and fidelity metrics shared by the workloads (numpy only, no heavy imports).

Each function states its definition in its docstring so that the numbers in a report can be
traced back to a formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def edit_distance(a: Sequence[str] | str, b: Sequence[str] | str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Mean over lines of ``1 - edit_distance / max(len(pred), len(truth))`` (in [0, 1])."""
    if len(predicted) != len(truth) or not truth:
        raise ValueError("expected as many predictions as (at least one) ground-truth lines")
    scores = [1.0 - edit_distance(p, t) / max(len(p), len(t), 1)
              for p, t in zip(predicted, truth, strict=True)]
    return float(np.mean(scores))


def ranks_of_targets(scores: np.ndarray) -> np.ndarray:
    """1-based rank of the diagonal entry in each row of a (queries x documents) score matrix.

    Query ``i``'s relevant document is document ``i``; ties count against the query (a
    document scoring equal to the target ranks ahead of it), so a constant model is not lucky.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.diag(scores)[:, None]
    return (scores >= target).sum(axis=1)


def recall_at_1(scores: np.ndarray) -> float:
    """Share of queries whose relevant document ranks first."""
    return float((ranks_of_targets(scores) == 1).mean())


def mean_reciprocal_rank(scores: np.ndarray) -> float:
    """Mean over queries of 1 / rank of the relevant document."""
    return float((1.0 / ranks_of_targets(scores)).mean())


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box against an (N, 4) array of boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, highest score first."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            ious = box_iou(boxes[i], boxes[order])
            order = [j for j, v in zip(order, ious, strict=True) if v < iou_threshold]
    return keep


# One image's detections: boxes (N, 4) as [x0, y0, x1, y1], scores (N,), labels (N,).
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


def average_precision_50(predictions: Sequence[Detections],
                         references: Sequence[Detections]) -> float:
    """mAP at IoU 0.5 over the classes present in ``references`` (reference scores ignored).

    Per class: predictions of all images sorted by score; a prediction is a true positive when
    it overlaps an unmatched reference box of its class and image with IoU >= 0.5; AP is the
    area under the precision-recall curve with precision made monotone (all-point
    interpolation, as in PASCAL VOC 2010+ and COCO's per-threshold AP). Classes absent from the
    references are skipped; with no reference box at all, the result is 1.0 if there is also
    no prediction, else 0.0.
    """
    classes = sorted({int(c) for _, _, labels in references for c in labels})
    if not classes:
        return 1.0 if all(len(p[0]) == 0 for p in predictions) else 0.0
    aps = []
    for cls in classes:
        n_ref = sum(int((labels == cls).sum()) for _, _, labels in references)
        found: list[tuple[float, int]] = []  # (score, is_true_positive)
        for (pb, ps, pl), (rb, _, rl) in zip(predictions, references, strict=True):
            ref_boxes = np.asarray(rb)[np.asarray(rl) == cls]
            used = np.zeros(len(ref_boxes), dtype=bool)
            mine = np.flatnonzero(np.asarray(pl) == cls)
            for i in mine[np.argsort(-np.asarray(ps)[mine], kind="stable")]:
                tp = 0
                if len(ref_boxes):
                    ious = np.where(used, -1.0, box_iou(np.asarray(pb)[i], ref_boxes))
                    j = int(np.argmax(ious))
                    if ious[j] >= 0.5:
                        used[j], tp = True, 1
                found.append((float(ps[i]), tp))
        found.sort(key=lambda t: -t[0])
        tps = np.cumsum([t for _, t in found]) if found else np.zeros(0)
        recall = tps / n_ref
        precision = tps / np.arange(1, len(found) + 1)
        # all-point interpolation: precision envelope, integrated over recall steps
        r = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
        p = np.concatenate([[1.0], precision, [0.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        aps.append(float(np.sum((r[1:] - r[:-1]) * p[1:])))
    return float(np.mean(aps))


def fidelity(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], *,
             top1_axis: int | None = None) -> dict[str, float | None]:
    """How close ``outputs`` are to ``reference`` (same shapes, array by array).

    - ``cosine``: mean over examples of the cosine similarity between the flattened outputs
      (axis 0 is the example axis of every array);
    - ``top1_agreement``: share of positions where the argmax over ``top1_axis`` agrees
      (None when the workload's outputs are not class scores);
    - ``sqnr_db``: ``10 log10(sum(ref^2) / sum((ref - out)^2))`` over everything (inf when
      identical).
    """
    if len(reference) != len(outputs):
        raise ValueError(f"expected {len(reference)} output arrays, got {len(outputs)}")
    cosines: list[np.ndarray] = []
    agree = total = 0
    signal = noise = 0.0
    for ref, out in zip(reference, outputs, strict=True):
        ref = np.asarray(ref, dtype=np.float64)
        out = np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            raise ValueError(f"output shape {out.shape} differs from reference {ref.shape}")
        r2 = ref.reshape(ref.shape[0], -1) if ref.ndim else ref.reshape(1, 1)
        o2 = out.reshape(r2.shape)
        norms = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
        dots = (r2 * o2).sum(axis=1)
        cosines.append(np.where(norms > 0, dots / np.where(norms > 0, norms, 1),
                                np.where(np.linalg.norm(r2 - o2, axis=1) == 0, 1.0, 0.0)))
        signal += float((ref ** 2).sum())
        noise += float(((ref - out) ** 2).sum())
        if top1_axis is not None:
            same = ref.argmax(axis=top1_axis) == out.argmax(axis=top1_axis)
            agree += int(same.sum())
            total += same.size
    if noise == 0:
        sqnr = float("inf")
    elif signal == 0:
        sqnr = float("-inf")
    else:
        sqnr = 10.0 * float(np.log10(signal / noise))
    return {"cosine": float(np.concatenate(cosines).mean()) if cosines else None,
            "top1_agreement": agree / total if total else None,
            "sqnr_db": sqnr}
