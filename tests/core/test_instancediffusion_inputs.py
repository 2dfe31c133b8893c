"""Input preparation (spec §1.2–1.3): normalisation, points, scribbles, mask polygons, padding, presets, layout."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from core.instancediffusion import (
    PRESETS,
    InstanceInput,
    from_layout,
    null_inputs,
    prepare_inputs,
    single_instance_inputs,
)
from core.instancediffusion.contours import find_contours_binary
from core.instancediffusion.inputs import equally_spaced, mask_to_polygon_points, reorder_scribble

E = torch.ones(768)


def test_shapes_padding_boxes_and_point_defaults():
    inst = [InstanceInput(E * 1, box=(64, 128, 192, 256)), InstanceInput(E * 2, box=(0, 0, 512, 256))]
    d = prepare_inputs(inst, 512, 512, preset="boxes")
    shapes = {k: tuple(v.shape) for k, v in d.items()}
    assert shapes == {
        "boxes": (1, 30, 4),
        "masks": (1, 30),
        "positive_embeddings": (1, 30, 768),
        "points": (1, 30, 2),
        "scribbles": (1, 30, 40),
        "polygons": (1, 30, 512),
        "segs": (1, 30, 512, 512),
        "drop": (4,),
    }
    assert d["masks"][0].tolist() == [1, 1] + [0] * 28
    assert torch.allclose(d["boxes"][0, 0], torch.tensor([0.125, 0.25, 0.375, 0.5]))
    assert torch.allclose(d["points"][0, 0], torch.tensor([0.25, 0.375]))  # box centre
    assert torch.allclose(d["points"][0, 1], torch.tensor([0.5, 0.25]))
    assert torch.equal(d["positive_embeddings"][0, 1], E * 2)
    assert d["boxes"][0, 2:].abs().sum() == 0 and d["positive_embeddings"][0, 2:].abs().sum() == 0
    assert d["drop"].tolist() == [False, False, True, True]


def test_non_square_canvas_and_explicit_point():
    d = prepare_inputs([InstanceInput(E, box=(0, 0, 384, 256), point=(192, 64))], 768, 512)
    assert torch.allclose(d["boxes"][0, 0], torch.tensor([0, 0, 0.5, 0.5]))
    assert torch.allclose(d["points"][0, 0], torch.tensor([0.25, 0.125]))


def test_more_than_30_instances_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 30 instances.*got 31"):
        prepare_inputs([InstanceInput(E, box=(0, 0, 1, 1))] * 31, 64, 64)


def test_errors_name_the_instance():
    with pytest.raises(ValueError, match=r'instance 2 \("red car"\): box corner \(600, 20\) is outside the canvas'):
        prepare_inputs(
            [InstanceInput(E, box=(0, 0, 1, 1)), InstanceInput(E, box=(10, 10, 600, 20), name="red car")], 512, 512
        )
    with pytest.raises(ValueError, match="text embedding has 1024 values; expected 768"):
        prepare_inputs([InstanceInput(torch.ones(1024), box=(0, 0, 1, 1))], 64, 64)
    with pytest.raises(ValueError, match="unknown InstanceDiffusion preset 'box'"):
        prepare_inputs([], 64, 64, preset="box")


def test_equally_spaced_and_scribble_resample_to_20():
    pts = list(range(25))
    assert equally_spaced(pts, 20) == list(range(20))  # gap 25 // 20 = 1
    assert equally_spaced(list(range(45)), 20) == [2 * i for i in range(20)]
    assert equally_spaced(list(range(7)), 20) == [(i * 7) // 20 for i in range(20)]  # with repeats
    # a scribble given out of order: sorted by distance to (0,0), resampled, sorted again
    scr = [(float(x), float(x)) for x in (9, 3, 7, 1, 5)]
    got = reorder_scribble(scr)
    assert len(got) == 20 and got == sorted(got, key=lambda p: math.hypot(*p))
    assert [p[0] for p in got] == [[1, 3, 5, 7, 9][(i * 5) // 20] for i in range(20)]
    d = prepare_inputs([InstanceInput(E, box=(0, 0, 10, 10), scribble=[(10, 20), (30, 40)])], 100, 200)
    s = d["scribbles"][0, 0].view(20, 2)
    assert torch.allclose(s[:10], torch.tensor([0.1, 0.1]).expand(10, 2)) and torch.allclose(
        s[10:], torch.tensor([0.3, 0.2]).expand(10, 2)
    )
    assert d["drop"].tolist() == [False] * 4  # auto -> scribbles preset


def test_contours_of_a_rectangle_are_the_4_adjacent_background_pixels():
    m = np.zeros((8, 9), dtype=bool)
    m[2:5, 3:7] = True
    (c,) = find_contours_binary(m)
    assert np.array_equal(c[0], c[-1])
    got = {tuple(p) for p in c.tolist()}
    exp = (
        {(1, x) for x in range(3, 7)}
        | {(5, x) for x in range(3, 7)}
        | {(y, 2) for y in range(2, 5)}
        | {(y, 7) for y in range(2, 5)}
    )
    assert got == {(float(a), float(b)) for a, b in exp}


def test_mask_becomes_256_point_polygon_and_512_seg():
    H = W = 64
    mask = np.zeros((H, W), dtype=bool)
    mask[10:26, 20:32] = True  # 16 rows x 12 cols = 192 px >= 128 interior points
    rng = np.random.default_rng(0)
    poly = mask_to_polygon_points(mask, 256, rng)
    assert len(poly) == 256 and poly == sorted(poly, key=lambda p: math.hypot(*p))
    # boundary: background pixels around the rectangle in the padded frame (+1), x = col, y = row
    boundary = {(float(x + 1), float(9 + 1)) for x in range(20, 32)} | {
        (float(x + 1), float(26 + 1)) for x in range(20, 32)
    }
    boundary |= {(float(19 + 1), float(y + 1)) for y in range(10, 26)} | {
        (float(32 + 1), float(y + 1)) for y in range(10, 26)
    }
    # interior: 192 pixels // 128 = segments of 1 -> the 128 pixels nearest the centroid (17.5, 25.5), stable order
    fg = [(r, c) for r in range(10, 26) for c in range(20, 32)]
    fg.sort(key=lambda rc: math.hypot(rc[0] - 17.5, rc[1] - 25.5))
    interior = Counter((float(c), float(r)) for r, c in fg[:128])
    rest = Counter(poly) - interior
    assert sum(rest.values()) == 128  # the 128 boundary picks
    assert set(rest) == boundary  # contour of 56 vertices (+closing); 128 linspace picks hit every vertex
    d = prepare_inputs([InstanceInput(E, mask=mask)], W, H)
    assert d["drop"].tolist() == [False, False, True, False]  # auto -> masks
    flat = d["polygons"][0, 0].view(256, 2)
    assert torch.allclose(flat, torch.tensor(poly) / 64)
    assert torch.allclose(d["boxes"][0, 0], torch.tensor([20 / 64, 10 / 64, 32 / 64, 26 / 64]))
    seg = d["segs"][0, 0]
    # bilinear upscaling (skimage.transform.resize, compared bit for bit in test_instancediffusion_official_inputs)
    assert seg.shape == (512, 512) and torch.equal(seg[84:204, 164:252], torch.ones(120, 88))
    assert seg[:76].sum() == 0 and 0 < seg[80, 200] < 1 and abs(float(seg.sum()) - 128 * 96) < 1
    scr = d["scribbles"][0, 0].view(20, 2) * 64  # auto-scribble: 20 random foreground pixels (x, y)
    assert all(mask[int(y), int(x)] for x, y in scr.tolist())
    assert d["segs"][0, 1:].sum() == 0 and d["polygons"][0, 1:].sum() == 0


def test_empty_mask_gives_zeros_and_presets():
    d = prepare_inputs([InstanceInput(E, box=(0, 0, 4, 4), mask=np.zeros((8, 8), bool))], 8, 8, preset="masks")
    assert d["polygons"].abs().sum() == 0 and d["segs"].abs().sum() == 0 and d["scribbles"].abs().sum() == 0
    assert PRESETS["points"].as_tensor().tolist() == [True, False, True, True]
    assert prepare_inputs([InstanceInput(E, point=(2, 2))], 8, 8)["drop"].tolist() == [True, False, True, True]
    assert PRESETS["scribbles"].as_tensor().tolist() == [False] * 4


def test_null_and_single_instance_inputs():
    n = null_inputs()
    assert all(v.abs().sum() == 0 for k, v in n.items() if k != "drop") and n["masks"].shape == (1, 30)
    d = prepare_inputs([InstanceInput(E * i, box=(0, 0, i, i)) for i in range(1, 4)], 8, 8)
    s = single_instance_inputs(d, 2)
    assert s["masks"][0].tolist() == [1] + [0] * 29
    assert torch.equal(s["positive_embeddings"][0, 0], E * 3) and torch.equal(s["boxes"][0, 0], d["boxes"][0, 2])
    assert torch.equal(s["drop"], d["drop"])


def test_from_layout_adapter():
    from core.layout import Layout

    layout = Layout.from_json(
        {
            "format": "instance-layout",
            "version": 1,
            "width": 64,
            "height": 32,
            "prompt": "p",
            "instances": [
                {"description": "a cat", "regions": [{"kind": "box", "box": [0, 0, 32, 16]}]},
                {"description": "off", "enabled": False, "regions": [{"kind": "box", "box": [0, 0, 8, 8]}]},
                {
                    "description": "a tree",
                    "regions": [{"kind": "polygon", "points": [[40, 4], [60, 4], [60, 28], [40, 28]]}],
                },
            ],
        }
    )
    d = from_layout(layout, torch.stack([E, E * 2]))
    assert d["masks"][0, :3].tolist() == [1, 1, 0]
    assert torch.allclose(d["boxes"][0, 0], torch.tensor([0, 0, 0.5, 0.5]))
    assert torch.allclose(d["boxes"][0, 1], torch.tensor([40 / 64, 4 / 32, 60 / 64, 28 / 32]))
    assert d["drop"].tolist() == [False, False, True, False]  # polygon -> mask preset
    assert d["segs"][0, 1].sum() > 0 and d["polygons"][0, 1].abs().sum() > 0
    with pytest.raises(ValueError, match="2 active instances but 3"):
        from_layout(layout, [E, E, E])
