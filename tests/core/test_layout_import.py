"""Importers: InstanceDiffusion demo JSON, IFAdapter sample layouts, ComfyUI MASK batches."""

import numpy as np
import pytest
import torch

from core.layout import (
    Layout,
    LayoutError,
    from_ifadapter_json,
    from_instancediffusion_json,
    from_masks,
    rle_encode,
)


def id_demo() -> dict:
    mask = np.zeros((512, 768), dtype=bool)
    mask[100:300, 50:250] = True
    return {
        "caption": "a kitchen with a corgi",
        "width": 768,
        "height": 512,
        "annos": [
            {"caption": "a corgi with a red collar", "category_name": "dog", "bbox": [50, 100, 200, 200],
             "mask": rle_encode(mask)},
            {"caption": "a palm tree", "category_name": "tree", "bbox": [0, 0, 0, 0], "mask": [],
             "point": [400, 256]},
            {"caption": "a cable", "bbox": [700, 400, 100, 150], "scribble": [[700, 400], [760, 450], [790, 520]],
             "iscrowd": 0},
            {"caption": "a flat scribble", "scribble": [10, 10, 20, 20, 30, 10]},
        ],
        "image_id": 42,
    }  # fmt: skip


def test_instancediffusion_import():
    layout = Layout.from_json(id_demo())
    assert (layout.width, layout.height, layout.prompt) == (768, 512, "a kitchen with a corgi")
    corgi, palm, cable, flat = layout.instances
    assert corgi.label == "dog" and corgi.description == "a corgi with a red collar"
    assert corgi.region("box").box == (50, 100, 250, 300)  # [x, y, w, h] -> xyxy
    assert corgi.region("mask").mask.shape == (512, 768) and corgi.region("mask").mask.sum() == 200 * 200
    assert [r.kind for r in palm.regions] == ["point"]  # all-zero bbox and [] mask mean "absent"
    assert palm.region("point").points == [(400, 256)]
    assert cable.region("box").box == (700, 400, 768, 512)  # clipped to the frame
    assert cable.region("scribble").points == [(700, 400), (760, 450), (768, 512)]
    assert cable.extra == {"iscrowd": 0}
    assert flat.region("scribble").points == [(10, 10), (20, 20), (30, 10)]
    assert layout.extra == {"image_id": 42}
    # the mask lands where the box is: 768x512 at 16x24 cells -> box cols 50/32..250/32, rows 100/32..300/32
    r = layout.rasterize(16, 24)[0]
    assert r[4:9, 2:7].all() and r.sum() == r[3:10, 1:8].sum()


def test_instancediffusion_coco_polygon_mask_and_list_counts():
    d = {"caption": "", "width": 100, "height": 100, "annos": [
        {"caption": "a kite", "mask": [[10, 10, 50, 10, 30, 40]]},
        {"caption": "a blob", "mask": {"size": [2, 2], "counts": [0, 1, 3]}},
    ]}  # fmt: skip
    layout = Layout.from_json(d)
    assert layout.instances[0].region("polygon").points == [(10, 10), (50, 10), (30, 40)]
    assert layout.instances[1].region("mask").mask.tolist() == [[True, False], [False, False]]
    assert layout.to_dict()["instances"][1]["regions"][0]["rle"]["counts"] == [0, 1, 3]


@pytest.mark.parametrize(
    ("anno", "needle"),
    [
        ({"bbox": [0, 0, 10, 10]}, "annos[0]): missing 'caption'"),
        ({"caption": "a cup", "bbox": [0, 0, 0, 0]}, 'instance 1 ("a cup") (annos[0]): no usable region'),
        ({"caption": "a cup", "mask": {"size": [2, 2], "counts": "zz"}}, "malformed RLE in 'mask'"),
        ({"caption": "a cup", "bbox": [0, 0, 10]}, "'bbox' must be [x, y, w, h] pixels"),
        ({"caption": "a cup", "scribble": [1, 2, 3]}, "needs an even count"),
        ({"caption": "a cup", "mask": 5}, "'mask' must be a COCO RLE object"),
    ],
)
def test_instancediffusion_errors(anno, needle):
    with pytest.raises(LayoutError) as e:
        Layout.from_json({"caption": "", "width": 64, "height": 64, "annos": [anno]})
    assert needle in str(e.value)


def test_instancediffusion_canvas_errors():
    with pytest.raises(LayoutError, match="'width' must be an integer number of pixels"):
        from_instancediffusion_json({"caption": "", "height": 64, "annos": []})
    # integral floats are accepted as canvas sides
    assert from_instancediffusion_json({"width": 64.0, "height": 32, "annos": []}).width == 64


def ifa_sample() -> dict:
    return {"caption": "two cups on a table", "annotations": [
        {"box": [100, 300, 200, 150], "caption": ["a blue ceramic cup with white dots"]},
        {"box": [400, 320, 400, 100], "caption": "a glass cup"},
    ]}  # fmt: skip


def test_ifadapter_import_default_canvas():
    layout = Layout.from_json(ifa_sample())
    assert (layout.width, layout.height, layout.prompt) == (768, 768, "two cups on a table")
    a, b = layout.instances
    assert a.description == "a blue ceramic cup with white dots"
    assert a.region("box").box == (100, 300, 300, 450)
    assert b.region("box").box == (400, 320, 768, 420)  # clipped
    torch.testing.assert_close(layout.boxes_normalized()[0], torch.tensor([100, 300, 300, 450]) / 768.0)


def test_ifadapter_import_other_canvas():
    layout = from_ifadapter_json(ifa_sample(), width=1024, height=1024).validate()
    assert layout.instances[1].region("box").box == (400, 320, 800, 420)
    d = dict(ifa_sample(), width=512, height=512)
    assert from_ifadapter_json(d, width=1024, height=1024).width == 512


def test_ifadapter_errors():
    with pytest.raises(LayoutError, match=r"instance 1 \(annotations\[0\]\): 'caption' must be a string"):
        from_ifadapter_json({"caption": "", "annotations": [{"box": [0, 0, 5, 5]}]})
    with pytest.raises(LayoutError, match=r'instance 1 \("a cup"\): box \[900, 0, 5, 5\] has zero area'):
        from_ifadapter_json({"caption": "", "annotations": [{"box": [900, 0, 5, 5], "caption": "a cup"}]})


def test_from_masks_batch():
    masks = torch.zeros(2, 48, 64)
    masks[0, :24, :32] = 1.0
    masks[1, 24:, 32:] = 0.8
    layout = from_masks(masks, ["a red apple", "a green pear"], prompt="fruit")
    assert (layout.width, layout.height, layout.prompt) == (64, 48, "fruit")
    assert [i.description for i in layout.instances] == ["a red apple", "a green pear"]
    r = layout.rasterize(6, 8)
    assert r[0, :3, :4].all() and r[0].sum() == 12 and r[1, 3:, 4:].all() and r[1].sum() == 12
    torch.testing.assert_close(layout.boxes_normalized(), torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]))
    assert masks[1, 30, 40] == 0.8  # input untouched


def test_from_masks_errors():
    with pytest.raises(LayoutError, match="got 2 masks but 1 descriptions"):
        from_masks(torch.ones(2, 4, 4), ["x"])
    with pytest.raises(LayoutError, match=r'instance 2 \("b"\): regions\[0\] \(mask\): mask is empty'):
        from_masks(torch.stack([torch.ones(4, 4), torch.zeros(4, 4)]), ["a", "b"])
    with pytest.raises(LayoutError, match=r"masks must be \[n, H, W\]"):
        from_masks(torch.ones(1, 1, 4, 4), ["a"])
