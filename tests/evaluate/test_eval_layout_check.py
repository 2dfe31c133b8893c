"""Scoring images against their layouts (evaluate/layout_check.py) and the hit / miss overlay (evaluate/overlay.py).

Known answers come from drawn scenes and a colour detector (a real, deterministic algorithm: the bounding box of
each named colour's pixels); the real model classes run with tiny random weights for the plumbing."""

from __future__ import annotations

import json

import eval_tiny_models as tiny
import numpy as np
import pytest
from eval_scenes import ColourDetector, draw, two_boxes

from core.layout import Layout
from evaluate.layout_check import score, summary_text
from evaluate.models.clip import ClipEmbedder
from evaluate.models.detector import GroundedDetector
from evaluate.models.vlm import VlmVerifier
from evaluate.overlay import HIT, MISS, draw_overlay

COLOUR_OF = {"ball": "red", "cube": "blue"}


class AnswerVlm:
    """Answers from a table by description (the VLM's interface; the real class runs in test_real_models)."""

    def __init__(self, table):
        self.table, self.asked = table, []

    def answers(self, crops, descriptions):
        self.asked.extend(descriptions)
        return [self.table[d] for d in descriptions]


def scene(cube_at=(60, 20, 90, 70)):
    return draw((100, 80), [((10, 10, 40, 50), "red"), (cube_at, "blue")])


def test_hits_and_misses_on_drawn_scenes():
    lay = two_boxes()
    good, shifted = scene(), scene((0, 60, 20, 80))  # the cube drawn far from its box
    rep = score([lay, lay], [good, shifted], detector=ColourDetector(COLOUR_OF))
    s = rep["summary"]
    assert (s["images"], s["instances"], s["detections"], s["hits"]) == (2, 4, 4, 3)
    assert s["localisation_rate"] == 0.75 and s["hit_rate"] == 0.75
    assert [(r["image"], r["instance"], r["hit"]) for r in rep["instances"]] == [
        (1, 1, True), (1, 2, True), (2, 1, True), (2, 2, False)]
    assert rep["instances"][0]["iou"] == 1.0 and rep["instances"][3]["iou"] == 0.0
    assert rep["detections"][1][1] == {"box": [0.0, 60.0, 20.0, 80.0], "score": 1.0, "category": "cube"}
    assert 0 < s["box_AP"] < 1 and s["box_AP50"] == pytest.approx(0.75, abs=0.01)
    assert score([lay], [good], detector=ColourDetector(COLOUR_OF))["summary"]["box_AP"] == 1.0
    json.dumps(rep, allow_nan=False)  # JSON-safe: no NaN
    text = summary_text(rep)
    assert "2 image(s), 4 instance(s), 3 hit(s) (75.0 %)" in text and "image 2 instance 2 (cube): miss" in text


def test_vlm_verdicts_make_ifs_and_hits():
    lay = two_boxes()
    vlm = AnswerVlm({"red ball": "Yes.", "blue cube": "no"})
    rep = score([lay], [scene()], detector=ColourDetector(COLOUR_OF), vlm=vlm, names={"vlm": "table"})
    assert [r["hit"] for r in rep["instances"]] == [True, False]
    assert [r["verified"] for r in rep["instances"]] == [True, False]
    assert rep["summary"]["ifs"] == {"table": 0.5, "mean": 0.5}
    assert rep["versions"] == {"ifs_prompt": "ifs-v1", "yes_no_parser": "yesno-v1", "localisation_iou": 0.5}
    # a non-localised instance is not asked and fails
    vlm2 = AnswerVlm({"red ball": "yes", "blue cube": "yes"})
    rep2 = score([lay], [scene((0, 60, 20, 80))], detector=ColourDetector(COLOUR_OF), vlm=vlm2)
    assert vlm2.asked == ["red ball"] and [r["hit"] for r in rep2["instances"]] == [True, False]


def test_bad_input_messages():
    lay = two_boxes()
    with pytest.raises(ValueError, match=r"image 2 is 80x80 but its layout's canvas is 100x80 \(aspect ratio "
                                         r"1.000 vs 1.250\)"):
        score([lay, lay], [scene(), np.zeros((80, 80, 3), np.uint8)], detector=ColourDetector(COLOUR_OF))
    with pytest.raises(ValueError, match="IFS verification needs a detector"):
        score([lay], [scene()], vlm=AnswerVlm({}))
    with pytest.raises(ValueError, match="image 1 size 4096x4096 has 16777216 pixels"):
        score([lay.scaled(5000, 4000)], [np.zeros((4096, 4096 * 5 // 4, 3), np.uint8)[:, :4096]])
    # the same shape at another size is fine (the layout is scaled to the image)
    big = np.repeat(np.repeat(scene(), 2, axis=0), 2, axis=1)
    assert score([lay], [big], detector=ColourDetector(COLOUR_OF))["summary"]["hits"] == 2


def test_overlay_marks_hits_and_misses():
    lay = two_boxes()
    shifted = scene((0, 60, 20, 80))
    rep = score([lay], [shifted], detector=ColourDetector(COLOUR_OF))
    out = draw_overlay(lay, shifted, rep["instances"], rep["detections"][0])
    assert out.shape[1] == 100 and out.shape[0] > 80 and out.dtype == np.float32  # the legend strip below
    px = (out[:80] * 255).round().astype(int)
    hit_box = np.all(px == HIT, axis=-1)
    miss_box = np.all(px == MISS, axis=-1)
    assert hit_box[10:50, 10].any() and miss_box[60:80, 0:20].any()  # the ball's detection green, the cube's red
    ys, xs = np.nonzero(miss_box)
    assert ys[xs >= 45].min() >= 50  # right of the ball, only the cube's "2 miss" tag at its box's lower left


@pytest.fixture(scope="module")
def real_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return (GroundedDetector(str(tiny.save_owlv2(root / "detection" / "owlv2")), allow_path=True, threshold=0.0),
            ClipEmbedder(str(tiny.save_clip(root / "clip" / "clip")), allow_path=True),
            VlmVerifier(str(tiny.save_llava(root / "vlm" / "llava")), allow_path=True))  # fmt: skip


def test_real_models_run_through(real_models):
    det, clip, vlm = real_models
    lay = Layout.from_json({**two_boxes().to_dict(), "prompt": "red ball and a cube"})
    lay.instances[1].description = "blue cube"
    img = scene()
    rep = score([lay, lay], [img, img], detector=det, clip=clip, vlm=vlm, names={"vlm": "llava"})
    s = rep["summary"]
    assert s["instances"] == 4 and s["detections"] > 0 and set(s["ifs"]) == {"llava", "mean"}
    assert all(-1 <= r["clip"] <= 1 for r in rep["instances"])
    assert 0 <= s["image_clip"] <= 100 and "attribute_binding_colour" in s  # "red ball", "blue cube"
    one, two = ([{k: v for k, v in r.items() if k != "image"} for r in rep["instances"] if r["image"] == i]
                for i in (1, 2))
    assert one == two  # the same image scores the same in one batch
    again = score([lay, lay], [img, img], detector=det, clip=clip, vlm=vlm, names={"vlm": "llava"})
    assert again == rep  # deterministic
    json.dumps(rep, allow_nan=False)
