"""The linear-time rasteriser (core/raster.py) gives exactly the cells of the per-cell rule it replaced.

tests/core/raster_reference.py keeps the old full-grid implementation; random layouts (random, integer, half-integer
and cell-aligned coordinates, so that ties on cell centres and edges happen often) are rasterised by both on many
grids and compared cell for cell, through rasterize, union_mask and areas.
"""

import numpy as np
import pytest
import torch
from raster_reference import reference_rasterize, reference_rasterize_polygon

from core.instancediffusion.inputs import rasterize_polygon
from core.layout import Instance, Layout, Region
from core.raster import region_cells


def _coord(rng: np.random.Generator, hi: int, cells: list[int]) -> float:
    mode = rng.integers(5)
    if mode == 0:
        return float(rng.uniform(0, hi))
    if mode == 1:
        return int(rng.integers(0, hi + 1))
    if mode == 2:
        return float(rng.integers(0, 2 * hi + 1)) / 2
    n = cells[rng.integers(len(cells))]  # on a cell edge or centre of one of the test grids
    return min(hi, float(rng.integers(0, 2 * n + 1)) / 2 * hi / n)


def _points(rng, W, H, k, grids):
    gw, gh = [g[1] for g in grids], [g[0] for g in grids]
    if rng.random() < 0.3:  # a small cluster (thin, tiny or degenerate shapes)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        s = rng.choice([0.01, 0.5, 2.0])
        return [(float(np.clip(cx + rng.normal() * s, 0, W)), float(np.clip(cy + rng.normal() * s, 0, H)))
                for _ in range(k)]
    return [(_coord(rng, W, gw), _coord(rng, H, gh)) for _ in range(k)]


def _region(rng, W, H, grids) -> Region:
    kind = rng.choice(["box", "polygon", "mask", "scribble", "point", "polygon", "scribble"])
    if kind == "box":
        x0, x1 = sorted(_coord(rng, W, [g[1] for g in grids]) for _ in range(2))
        y0, y1 = sorted(_coord(rng, H, [g[0] for g in grids]) for _ in range(2))
        return Region("box", box=(x0, y0, x1 + (x1 == x0), y1 + (y1 == y0)))
    if kind == "mask":
        mh, mw = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        m = rng.random((mh, mw)) < rng.choice([0.002, 0.05, 0.5])
        if rng.random() < 0.5:
            m[:] = False
            y0, x0 = rng.integers(0, mh), rng.integers(0, mw)
            m[y0 : y0 + rng.integers(1, 6), x0 : x0 + rng.integers(1, 6)] = True
        if not m.any():
            m[rng.integers(mh), rng.integers(mw)] = True
        return Region("mask", mask=m)
    if kind == "point":
        width = float(rng.choice([0.01, 0.3, 1, 2.5, 4, 17, 400]))
        return Region("point", points=_points(rng, W, H, 1, grids), width=width)
    k = int(rng.choice([2, 3, 4, 7, 20, 60])) if kind == "scribble" else int(rng.choice([3, 4, 5, 9, 30, 80]))
    pts = _points(rng, W, H, k, grids)
    if rng.random() < 0.2:  # repeated points: zero-length segments and zero-height edges
        pts = [p for p in pts for _ in range(2)]
    if kind == "scribble":
        width = float(rng.choice([0.001, 0.5, 1, 2, 4, 7.3, 33, 500]))
        return Region("scribble", points=pts, width=width)
    return Region("polygon", points=pts)


GRIDS = [(1, 1), (2, 3), (7, 5), (16, 16), (24, 32), (33, 17), (64, 64), (128, 96)]


@pytest.mark.parametrize("seed", range(40))
def test_random_layouts_match_the_per_cell_rule(seed):
    rng = np.random.default_rng(seed)
    W, H = (int(rng.choice([1, 3, 10, 64, 100, 333, 512, 1024])) for _ in range(2))
    grids = [GRIDS[i] for i in rng.choice(len(GRIDS), 3, replace=False)] + [(min(H, 200), min(W, 200))]
    instances = [Instance(f"thing {i}", regions=[_region(rng, W, H, grids) for _ in range(rng.integers(1, 4))],
                          enabled=bool(rng.random() < 0.9)) for i in range(6)]
    layout = Layout(W, H, instances=instances)
    for h, w in grids:
        ref = reference_rasterize(layout, h, w)
        got = layout.rasterize(h, w)
        assert got.dtype == torch.float32
        bad = np.argwhere(got.numpy().astype(bool) != ref)
        assert bad.size == 0, f"grid {h}x{w} canvas {W}x{H}: cells differ at {bad[:5].tolist()}"
        assert torch.equal(layout.union_mask(h, w), torch.from_numpy(ref.any(axis=0).astype(np.float32)))
        assert layout.areas(h, w).tolist() == ref.sum(axis=(1, 2)).astype(np.float32).tolist()


def test_each_region_kind_alone_on_fine_grids():
    """Many single regions at the canvas resolution (the preview's grid), where strokes span many cells."""
    rng = np.random.default_rng(123)
    for k in range(150):
        W, H = int(rng.choice([64, 100, 257])), int(rng.choice([64, 90, 200]))
        layout = Layout(W, H, instances=[Instance("x", regions=[_region(rng, W, H, [(H, W)])])])
        for h, w in ((H, W), (2 * H, W), (H // 3 + 1, W // 2 + 1)):
            ref = reference_rasterize(layout, h, w)
            got = layout.rasterize(h, w).numpy().astype(bool)
            assert np.array_equal(got, ref), (k, layout.instances[0].regions[0], h, w)


def test_crops_stay_inside_the_region_bbox():
    """Work is bounded by what is drawn: a small stroke far from the origin gives a small crop there."""
    r = Region("scribble", points=[(900, 900), (910, 905)], width=4)
    r0, c0, m = region_cells(r, 1024, 1024, 1024, 1024)
    assert (r0, c0) >= (895, 895) and m.shape[0] <= 16 and m.shape[1] <= 20 and m.any()
    p = Region("polygon", points=[(500, 10), (520, 10), (510, 30)])
    r0, c0, m = region_cells(p, 1024, 1024, 1024, 1024)
    assert r0 >= 9 and c0 >= 498 and m.shape[0] <= 21 and m.shape[1] <= 23 and m.any()


def test_instancediffusion_polygon_fill_matches_its_per_cell_version():
    """InstanceDiffusion's mask from polygons (at the mask's or the canvas resolution) uses the same scanline fill."""
    rng = np.random.default_rng(7)
    for _ in range(60):
        W, H = int(rng.choice([64, 100, 512])), int(rng.choice([64, 96, 384]))
        mh, mw = int(rng.choice([H, 32, 57])), int(rng.choice([W, 40, 61]))
        pts = _points(rng, W, H, int(rng.choice([3, 5, 12, 40])), [(mh, mw)])
        assert np.array_equal(rasterize_polygon(pts, mh, mw, W, H), reference_rasterize_polygon(pts, mh, mw, W, H))
