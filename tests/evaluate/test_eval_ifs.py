"""IFS rate: the localisation rule (IoU >= 0.5), the versioned prompt, the yes/no parser and the aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_scenes import RGB, draw, two_boxes

from evaluate.metrics.crops import crop_box
from evaluate.metrics.ground_truth import ground_truth
from evaluate.metrics.ifs import (
    LOCALISATION_IOU,
    PROMPT_VERSION,
    PROMPTS,
    box_iou,
    ifs_rates,
    localise,
    parse_yes_no,
    verification_prompt,
)


def test_box_iou_hand_cases():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_localisation_threshold_is_inclusive_at_one_half():
    assert LOCALISATION_IOU == 0.5
    gt = (0, 0, 30, 10)
    half = (10, 0, 40, 10)  # inter 20x10 = 200, union 400 -> exactly 0.5
    assert box_iou(gt, half) == 0.5
    r = localise(gt, [(100, 100, 110, 110), half])
    assert (r.index, r.iou, r.ok) == (1, 0.5, True)
    r = localise(gt, [(11, 0, 41, 10)])
    assert r.index == 0 and r.iou < 0.5 and not r.ok
    assert localise(gt, []) == localise(gt, []) and not localise(gt, []).ok and localise(gt, []).index is None
    # the best box wins, the first on ties
    assert localise(gt, [half, gt, gt]).index == 1


def test_localise_and_crop_on_a_drawn_scene():
    lay = two_boxes()
    size = (200, 160)
    img = draw(size, [((20, 20, 80, 100), "red"), ((150, 40, 200, 140), "blue")])
    gts = ground_truth(lay, size)
    # a grounded detector's boxes for "ball" and "cube": the drawn shapes' boxes
    ball = localise(gts[0].box, [(150, 40, 200, 140), (20, 20, 80, 100)])
    cube = localise(gts[1].box, [(150, 40, 200, 140)])
    assert ball.ok and ball.index == 1 and ball.iou == 1.0
    assert not cube.ok and cube.iou == pytest.approx(30 * 100 / (60 * 100 + 50 * 100 - 30 * 100))
    crop = crop_box(img, (20, 20, 80, 100))
    assert (crop == RGB["red"]).all()


def test_prompt_template_is_versioned():
    assert PROMPT_VERSION in PROMPTS
    assert verification_prompt("  a red ball ") == 'Does this image show a red ball? Answer with one word, "yes" or "no".'
    with pytest.raises(ValueError, match="prompt version"):
        verification_prompt("x", "ifs-v0")


@pytest.mark.parametrize("answer, expect", [
    ("Yes", True), ("yes.", True), ("**Yes**, it is a red ball.", True), ('"No"', False), ("NO", False),
    ("No, it is not.", False), ("The answer is no.", False), ("I think yes", True),
    ("Yesterday it was", None), ("none of them", None), ("Not sure", None), ("", None),
    ("It could be yes or no", None), ("The image shows a cat.", None),
])  # fmt: skip
def test_parse_yes_no(answer, expect):
    assert parse_yes_no(answer) is expect


def test_parse_yes_no_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="characters"):
        parse_yes_no("yes " * 5000)
    with pytest.raises(ValueError, match="must be a string"):
        parse_yes_no(None)


def test_ifs_rates_per_vlm_and_mean():
    localised = [True, True, False, True]
    verdicts = {"qwen": [True, False, True, True], "intern": [True, None, True, False]}
    r = ifs_rates(localised, verdicts)
    assert r == {"qwen": 0.5, "intern": 0.25, "mean": 0.375}  # the unlocalised "yes" does not count
    assert math.isnan(ifs_rates([], {"qwen": []})["qwen"])
    with pytest.raises(ValueError, match="one per instance"):
        ifs_rates(localised, {"qwen": [True]})
    with pytest.raises(ValueError, match="at least one VLM"):
        ifs_rates(localised, {})
    assert np.isclose(ifs_rates([True] * 3, {"a": [True, True, True]})["mean"], 1.0)


def test_box_iou_equals_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = np.sort(rng.uniform(0, 100, (2, 2, 2)), axis=1)  # [[x0, x1], [y0, y1]] each
        ab = (a[0, 0], a[1, 0], a[0, 1], a[1, 1])
        bb = (b[0, 0], b[1, 0], b[0, 1], b[1, 1])
        xywh = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (ab, bb)]
        ref = float(mask_utils.iou([xywh[0]], [xywh[1]], [0])[0, 0])
        assert box_iou(ab, bb) == pytest.approx(ref, rel=1e-9, abs=1e-12)
