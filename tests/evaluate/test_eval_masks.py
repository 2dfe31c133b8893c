"""Mask IoU per instance and PiM: the official eval_pim.py rules on synthetic scenes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_scenes import RGB, box_instance, draw, two_boxes

from core.layout import Instance, Layout, Region
from evaluate.metrics.ground_truth import ground_truth
from evaluate.metrics.masks import (
    instance_mask_iou,
    mask_centre_point,
    mask_iou,
    match_masks,
    mean_over_images,
    pim,
    pixel_indices,
    points_in_mask,
    sample_mask_points,
)


def colour_masks(img: np.ndarray, colours: list[str]) -> list[np.ndarray]:
    """A colour 'segmenter' for drawn scenes: the pixels of exactly each colour."""
    return [(img == np.array(RGB[c], np.uint8)).all(axis=-1) for c in colours]


def rect(shape, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_iou_hand_cases():
    a, b = rect((100, 100), 20, 20, 60, 60), rect((100, 100), 30, 30, 70, 70)
    assert mask_iou(a, b) == 900 / 2300
    assert mask_iou(a, a) == 1.0 and mask_iou(a, ~a) == 0.0
    assert math.isnan(mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    with pytest.raises(ValueError, match="different shapes"):
        mask_iou(a, a[:50])


def test_matching_is_greedy_in_ground_truth_order_with_threshold_zero():
    s = (50, 50)
    g1, g2 = rect(s, 0, 0, 30, 10), rect(s, 20, 0, 40, 10)
    p1, p2 = rect(s, 40, 40, 50, 50), rect(s, 10, 0, 40, 10)  # p2 is the best for both; g1 comes first
    pairs = match_masks([g1, g2], [p1, p2])
    assert pairs == [(0, 1, mask_iou(g1, p2)), (1, 0, 0.0)]  # g2 still takes p1 at IoU 0 (0 >= 0.0)
    assert match_masks([g1, g2], [p1, p2], iou_threshold=0.1) == [(0, 1, mask_iou(g1, p2))]
    # a NaN IoU (both empty) is never taken; an instance without detections left is unmatched
    empty = np.zeros(s, bool)
    assert match_masks([empty], [empty]) == []
    assert match_masks([g1, g2], [p2]) == [(0, 0, mask_iou(g1, p2))]
    # the same_class deviation restricts candidates
    assert match_masks([g1, g2], [p1, p2], 0.0, ["a", "b"], ["b", "a"]) == [(0, 1, mask_iou(g1, p2)), (1, 0, 0.0)]
    assert match_masks([g1, g2], [p1, p2], 0.0, ["b", "b"], ["b", "a"]) == [(0, 0, 0.0)]


def test_instance_mask_iou_on_a_drawn_scene():
    lay = two_boxes()  # red ball (10..40, 10..50), blue cube (60..90, 20..70) on 100 x 80
    size = (200, 160)
    gts = ground_truth(lay, size)
    # the generator drew the ball 10 canvas px (20 image px) too far right, the cube exactly
    img = draw(size, [((40, 20, 100, 100), "red"), ((120, 40, 180, 140), "blue")])
    preds = colour_masks(img, ["blue", "red"])
    r = instance_mask_iou(gts, preds)
    assert r.per_instance == [pytest.approx(40 * 80 / (80 * 80)), 1.0]  # 60-wide boxes shifted by 20 of 60
    assert r.image == pytest.approx((0.5 + 1.0) / 2)
    # one detection only: the cube is skipped (official) or scored 0
    only = instance_mask_iou(gts, preds[1:])
    assert only.per_instance == [pytest.approx(0.5), None] and only.image == pytest.approx(0.5)
    zero = instance_mask_iou(gts, preds[1:], missing="zero")
    assert zero.per_instance == [pytest.approx(0.5), 0.0] and zero.image == pytest.approx(0.25)


def point_scribble_layout() -> Layout:
    return Layout(100, 100, "", [
        Instance("cat", regions=[Region("point", points=[(20.5, 30.2)], width=3)]),
        Instance("dog", regions=[Region("scribble", points=[(60, 60), (80, 60), (80, 80)], width=4)]),
        box_instance("tree", (0, 90, 10, 100)),
    ])  # fmt: skip


def test_pim_points_and_scribbles_on_a_drawn_scene():
    lay = point_scribble_layout()
    size = (100, 100)
    gts = ground_truth(lay, size)
    assert gts[0].points.tolist() == [[20.5, 30.2]] and gts[1].scribble_points.tolist() == [[60, 60], [80, 60], [80, 80]]
    # the cat covers its point; the dog covers two of its three scribble vertices
    img = draw(size, [((10, 20, 40, 50), "red"), ((55, 55, 86, 70), "blue")])
    preds = colour_masks(img, ["red", "blue"])
    p = pim(gts, preds, "point")
    assert p.per_instance == [1.0, None, None] and p.image == 1.0
    s = pim(gts, preds, "scribble")
    assert s.per_instance == [None, pytest.approx(2 / 3), None] and s.image == pytest.approx(2 / 3)
    # the cat drawn elsewhere: its point is outside its matched mask
    img2 = draw(size, [((50, 0, 70, 20), "red"), ((55, 55, 86, 70), "blue")])
    assert pim(gts, colour_masks(img2, ["red", "blue"]), "point").image == 0.0


def test_pim_scales_points_to_the_image_and_floors_them():
    lay = point_scribble_layout()
    gts = ground_truth(lay, (200, 200))
    assert gts[0].points.tolist() == [[41.0, 60.4]]
    assert pixel_indices(gts[0].points, (200, 200)).tolist() == [[41, 60]]
    assert pixel_indices(np.array([[-3.0, 250.0], [199.99, 0.5]]), (200, 200)).tolist() == [[0, 199], [199, 0]]
    m = rect((200, 200), 41, 60, 42, 61)  # exactly the pixel holding the point
    assert pim(gts, [m], "point").per_instance[0] == 1.0
    assert pim(gts, [rect((200, 200), 40, 60, 41, 61)], "point").per_instance[0] == 0.0


def test_points_in_mask_and_official_gt_points():
    m = rect((10, 10), 2, 3, 6, 9)  # x 2..5, y 3..8
    assert points_in_mask(m, np.array([[2, 3], [5, 8], [6, 8], [0, 0]])) == 0.5
    assert math.isnan(points_in_mask(m, np.zeros((0, 2))))
    assert mask_centre_point(m) == (3, 5)  # int((2 + 5) / 2), int((3 + 8) / 2)
    assert mask_centre_point(np.zeros((4, 4), bool)) is None
    # the official draws: np.random.choice on the mask's nonzero pixels (row, col) -> (x, y)
    pts = sample_mask_points(m, 20, np.random.RandomState(7))
    np.random.seed(7)
    nz = np.transpose(np.nonzero(m))
    ref = nz[np.random.choice(len(nz), 20, replace=False)]
    assert pts.tolist() == [[int(c), int(r)] for r, c in ref]
    assert points_in_mask(m, pts) == 1.0
    few = rect((10, 10), 0, 0, 2, 2)  # 4 pixels < 20 points: drawn with replacement
    assert sample_mask_points(few, 20, np.random.RandomState(0)).shape == (20, 2)
    assert sample_mask_points(np.zeros((3, 3), bool), 20, np.random.RandomState(0)).shape == (0, 2)


def test_pim_options_and_errors():
    lay = point_scribble_layout()
    gts = ground_truth(lay, (100, 100))
    cat_elsewhere = rect((100, 100), 15, 25, 30, 40)
    assert pim(gts, [], "point").per_instance == [None, None, None]
    assert pim(gts, [], "point", missing="zero").per_instance == [0.0, None, None]
    # same_class: the cat may only take a "cat" detection
    assert pim(gts, [cat_elsewhere], "point", pred_classes=["dog"], same_class=True).per_instance[0] is None
    assert pim(gts, [cat_elsewhere], "point", pred_classes=["cat"], same_class=True).per_instance[0] == 1.0
    with pytest.raises(ValueError, match="same_class=True needs pred_classes"):
        pim(gts, [cat_elsewhere], "point", same_class=True)
    with pytest.raises(ValueError, match="kind must be"):
        pim(gts, [], "polygon")


def test_mean_over_images_drops_nan():
    assert mean_over_images([0.5, float("nan"), None, 1.0]) == 0.75
    assert math.isnan(mean_over_images([float("nan")]))


def test_mask_iou_equals_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.random((40, 30)) < 0.4, rng.random((40, 30)) < 0.6
        ra, rb = (mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (a, b))
        assert mask_iou(a, b) == pytest.approx(float(mask_utils.iou([ra], [rb], [0])[0, 0]), rel=1e-12)
