"""Imported COCO polygons are rasterised as pycocotools' ``annToMask`` does (frPyObjects + merge + decode), checked
against pycocotools itself (a test-only dependency) on random polygons: non-integer, integer and half-integer
vertices, both orientations, self-touching and self-crossing outlines, vertices outside the image, several polygons
per instance, steep and shallow edges. The layout keeps the rule through JSON (``"fill": "coco"``), and the
InstanceDiffusion inputs of an imported polygon are those of the official mask."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from core import raster
from core.coco_polygon import polygons_mask
from core.instancediffusion import InstanceInput, prepare_inputs
from core.instancediffusion.inputs import from_layout
from core.layout import Layout, LayoutError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools + numpy 2


def ann_to_mask(polygons: list, h: int, w: int) -> np.ndarray:
    """pycocotools' COCO.annToMask for a polygon segmentation on an h x w image."""
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def random_polygons(rng: np.random.Generator, h: int, w: int, style: int) -> list:
    out = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(3, 14))
        span = (-0.3 * max(h, w), 1.3 * max(h, w)) if style == 0 else (0, max(h, w))
        p = rng.uniform(*span, size=(k, 2))
        if style == 1:
            p = np.round(p)  # integer vertices
        elif style == 2:
            p = np.round(p * 2) / 2  # on pixel edges and centres, the .5 ties of the 5x upsampling
        elif style == 3:  # a star around a centre: many steep and shallow edges, counter-clockwise or clockwise
            c = rng.uniform(0, max(h, w), 2)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))[:: 1 if rng.random() < 0.5 else -1]
            r = rng.uniform(1, max(h, w) / 2, k)
            p = c + np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
        out.append(p.reshape(-1).tolist())
    return out


@pytest.mark.parametrize("style", range(4))
def test_random_polygons_equal_ann_to_mask(style):
    rng = np.random.default_rng(1000 + style)
    for _ in range(400):
        h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        polys = random_polygons(rng, h, w, style)
        assert np.array_equal(polygons_mask(polys, h, w), ann_to_mask(polys, h, w)), (h, w, polys)


def test_large_canvas_and_long_edges_equal_ann_to_mask():
    rng = np.random.default_rng(7)
    for h, w in [(512, 512), (300, 1000), (1024, 97)]:
        polys = [rng.uniform(-20, max(h, w) + 20, 2 * 300).tolist(), rng.uniform(0, min(h, w), 2 * 5).tolist()]
        assert np.array_equal(polygons_mask(polys, h, w), ann_to_mask(polys, h, w))


@pytest.mark.parametrize("poly", [
    [10.5, 10.5, 20.5, 10.5, 20.5, 20.5, 10.5, 20.5],  # the reviewer's square: rows 11..20 (pixel centres: 10..19)
    [10.5, 10.5, 10.5, 20.5, 20.5, 20.5, 20.5, 10.5],  # the same square clockwise
    [2, 2, 20, 2, 11, 11, 20, 20, 2, 20, 11, 11],  # two triangles touching at (11, 11)
    [2, 2, 20, 20, 20, 2, 2, 20],  # a bow tie (self-crossing)
    [5, 5, 25, 5, 25, 25, 5, 25, 5, 5, 15, 15, 15, 10],  # a spike back along its own edge
    [-10, -10, 40, 3, 12, 40],  # vertices outside the image
    [3, 3, 3, 3, 9, 3],  # degenerate: no area
    [3.1, 3.1, 3.3, 3.2, 3.2, 3.3],  # inside one pixel, no column boundary crossed
])  # fmt: skip
def test_special_polygons_equal_ann_to_mask(poly):
    assert np.array_equal(polygons_mask([poly], 32, 32), ann_to_mask([poly], 32, 32))


def test_square_rows():
    m = polygons_mask([[10.5, 10.5, 20.5, 10.5, 20.5, 20.5, 10.5, 20.5]], 32, 32)
    assert np.flatnonzero(m.any(1)).tolist() == list(range(11, 21))


