"""Box -> crop as PIL.Image.crop cuts it (the official script's crop), and ground truth at image size."""

from __future__ import annotations

import numpy as np
import pytest
from eval_scenes import RGB, box_instance, draw, two_boxes
from PIL import Image

from core.layout import Instance, Layout, Region
from evaluate.metrics.crops import crop_bounds, crop_box, instance_crops
from evaluate.metrics.ground_truth import MAX_EVAL_PIXELS, ground_truth


@pytest.fixture(scope="module")
def noise_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


BOXES = [
    (0, 0, 53, 37), (10.2, 5.7, 30.4, 20.5), (2.5, 3.5, 10.5, 11.5), (1.5, 0.5, 4.5, 2.5),  # halves to even
    (-5.3, -2.0, 20.0, 10.0), (40.0, 30.0, 70.6, 50.2), (-10, -10, -2, -3), (60, 5, 80, 9),  # outside: zeros
    (5.0, 5.0, 5.4, 9.0),  # rounds to zero width
]  # fmt: skip


@pytest.mark.parametrize("box", BOXES)
def test_crop_matches_pil(noise_image, box):
    ref = np.asarray(Image.fromarray(noise_image).crop(box))
    out = crop_box(noise_image, box)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert np.array_equal(out, ref)


def test_crop_grey_image_and_bounds(noise_image):
    grey = noise_image[..., 0]
    box = (3.5, 4.5, 20.5, 33.5)
    assert np.array_equal(crop_box(grey, box), np.asarray(Image.fromarray(grey).crop(box)))
    assert crop_bounds((0.5, 1.5, 2.5, 3.5)) == (0, 2, 2, 4)
    with pytest.raises(ValueError, match="four finite numbers"):
        crop_box(grey, (0, 0, float("nan"), 3))
    with pytest.raises(ValueError, match="far larger"):
        crop_box(grey, (0, 0, 1e9, 10))


def test_instance_crops_of_a_drawn_scene():
    lay = two_boxes()
    lay.instances.append(box_instance("off", (0, 0, 5, 5), enabled=False))
    lay.instances.append(Instance("sliver", regions=[Region("box", box=(50, 0, 50.1, 80))]))
    img = draw((200, 160), [((20, 20, 80, 100), "red"), ((120, 40, 180, 140), "blue")])
    crops = instance_crops(lay, img)
    assert len(crops) == 3  # enabled instances only
    assert crops[0].shape == (80, 60, 3) and (crops[0] == RGB["red"]).all()
    assert crops[1].shape == (100, 60, 3) and (crops[1] == RGB["blue"]).all()
    assert crops[2] is None  # 0.2 px wide: no pixel after rounding


def test_ground_truth_boxes_masks_and_bounds():
    lay = Layout(100, 50, "", [
        Instance("ring", label=" toy ", regions=[Region("polygon", points=[(10, 10), (30, 10), (30, 30), (10, 30)])]),
        Instance("dot", regions=[Region("point", points=[(50, 25)], width=2)]),
    ])  # fmt: skip
    g = ground_truth(lay, (300, 100))  # 3x wider, 2x taller
    assert [x.number for x in g] == [1, 2] and g[0].category == "toy" and g[1].category == "dot"
    assert g[0].box == (30.0, 20.0, 90.0, 60.0)
    ys, xs = np.nonzero(g[0].mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (30, 89, 20, 59)
    assert g[0].mask.sum() == 60 * 40
    assert g[1].points.tolist() == [[150.0, 50.0]] and g[1].mask[50, 150]
    with pytest.raises(ValueError, match="at most"):
        ground_truth(lay, (MAX_EVAL_PIXELS, 2))
    with pytest.raises(ValueError, match="two positive integers"):
        ground_truth(lay, (0, 10))
