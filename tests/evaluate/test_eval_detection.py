"""Box and mask AP through pycocotools: the layout -> COCO conversion and the IoU-threshold behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_scenes import box_instance, two_boxes
from pycocotools import mask as mask_utils

from core.layout import Instance, Layout, Region
from evaluate.metrics.detection import Detection, coco_ap, coco_ground_truth, coco_results
from evaluate.metrics.ground_truth import ground_truth

SIZE = (200, 160)  # the 100 x 80 canvas at twice the size


def perfect(layout: Layout, size=SIZE, with_masks: bool = False) -> list[Detection]:
    return [Detection(g.box, 0.9, g.category, g.mask if with_masks else None) for g in ground_truth(layout, size)]


def test_ground_truth_conversion_boxes_masks_categories():
    lay = two_boxes()
    lay.instances.append(box_instance("a green leaf", (0, 0, 10, 10)))  # no label: category = description
    lay.instances.append(box_instance("hidden", (50, 50, 60, 60), label="ball", enabled=False))
    ds, cats = coco_ground_truth([(lay, SIZE)])
    assert cats == {"ball": 1, "cube": 2, "a green leaf": 3}
    assert ds["images"] == [{"id": 1, "width": 200, "height": 160}]
    anns = ds["annotations"]
    assert len(anns) == 3  # the disabled instance is not ground truth
    assert [a["bbox"] for a in anns] == [[20.0, 20.0, 60.0, 80.0], [120.0, 40.0, 60.0, 100.0], [0.0, 0.0, 20.0, 20.0]]
    assert all(a["iscrowd"] == 0 for a in anns)
    m = mask_utils.decode(anns[0]["segmentation"]).astype(bool)
    expect = np.zeros((160, 200), bool)
    expect[20:100, 20:80] = True
    assert np.array_equal(m, expect) and anns[0]["area"] == 60 * 80


def test_category_needs_label_or_description():
    lay = Layout(10, 10, "", [box_instance("ok", (0, 0, 5, 5)), box_instance("  ", (0, 0, 5, 5))])
    with pytest.raises(ValueError, match="instance 2"):
        ground_truth(lay, (10, 10))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_detections_give_ap_one(iou_type):
    lay = two_boxes()
    r = coco_ap([(lay, SIZE)], [perfect(lay, with_masks=True)], iou_type)
    # COCOeval averages 101 interpolated precisions of 1.0 in floating point
    assert (r["AP"], r["AP50"], r["AP75"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)


def shifted(box, dx):
    x0, y0, x1, y1 = box
    return (x0 + dx, y0, x1 + dx, y1)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_shifted_boxes_follow_the_iou_thresholds(iou_type):
    # a 60-wide box shifted by 15 px: IoU = 45 / 75 = 0.6 -> true positive at 0.50, 0.55, 0.60 only
    lay = Layout(100, 80, "", [box_instance("ball", (10, 10, 40, 50))])
    gt = ground_truth(lay, SIZE)[0]
    box = shifted(gt.box, 15)
    mask = np.zeros((160, 200), bool)
    mask[20:100, 35:95] = True
    r = coco_ap([(lay, SIZE)], [[Detection(box, 0.8, "ball", mask)]], iou_type)
    assert r["AP50"] == pytest.approx(1.0, abs=1e-12) and r["AP75"] == 0.0
    assert r["AP"] == pytest.approx(3 / 10)


def test_hand_computed_precision_recall():
    # two instances of one category; detections by score: TP, FP, TP -> precision 1 up to recall 0.5, then 2/3
    lay = Layout(100, 100, "", [box_instance("dog", (0, 0, 40, 40)), box_instance("dog", (50, 50, 90, 90))])
    g = ground_truth(lay, (100, 100))
    dets = [Detection(g[0].box, 0.9, "dog"), Detection((0, 60, 30, 90), 0.8, "dog"), Detection(g[1].box, 0.7, "dog")]
    r = coco_ap([(lay, (100, 100))], [dets])
    assert r["AP"] == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101)
    # FP first: the interpolated precision is 2/3 at every recall
    dets = [Detection((0, 60, 30, 90), 0.95, "dog"), dets[0], dets[2]]
    assert coco_ap([(lay, (100, 100))], [dets])["AP"] == pytest.approx(2 / 3)


def test_empty_detections_and_empty_ground_truth():
    lay = two_boxes()
    r = coco_ap([(lay, SIZE)], [[]])
    assert r["AP"] == 0.0 and r["AP50"] == 0.0
    empty = Layout(100, 80, "", [])
    r = coco_ap([(empty, SIZE)], [perfect(lay)])
    assert math.isnan(r["AP"])


def test_wrong_category_counts_as_a_miss_and_unknown_categories_are_dropped():
    lay = two_boxes()
    dets = perfect(lay)
    swapped = [Detection(dets[0].box, 0.9, "cube"), Detection(dets[1].box, 0.9, "ball")]
    assert coco_ap([(lay, SIZE)], [swapped])["AP"] == 0.0
    extra = dets + [Detection((0, 0, 50, 50), 0.99, "zebra")]
    assert coco_results([extra], {"ball": 1, "cube": 2}, "bbox", [SIZE]).__len__() == 2
    assert coco_ap([(lay, SIZE)], [extra])["AP"] == pytest.approx(1.0, abs=1e-12)


def test_detection_on_a_disabled_instance_is_a_false_positive():
    lay = two_boxes()
    lay.instances.append(box_instance("ball 2", (45, 60, 55, 75), label="ball", enabled=False))
    dets = perfect(lay) + [Detection((90, 120, 110, 150), 0.95, "ball")]
    r = coco_ap([(lay, SIZE)], [dets])
    # ball: FP (0.95) then TP -> interpolated precision 1/2 at every recall; cube: 1.0
    assert r["AP"] == pytest.approx((0.5 + 1.0) / 2)


def test_several_images_share_categories():
    a, b = two_boxes(), Layout(100, 80, "", [box_instance("ball", (0, 0, 30, 30))])
    r = coco_ap([(a, SIZE), (b, (100, 80))], [perfect(a), perfect(b, (100, 80))])
    assert r["AP"] == pytest.approx(1.0, abs=1e-12)
    r = coco_ap([(a, SIZE), (b, (100, 80))], [perfect(a), []])
    assert 0.0 < r["AP"] < 1.0


def test_mask_ap_reads_the_masks_and_needs_them():
    lay = Layout(100, 80, "", [Instance("blob", regions=[Region("polygon", points=[(10, 10), (60, 10), (10, 60)])])])
    g = ground_truth(lay, (100, 80))[0]
    # right box, mask of the other triangle half: box AP 1, mask AP 0
    other = np.zeros_like(g.mask)
    other[10:60, 10:60] = True
    other &= ~g.mask
    dets = [Detection(g.box, 0.9, "blob", other)]
    assert coco_ap([(lay, (100, 80))], [dets], "bbox")["AP"] == pytest.approx(1.0, abs=1e-12)
    assert coco_ap([(lay, (100, 80))], [dets], "segm")["AP"] == 0.0
    with pytest.raises(ValueError, match="detection 1: mask AP needs a \\[80, 100\\] mask"):
        coco_ap([(lay, (100, 80))], [[Detection(g.box, 0.9, "blob")]], "segm")


def test_refusals_name_the_image_and_detection():
    lay = two_boxes()
    with pytest.raises(ValueError, match="image 1, detection 3: box must be four finite numbers"):
        coco_ap([(lay, SIZE)], [perfect(lay) + [Detection((0, 0, float("nan"), 5), 0.5, "ball")]])
    with pytest.raises(ValueError, match="one list per image"):
        coco_ap([(lay, SIZE)], [])
    with pytest.raises(ValueError, match="iou_type"):
        coco_ap([(lay, SIZE)], [[]], "keypoints")