def demo(polys: list, bbox: bool = True) -> dict:
    return {"caption": "", "width": 96, "height": 64, "annos": [
        {"caption": "a kite", "mask": polys, **({"bbox": [1, 1, 90, 60]} if bbox else {})},
        {"caption": "a drawn shape", "bbox": [5, 5, 10, 10]},
    ]}  # fmt: skip


POLYS = [[10.5, 10.5, 60.2, 12.7, 44.9, 50.5, 20.25, 41.0], [70, 5, 90, 5, 80.5, 30.5]]


def test_imported_polygons_keep_the_coco_rule_through_json():
    layout = Layout.from_json(demo(POLYS, bbox=False))
    assert [raster.polygon_fill(r) for r in layout.instances[0].regions] == ["coco", "coco"]
    d = layout.to_dict()
    assert [r["fill"] for r in d["instances"][0]["regions"]] == ["coco", "coco"]
    again = Layout.from_json(d)
    assert again.to_dict() == d
    ref = ann_to_mask(POLYS, 64, 96)
    assert np.array_equal(again.rasterize(64, 96)[0].numpy().astype(bool), ref)  # at the canvas size: annToMask
    assert not np.array_equal(ref, raster_even_odd(POLYS, 64, 96))  # the pixel-centre rule differs here


def raster_even_odd(polys: list, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), dtype=bool)
    for p in polys:
        raster.paste(out, raster.polygon_cells(np.asarray(p, dtype=np.float64).reshape(-1, 2), w, h, h, w))
    return out


def test_drawn_polygons_keep_the_pixel_centre_rule():
    d = {"format": "instance-layout", "version": 1, "width": 32, "height": 32, "instances": [
        {"description": "a square", "regions": [
            {"kind": "polygon", "points": [[10.5, 10.5], [20.5, 10.5], [20.5, 20.5], [10.5, 20.5]]}]}]}
    m = Layout.from_json(d).rasterize(32, 32)[0].numpy().astype(bool)
    assert np.flatnonzero(m.any(1)).tolist() == list(range(10, 20))
    d["instances"][0]["regions"][0]["fill"] = "even-odd"
    assert torch.equal(Layout.from_json(d).rasterize(32, 32)[0], torch.from_numpy(m).float())
    d["instances"][0]["regions"][0]["fill"] = "nonzero"
    with pytest.raises(LayoutError, match="'fill' must be one of 'even-odd', 'coco'"):
        Layout.from_json(d)


def test_instancediffusion_inputs_of_an_imported_polygon_are_the_official_ones():
    layout = Layout.from_json(demo(POLYS))
    emb = torch.randn(2, 768, generator=torch.Generator().manual_seed(0))
    got = from_layout(layout, emb, preset="masks")
    mask = ann_to_mask(POLYS, 64, 96)
    ref = prepare_inputs([InstanceInput(emb[0], box=(1, 1, 91, 61), mask=mask),
                          InstanceInput(emb[1], box=(5, 5, 15, 15))], 96, 64, preset="masks")
    for k in ("polygons", "segs", "scribbles", "boxes", "points"):
        assert torch.equal(got[k], ref[k]), k


def test_vertices_just_outside_the_image_are_clipped_without_changing_the_mask():
    """int(5x + 0.5) is the same for x in (-0.3, 0] and for x in [W, W + 0.1): COCO's float overshoots at the image
    border give the official mask after the importer's clipping."""
    polys = [[-0.25, 10.5, 95.05, -0.2, 96.09, 63.5, 30.7, 64.08]]
    layout = Layout.from_json(demo(polys, bbox=False))
    assert layout.instances[0].regions[0].points == [(0, 10.5), (95.05, 0), (96, 63.5), (30.7, 64)]
    mask = ann_to_mask(polys, 64, 96)
    assert np.array_equal(layout.rasterize(64, 96)[0].numpy().astype(bool), mask)
    emb = torch.zeros(2, 768)
    got = from_layout(layout, emb, preset="masks")
    ref = prepare_inputs([InstanceInput(emb[0], mask=mask), InstanceInput(emb[1], box=(5, 5, 15, 15))], 96, 64,
                         preset="masks")
    assert torch.equal(got["segs"], ref["segs"]) and torch.equal(got["polygons"], ref["polygons"])
