"""Metric functions on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.workloads.metrics import (
    average_precision_50,
    box_iou,
    char_accuracy,
    edit_distance,
    fidelity,
    mean_reciprocal_rank,
    nms,
    ranks_of_targets,
    recall_at_1,
)


@pytest.mark.parametrize(("a", "b", "d"), [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3),
    ("flaw", "lawn", 2), ("same", "same", 0), ("ab", "ba", 2),
])
def test_edit_distance(a: str, b: str, d: int) -> None:
    assert edit_distance(a, b) == d == edit_distance(b, a)


def test_char_accuracy() -> None:
    # 1 - 3/7 for kitten/sitting, 1 for an exact line: mean = (4/7 + 1) / 2
    assert char_accuracy(["kitten", "ok"], ["sitting", "ok"]) == pytest.approx((4 / 7 + 1) / 2)
    assert char_accuracy([""], ["abc"]) == 0.0
    with pytest.raises(ValueError):
        char_accuracy(["a"], [])


def test_recall_at_1_and_mrr() -> None:
    scores = np.array([[0.9, 0.1, 0.0],   # target first: rank 1
                       [0.8, 0.5, 0.1],   # target second: rank 2
                       [0.3, 0.3, 0.3]])  # a tie counts against the query: rank 3
    assert list(ranks_of_targets(scores)) == [1, 2, 3]
    assert recall_at_1(scores) == pytest.approx(1 / 3)
    assert mean_reciprocal_rank(scores) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_box_iou_and_nms() -> None:
    a = np.array([0.0, 0.0, 2.0, 2.0])
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6]], dtype=float)
    assert box_iou(a, boxes) == pytest.approx([1.0, 2 / 6, 0.0])
    # box 1 overlaps box 0 by 1/3: suppressed at 0.3, kept at 0.5
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.3) == [0, 2]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.5) == [0, 1, 2]


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> tuple:
    return (np.array(boxes, dtype=float).reshape(-1, 4), np.array(scores, dtype=float),
            np.array(labels))


def test_map50_hand_computed() -> None:
    ref = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 0])]
    assert average_precision_50(ref, ref) == 1.0
    # one hit (score 0.9), then a false positive (0.8), then the second hit (0.7):
    # precision 1 at recall 0.5, 2/3 at recall 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    pred = [_dets([[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 30, 30]], [0.9, 0.8, 0.7],
                  [0, 0, 0])]
    assert average_precision_50(pred, ref) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # the right box with the wrong class finds nothing; class 1 absent from refs is ignored
    wrong = [_dets([[0, 0, 10, 10]], [0.9], [1])]
    assert average_precision_50(wrong, ref) == 0.0
    # two classes averaged: class 0 perfect, class 1 missed
    ref2 = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 1])]
    assert average_precision_50([_dets([[0, 0, 10, 10]], [0.9], [0])], ref2) == 0.5
    empty = [_dets([], [], [])]
    assert average_precision_50(empty, empty) == 1.0
    assert average_precision_50(ref, empty) == 0.0


def test_fidelity_hand_computed() -> None:
    ref = [np.array([[3.0, 4.0], [1.0, 0.0]])]
    out = [np.array([[3.0, 4.0], [0.0, 1.0]])]
    fid = fidelity(ref, out, top1_axis=1)
    assert fid["cosine"] == pytest.approx(0.5)  # mean of 1 and 0
    assert fid["top1_agreement"] == 0.5
    # signal 9 + 16 + 1 = 26, noise 1 + 1 = 2
    assert fid["sqnr_db"] == pytest.approx(10 * math.log10(13))
    same = fidelity(ref, ref)
    assert same["sqnr_db"] == math.inf and same["cosine"] == 1.0
    assert same["top1_agreement"] is None
    with pytest.raises(ValueError):
        fidelity(ref, [np.zeros((3, 2))])
