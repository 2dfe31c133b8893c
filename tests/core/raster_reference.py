"""The per-cell rasteriser as it was before core/raster.py: full-grid passes, one per polygon edge or stroke
segment. Kept verbatim as the reference that tests/core/test_layout_raster_equivalence.py compares the linear-time
rasteriser against, cell for cell (test-only; quadratic, do not use elsewhere)."""
from __future__ import annotations

import itertools
import math

import numpy as np

from core.layout import box_cells


def _centres(W: int, H: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of the cell centres: xs [1, w], ys [h, 1]."""
    xs = (np.arange(w, dtype=np.float64) + 0.5) * (W / w)
    ys = (np.arange(h, dtype=np.float64) + 0.5) * (H / h)
    return xs[None, :], ys[:, None]


def _seg_dist2(xs: np.ndarray, ys: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """[h, w] squared pixel distance from each cell centre to the polyline through pts [k, 2]."""
    best = np.full(np.broadcast_shapes(xs.shape, ys.shape), np.inf)
    if len(pts) == 1:
        pts = np.concatenate([pts, pts])
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / ll, 0.0, 1.0) if ll > 0 else 0.0
        px, py = ax + t * dx - xs, ay + t * dy - ys
        np.minimum(best, px * px + py * py, out=best)
    return best


def _raster_region(r, W: int, H: int, h: int, w: int) -> np.ndarray:
    """[h, w] bool cells covered by one region of a W x H canvas."""
    if r.kind == "box":
        x0, y0, x1, y1 = (float(v) for v in r.box)
        cy0, cy1, cx0, cx1 = box_cells((x0 / W, y0 / H, x1 / W, y1 / H), h, w)
        m = np.zeros((h, w), dtype=bool)
        m[cy0:cy1, cx0:cx1] = True
        return m
    if r.kind == "mask":
        mh, mw = r.mask.shape
        ri = np.minimum(((np.arange(h) + 0.5) * (mh / h)).astype(np.int64), mh - 1)
        ci = np.minimum(((np.arange(w) + 0.5) * (mw / w)).astype(np.int64), mw - 1)
        m = r.mask[ri[:, None], ci[None, :]]
        if r.mask.any() and not m.any():
            _mark_centre(m, r.bbox((W, H)), W, H)
        return m
    xs, ys = _centres(W, H, h, w)
    pts = np.asarray(r.points, dtype=np.float64).reshape(-1, 2)
    if r.kind == "polygon":
        inside = np.zeros((h, w), dtype=bool)
        for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
            if ay == by:
                continue
            crosses = (ay > ys) != (by > ys)
            x_at = ax + (ys - ay) * (bx - ax) / (by - ay)
            inside ^= crosses & (xs < x_at)
        m = inside
    else:
        radius = r.width / 2.0 if r.kind == "scribble" else r.width
        m = _seg_dist2(xs, ys, pts) <= float(radius) ** 2
        m |= _touched_cells(pts, W, H, h, w)
    if not m.any():
        _mark_centre(m, r.bbox((W, H)), W, H)
    return m


def _touched_cells(pts: np.ndarray, W: int, H: int, h: int, w: int) -> np.ndarray:
    """[h, w] bool: the cells a polyline (or a single point) passes through, sampled at under half a cell."""
    m = np.zeros((h, w), dtype=bool)
    step = 0.5 * min(W / w, H / h)
    samples = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        n = math.ceil(math.hypot(*(b - a)) / step) + 1
        samples.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    s = np.concatenate(samples)
    cols = np.clip(np.floor(s[:, 0] / W * w), 0, w - 1).astype(np.int64)
    rows = np.clip(np.floor(s[:, 1] / H * h), 0, h - 1).astype(np.int64)
    m[rows, cols] = True
    return m


def _mark_centre(m: np.ndarray, bbox: tuple[float, float, float, float], W: int, H: int) -> None:
    h, w = m.shape
    cx, cy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    m[min(max(int(cy / H * h), 0), h - 1), min(max(int(cx / W * w), 0), w - 1)] = True




def reference_rasterize(layout, h: int, w: int) -> np.ndarray:
    """[n_active, h, w] bool: Layout.rasterize as it was (per-instance full-grid union of _raster_region)."""
    act = layout.active()
    out = np.zeros((len(act), h, w), dtype=bool)
    for n, inst in enumerate(act):
        for r in inst.regions:
            out[n] |= _raster_region(r, layout.width, layout.height, h, w)
    return out


def reference_rasterize_polygon(points, mh: int, mw: int, width: float, height: float) -> np.ndarray:
    """core.instancediffusion.inputs.rasterize_polygon as it was: one full-grid pass per edge."""
    ys = (np.arange(mh) + 0.5) * (height / mh)
    xs = (np.arange(mw) + 0.5) * (width / mw)
    gx, gy = np.meshgrid(xs, ys)
    inside = np.zeros((mh, mw), dtype=bool)
    pts = [(float(x), float(y)) for x, y in points]
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        if y1 == y2:
            continue
        crosses = (gy >= min(y1, y2)) & (gy < max(y1, y2))
        xint = x1 + (gy - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (gx < xint)
    return inside
