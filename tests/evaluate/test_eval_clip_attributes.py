"""Instance CLIP score, image CLIP score and attribute binding with hand-made embeddings over drawn scenes.

The embedding model is pluggable; here a crop's 'embedding' is its mean colour centred on grey, and a candidate
colour's is its RGB centred the same way, so the scoring math and the crop plumbing run for real and the answers
are known.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_scenes import box_instance, draw, two_boxes

from core.layout import Layout
from evaluate.metrics.attributes import (
    COLOURS,
    TEXTURES,
    attribute_of,
    binding_correct,
    candidate_prompts,
    image_binding_accuracy,
    official_attribute,
    predict_attributes,
)
from evaluate.metrics.clip_scores import clip_score, cosine, image_instance_clip_score, instance_clip_scores
from evaluate.metrics.crops import instance_crops

NAMED = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0), "green": (0, 128, 0),
         "yellow": (255, 255, 0), "blue": (0, 0, 255), "pink": (255, 192, 203), "purple": (128, 0, 128)}  # fmt: skip


def colour_embedding(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) / 255.0 - 0.5


def crop_embedding(crop: np.ndarray) -> np.ndarray:
    return colour_embedding(crop.reshape(-1, 3).mean(axis=0))


def test_candidates_are_the_official_lists():
    assert COLOURS == ("black", "white", "red", "green", "yellow", "blue", "pink", "purple")
    assert TEXTURES == ("rubber", "fluffy", "metallic", "wooden", "plastic", "fabric", "leather", "glass")
    assert candidate_prompts("colour")[2] == "a red object" and candidate_prompts("texture")[7] == "a glass object"
    assert official_attribute(2, "colour") == "red" and official_attribute(13, "colour") == "blue"
    assert attribute_of("red ball", "colour") == 2
    assert attribute_of("Red ball", "colour") is None  # exact first word, as the official list.index
    assert attribute_of("a red ball", "colour") is None and attribute_of("wooden chair", "texture") == 3
    with pytest.raises(ValueError, match="attribute kind"):
        attribute_of("red", "shape")


def test_colour_binding_on_a_drawn_scene():
    lay = two_boxes()  # "red ball" at (10..40, 10..50), "blue cube" at (60..90, 20..70)
    lay.instances.append(box_instance("wooden box", (40, 60, 50, 70)))  # asks for no colour: not scored
    lay.instances.append(box_instance("white cup", (0, 0, 5, 5)))
    img = draw((200, 160), [((20, 20, 80, 100), "red"), ((120, 40, 180, 140), "red"), ((0, 0, 10, 10), "white")])
    crops = instance_crops(lay, img)
    embeds = np.stack([crop_embedding(c) for c in crops])
    cands = np.stack([colour_embedding(NAMED[c]) for c in COLOURS])
    assert predict_attributes(embeds, cands).tolist()[:2] == [2, 2]
    asked = [attribute_of(i.description, "colour") for i in lay.active()]
    assert asked == [2, 5, None, 1]
    correct = binding_correct(embeds, cands, asked)
    assert correct == [1, 0, None, 1]  # the cube came out red
    assert image_binding_accuracy(correct) == pytest.approx(2 / 3)
    assert math.isnan(image_binding_accuracy([None]))
    with pytest.raises(ValueError, match="one entry per row"):
        binding_correct(embeds, cands, asked[:2])


def test_argmax_takes_the_first_on_ties():
    cands = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert predict_attributes(np.array([[2.0, 0.0]]), cands).tolist() == [0]


def test_instance_clip_score_is_the_plain_cosine():
    crops = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    texts = np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=np.float32)
    s = instance_clip_scores(crops, texts)
    assert s.dtype == np.float32
    assert s.tolist() == pytest.approx([1.0, 1 / math.sqrt(2), -1.0])  # not clipped, not scaled
    assert image_instance_clip_score(crops, texts) == pytest.approx((1.0 + 1 / math.sqrt(2) - 1.0) / 3)
    assert math.isnan(image_instance_clip_score(np.zeros((0, 3)), np.zeros((0, 3))))
    with pytest.raises(ValueError, match="norm 0"):
        cosine(np.zeros((1, 3)), texts[:1])
    with pytest.raises(ValueError, match="one shape"):
        cosine(crops, texts[:2])


def test_image_clip_score_scales_by_100_and_clamps_the_mean():
    img = np.array([[1.0, 0.0], [0.6, 0.8]])
    cap = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert clip_score(img, cap) == pytest.approx(100 * (1.0 + 0.6) / 2)
    assert clip_score(img, -cap) == 0.0
    assert clip_score(np.array([[1.0, 0.0], [-0.6, 0.8]]), cap) == pytest.approx(20.0)  # mean of 100 and -60


def test_embedding_crops_of_a_synthetic_layout_match_manual_cosine():
    lay = Layout(40, 40, "", [box_instance("green leaf", (0, 0, 20, 20)), box_instance("blue sky", (20, 0, 40, 20))])
    img = draw((40, 40), [((0, 0, 20, 20), "green"), ((20, 0, 40, 20), "white")])
    e = np.stack([crop_embedding(c) for c in instance_crops(lay, img)])
    t = np.stack([colour_embedding(NAMED["green"]), colour_embedding(NAMED["blue"])])
    s = instance_clip_scores(e, t)
    manual = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(e, t)]
    assert s.tolist() == pytest.approx(manual)
    assert s[0] > 0.8 and s[1] == pytest.approx(-1 / 3)  # white (+,+,+) vs blue (-,-,+)
