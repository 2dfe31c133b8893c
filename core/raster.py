"""Rasterisation of layout regions onto a cell grid, in time and memory linear in what is drawn.

The rule (docs/layout-format.md, "Rasterisation to a grid"): an h x w grid over a W x H pixel canvas, cell
(i, j) centred at pixel ((j + 0.5) * W / w, (i + 0.5) * H / h).

- box: the IFAdapter cell rule (:func:`box_cells`);
- mask: nearest resize (cell-centre sampling);
- polygon: cells whose centre is inside (even-odd rule, half-open in y); a polygon imported from COCO
  (``"fill": "coco"``) by pycocotools' rule instead (:mod:`core.coco_polygon`);
- scribble / point: cells whose centre is within width / 2 (scribble) or width (point) pixels of the polyline,
  plus every cell the polyline passes through (sampled at under half a cell) or the point lies in;
- a non-empty region (other than a box) that would cover no cell covers the cell holding its bbox centre.

Each region is drawn as a crop ``(row0, col0, cells)`` over its own bounding box only: polygons by one scanline
pass (each edge visits only the rows it crosses), strokes and discs row by row (each segment visits only the rows
its capsule reaches; cells well inside the capsule are filled as runs, only the few cells within a hair of its
border are tested with the distance formula). The result is bit for bit the per-cell rule above, with the same
floating-point expressions, so grids agree with the editor's cell overlay (web/js/cells.js).

Pure numpy; works on any object with the :class:`core.layout.Region` fields (kind, box, points, mask, width, bbox).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

# Cell-rule edges within this fraction of a cell of an integer are treated as on it (absorbs float noise such as
# 0.7 * 10 = 7.000000000000001, which would otherwise add a whole extra column).
CELL_EPS = 1e-6
# Work arrays are built in chunks of about this many elements: memory stays bounded for any region, and the
# temporaries stay in cache (four times faster than chunks of 1M on a loaded machine).
_CHUNK = 1 << 16

Crop = tuple[int, int, np.ndarray]  # (row0, col0, bool cells [rows, cols]) placed at (row0, col0) of the grid

# Polygons and strokes drawn lately, keyed by their whole geometry and the grid: a graph draws the same layout
# several times (Instance Layout's preview, Layout Preview, Layout to Masks), the second time costs a lookup.
_CACHE: OrderedDict = OrderedDict()
_CACHE_BYTES = 64 << 20
_cache_used = 0
_cache_lock = threading.Lock()


def grid(h: Any, w: Any) -> tuple[int, int]:
    """(h, w) as ints; raises ValueError unless both are positive integers."""
    if not (isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) and h >= 1 and w >= 1):
        raise ValueError(f"grid size must be two positive integers (h, w), got ({h!r}, {w!r})")
    return int(h), int(w)


def cell_range(a: Any, b: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """IFAdapter cell rule on normalised edges a < b: cells [floor(a*n), ceil(b*n)) clamped to 0..n, >= 1 cell."""
    a = np.asarray(a, dtype=np.float64) * n
    b = np.asarray(b, dtype=np.float64) * n
    lo = np.clip(np.floor(a + CELL_EPS), 0, n).astype(np.int64)
    hi = np.clip(np.ceil(b - CELL_EPS), 0, n).astype(np.int64)
    nonempty = b > a
    hi = np.where(nonempty & (hi <= lo), np.minimum(lo + 1, n), hi)
    lo = np.where(nonempty & (hi <= lo), np.maximum(hi - 1, 0), lo)
    return lo, hi


def box_cells(box_norm: Any, h: int, w: int) -> tuple[int, int, int, int]:
    """Cell range (y0, y1, x0, x1), end-exclusive, of a normalised xyxy box on an h x w grid.

    The IFAdapter rule: columns [floor(x0*w), ceil(x1*w)), rows [floor(y0*h), ceil(y1*h)), clamped to the grid.
    Example: box (0.1, 0.2, 0.55, 0.9) on 10 x 10 -> (2, 9, 1, 6), i.e. rows 2..8 and columns 1..5.
    """
    x0, y0, x1, y1 = (float(v) for v in (box_norm.tolist() if hasattr(box_norm, "tolist") else box_norm))
    cy0, cy1 = cell_range(y0, y1, h)
    cx0, cx1 = cell_range(x0, x1, w)
    return int(cy0), int(cy1), int(cx0), int(cx1)


def rasterize_boxes(boxes_norm: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[n, 4] normalised xyxy boxes -> [n, h, w] float32 {0,1} masks by the cell rule, on the boxes' device."""
    h, w = grid(h, w)
    b = torch.as_tensor(boxes_norm).reshape(-1, 4)
    bn = b.detach().to("cpu", torch.float64).numpy()
    y0, y1 = cell_range(bn[:, 1], bn[:, 3], h)
    x0, x1 = cell_range(bn[:, 0], bn[:, 2], w)
    dev = b.device

    def col(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(dev)[:, None]

    rows = torch.arange(h, device=dev)[None]
    cols = torch.arange(w, device=dev)[None]
    my = (rows >= col(y0)) & (rows < col(y1))
    mx = (cols >= col(x0)) & (cols < col(x1))
    return (my[:, :, None] & mx[:, None, :]).float()


def centres(W: float, H: float, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of the cell centres along each axis: xs [w], ys [h] (float64, increasing)."""
    xs = (np.arange(w, dtype=np.float64) + 0.5) * (W / w)
    ys = (np.arange(h, dtype=np.float64) + 0.5) * (H / h)
    return xs, ys


# --------------------------------------------------------------------------------------------------------------
# crops


def _empty(r0: int = 0, c0: int = 0) -> Crop:
    return (r0, c0, np.zeros((0, 0), dtype=bool))


def union(crops: list[Crop]) -> Crop:
    """The union of crops, as one crop over their common bounding box."""
    crops = [c for c in crops if c[2].size]
    if not crops:
        return _empty()
    if len(crops) == 1:
        return crops[0]
    r0 = min(c[0] for c in crops)
    c0 = min(c[1] for c in crops)
    r1 = max(c[0] + c[2].shape[0] for c in crops)
    c1 = max(c[1] + c[2].shape[1] for c in crops)
    out = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for rr, cc, m in crops:
        out[rr - r0 : rr - r0 + m.shape[0], cc - c0 : cc - c0 + m.shape[1]] |= m
    return (r0, c0, out)


def paste(dst: np.ndarray, crop: Crop, value: Any = True) -> None:
    """Set ``dst`` [h, w] to ``value`` where the crop is set."""
    r0, c0, m = crop
    if m.size:
        dst[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]][m] = value


def _centre_cell(bbox: tuple[float, float, float, float], W: float, H: float, h: int, w: int) -> Crop:
    """The cell holding the centre of a pixel bbox, as a one-cell crop."""
    cx, cy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    r = min(max(int(cy / H * h), 0), h - 1)
    c = min(max(int(cx / W * w), 0), w - 1)
    return (r, c, np.ones((1, 1), dtype=bool))


def region_cells(r: Any, W: float, H: float, h: int, w: int) -> Crop:
    """The cells one region of a W x H canvas covers on an h x w grid, as a crop over its bounding box."""
    if r.kind == "box":
        x0, y0, x1, y1 = (float(v) for v in r.box)
        cy0, cy1, cx0, cx1 = box_cells((x0 / W, y0 / H, x1 / W, y1 / H), h, w)
        if cy1 <= cy0 or cx1 <= cx0:
            return _empty()
        return (cy0, cx0, np.ones((cy1 - cy0, cx1 - cx0), dtype=bool))
    if r.kind == "mask":
        crop = _mask_cells(r.mask, h, w)
        if r.mask.any() and not crop[2].any():
            return _centre_cell(r.bbox((W, H)), W, H, h, w)
        return crop
    fill = polygon_fill(r) if r.kind == "polygon" else ""
    key = (r.kind, fill, float(W), float(H), h, w, float(r.width) if r.kind != "polygon" else 0.0,
           tuple((float(x), float(y)) for x, y in r.points))
    crop = _cache_get(key)
    if crop is not None:
        return crop
    if r.kind == "polygon":
        crop = fill_polygon(r.points, fill, W, H, h, w)
    else:
        pts = np.asarray(r.points, dtype=np.float64).reshape(-1, 2)
        radius = float(r.width / 2.0 if r.kind == "scribble" else r.width)
        crop = union([_stroke_cells(pts, radius, W, H, h, w), _touched_cells(pts, W, H, h, w)])
    if not crop[2].any():
        crop = _centre_cell(r.bbox((W, H)), W, H, h, w)
    crop[2].flags.writeable = False  # shared through the cache: callers copy before changing
    _cache_put(key, crop)
    return crop


def _cache_get(key: tuple) -> Crop | None:
    with _cache_lock:
        crop = _CACHE.get(key)
        if crop is not None:
            _CACHE.move_to_end(key)
        return crop


def _cache_put(key: tuple, crop: Crop) -> None:
    global _cache_used
    size = crop[2].nbytes + 32 * len(key[-1])
    if size > _CACHE_BYTES // 4:
        return
    with _cache_lock:
        if key in _CACHE:
            return
        _CACHE[key] = crop
        _cache_used += size
        while _cache_used > _CACHE_BYTES:
            k, c = _CACHE.popitem(last=False)
            _cache_used -= c[2].nbytes + 32 * len(k[-1])


def instance_cells(inst: Any, W: float, H: float, h: int, w: int) -> Crop:
    """The union of an instance's regions on an h x w grid, as a crop."""
    return union([region_cells(r, W, H, h, w) for r in inst.regions])


# --------------------------------------------------------------------------------------------------------------
# masks


def _mask_cells(mask: np.ndarray, h: int, w: int) -> Crop:
    """Nearest resize of a [mh, mw] bool mask to h x w (cell-centre sampling), over the mask's foreground bbox."""
    mh, mw = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return _empty()
    cols = np.flatnonzero(mask.any(axis=0))
    ri = np.minimum(((np.arange(h) + 0.5) * (mh / h)).astype(np.int64), mh - 1)
    ci = np.minimum(((np.arange(w) + 0.5) * (mw / w)).astype(np.int64), mw - 1)
    # ri, ci are non-decreasing: the cells that sample a foreground row / column form one range
    i0, i1 = int(np.searchsorted(ri, rows[0], "left")), int(np.searchsorted(ri, rows[-1], "right"))
    j0, j1 = int(np.searchsorted(ci, cols[0], "left")), int(np.searchsorted(ci, cols[-1], "right"))
    if i1 <= i0 or j1 <= j0:
        return _empty()
    return (i0, j0, mask[ri[i0:i1][:, None], ci[j0:j1][None, :]])


# --------------------------------------------------------------------------------------------------------------
# polygons: one scanline pass


def _spans(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [starts[k], ends[k]) (ends >= starts): (owner k, value) of every element, in order."""
    n = ends - starts
    owner = np.repeat(np.arange(n.size), n)
    first = np.cumsum(n) - n
    value = np.arange(owner.size) - np.repeat(first, n) + np.repeat(starts, n)
    return owner, value


def _add_at(dst: np.ndarray, rows: np.ndarray, cols: np.ndarray, sign: int = 1) -> None:
    """dst[rows[k], cols[k]] += sign for every k, repeats included (np.add.at without its slowness); integer dst
    wraps around on overflow. Memory: a count per cell when the pairs are dense, else a sort of the pairs."""
    flat = rows * dst.shape[1] + cols
    out = dst.reshape(-1)
    if flat.size * 4 >= out.size:
        counts = np.bincount(flat, minlength=out.size)
        out += (counts if sign > 0 else -counts).astype(dst.dtype)
    else:
        idx, counts = np.unique(flat, return_counts=True)
        out[idx] += (counts if sign > 0 else -counts).astype(dst.dtype)


def _chunks(sizes: np.ndarray, limit: int = _CHUNK):
    """Consecutive index ranges [a, b) of ``sizes`` whose sum stays about under ``limit`` (at least one each)."""
    total = np.cumsum(sizes)
    a, done = 0, 0
    while a < sizes.size:
        b = int(np.searchsorted(total, done + limit, "right"))
        b = max(b, a + 1)
        yield a, b
        done = int(total[b - 1])
        a = b


POLYGON_FILLS = ("even-odd", "coco")  # a polygon region's "fill" (docs/layout-format.md); absent = "even-odd"


def polygon_fill(r: Any) -> str:
    """The fill rule of a polygon region: "coco" for polygons imported from COCO / InstanceDiffusion JSON (the
    region's ``"fill": "coco"``), else "even-odd" (the editor's cell-centre rule)."""
    return "coco" if getattr(r, "extra", {}).get("fill") == "coco" else "even-odd"


def fill_polygon(points: Any, fill: str, W: float, H: float, h: int, w: int) -> Crop:
    """A polygon of a W x H canvas on an h x w grid by its fill rule, as a crop (no minimum-cell rule).

    "even-odd": cells whose centre is inside (:func:`polygon_cells`). "coco": pycocotools' ``annToMask`` rule
    (:mod:`core.coco_polygon`) on the grid, the points scaled by (w / W, h / H); at the canvas size exactly the
    official mask.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if fill != "coco":
        return _polygon_cells(pts, W, H, h, w)
    from .coco_polygon import polygon_crop  # it builds on this module's crop helpers

    if (w, h) != (W, H):
        pts = pts * np.array([w / W, h / H])
    return polygon_crop(pts, h, w)


def polygon_cells(pts: np.ndarray, W: float, H: float, h: int, w: int) -> Crop:
    """Cells whose centre is inside the polygon pts [k, 2] (even-odd; no minimum-cell rule), as a crop."""
    return _polygon_cells(np.asarray(pts, dtype=np.float64).reshape(-1, 2), W, H, h, w)


def _polygon_cells(pts: np.ndarray, W: float, H: float, h: int, w: int) -> Crop:
    """Even-odd fill: cells whose centre is inside the polygon, by crossings of each edge with the cell rows.

    An edge (a, b) crosses the row at y when exactly one of ay > y, by > y holds, at
    x_at = ax + (y - ay) * (bx - ax) / (by - ay); a cell is inside when an odd number of crossings of its row lie
    strictly right of its centre. Work: one step per (edge, crossed row) plus the crop.
    """
    xs, ys = centres(W, H, h, w)
    a = pts
    b = np.roll(pts, -1, axis=0)
    na = np.searchsorted(ys, a[:, 1], "left")  # rows whose centre is below ay: ay > y for i < na
    nb = np.searchsorted(ys, b[:, 1], "left")
    lo, hi = np.minimum(na, nb), np.maximum(na, nb)
    keep = hi > lo
    if not keep.any():
        return _empty()
    a, b, lo, hi = a[keep], b[keep], lo[keep], hi[keep]
    r0, r1 = int(lo.min()), int(hi.max())
    # crossings lie within the polygon's x range (up to rounding), so one cell of margin holds every count change
    c0 = max(int(np.searchsorted(xs, pts[:, 0].min(), "left")) - 1, 0)
    c1 = min(int(np.searchsorted(xs, pts[:, 0].max(), "left")) + 1, w)
    ncols = c1 - c0
    counts = np.zeros((r1 - r0, ncols + 1), dtype=np.uint8)  # crossings per (row, first column not left of it)
    for s, e in _chunks(hi - lo):
        k, rows = _spans(lo[s:e], hi[s:e])
        ax, ay, bx, by = a[s:e][k, 0], a[s:e][k, 1], b[s:e][k, 0], b[s:e][k, 1]
        x_at = ax + (ys[rows] - ay) * (bx - ax) / (by - ay)
        c = np.clip(np.searchsorted(xs, x_at, "left"), c0, c1) - c0  # columns j < c have xs < x_at
        _add_at(counts, rows - r0, c)  # uint8 wraps mod 256: the parity is kept
    # inside[:, j] = parity of the crossings with c > j
    parity = np.cumsum(counts[:, ::-1], axis=1, dtype=np.uint8)[:, ::-1] & 1
    return (r0, c0, parity[:, 1:].astype(bool))


# --------------------------------------------------------------------------------------------------------------
# strokes and discs: row by row over each segment's capsule


def _capsule_rows(y: np.ndarray, ax, ay, bx, by, radii: tuple[float, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each radius rho: the x interval [left, right] of the capsule (segment a-b grown by rho) on each row y;
    an empty interval has left > right.

    y, ax, ay, bx, by are arrays of the same length, one entry per (segment, row) pair.
    """
    dx, dy = bx - ax, by - ay
    ll = dx * dx + dy * dy
    L = np.sqrt(ll)
    u, v = y - ay, y - by
    uu, vv, udx, udy = u * u, v * v, u * dx, u * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        # projection onto the segment within [0, |d|^2]: (x - ax) dx + u dy in [0, ll]
        p0, p1 = -udy / dx, (ll - udy) / dx
        lo1 = np.where(dx != 0, ax + np.minimum(p0, p1), -np.inf)
        hi1 = np.where(dx != 0, ax + np.maximum(p0, p1), np.inf)
        ok1 = (ll > 0) & ((dx != 0) | ((udy >= 0) & (udy <= ll)))
    out = []
    for rho in radii:
        if rho <= 0:
            out.append((np.full(y.shape, np.inf), np.full(y.shape, -np.inf)))
            continue
        r2 = rho * rho
        oka, okb = uu <= r2, vv <= r2
        sa = np.sqrt(np.where(oka, r2 - uu, 0.0))
        sb = np.sqrt(np.where(okb, r2 - vv, 0.0))
        left = np.minimum(np.where(oka, ax - sa, np.inf), np.where(okb, bx - sb, np.inf))
        right = np.maximum(np.where(oka, ax + sa, -np.inf), np.where(okb, bx + sb, -np.inf))
        with np.errstate(divide="ignore", invalid="ignore"):
            # distance to the segment's line within rho: |(x - ax) dy - u dx| <= rho L
            rl = rho * L
            q0, q1 = (udx - rl) / dy, (udx + rl) / dy
            lo = np.maximum(lo1, np.where(dy != 0, ax + np.minimum(q0, q1), -np.inf))
            hi = np.minimum(hi1, np.where(dy != 0, ax + np.maximum(q0, q1), np.inf))
            ok = ok1 & ((dy != 0) | (np.abs(udx) <= rl)) & (lo <= hi)
        out.append((np.where(ok, np.minimum(left, lo), left), np.where(ok, np.maximum(right, hi), right)))
    return out


def _stroke_cells(pts: np.ndarray, radius: float, W: float, H: float, h: int, w: int) -> Crop:
    """Cells whose centre is within ``radius`` pixels of the polyline through pts [k, 2] (one point: a disc).

    The tested quantity is the one of the per-cell rule: t = clip(((x - ax) dx + (y - ay) dy) / |d|^2, 0, 1),
    (ax + t dx - x)^2 + (ay + t dy - y)^2 <= radius^2. Per segment and row, cells whose centre is within
    radius - g of the segment are set as a run without testing and cells beyond radius + g are skipped; the few
    in between are tested with that exact expression (g is a tiny margin far above float rounding).
    """
    xs, ys = centres(W, H, h, w)
    if len(pts) == 1:
        pts = np.concatenate([pts, pts])
    a, b = pts[:-1], pts[1:]
    lim = float(radius) ** 2
    g = 1e-8 * (abs(W) + abs(H) + 2.0 * abs(radius)) + 1e-12
    r_out, r_in = radius + g, radius - g
    ylo = np.minimum(a[:, 1], b[:, 1]) - r_out
    yhi = np.maximum(a[:, 1], b[:, 1]) + r_out
    lo = np.searchsorted(ys, ylo, "left")
    hi = np.searchsorted(ys, yhi, "right")
    if not (hi > lo).any():
        return _empty()
    r0, r1 = int(lo.min()), int(hi.max())
    c0 = int(np.searchsorted(xs, pts[:, 0].min() - r_out, "left"))
    c1 = int(np.searchsorted(xs, pts[:, 0].max() + r_out, "right"))
    if c1 <= c0:
        return _empty()
    ncols = c1 - c0
    runs = np.zeros((r1 - r0, ncols + 1), dtype=np.int32)  # +1 at a run's first column, -1 after its last
    hit = np.zeros((r1 - r0, ncols), dtype=bool)
    for s, e in _chunks(hi - lo):
        k, rows = _spans(lo[s:e], hi[s:e])
        ax, ay, bx, by = a[s:e][k, 0], a[s:e][k, 1], b[s:e][k, 0], b[s:e][k, 1]
        y = ys[rows]
        (out_l, out_r), (in_l, in_r) = _capsule_rows(y, ax, ay, bx, by, (r_out, r_in))
        cand0 = np.clip(np.searchsorted(xs, out_l, "left"), c0, c1)
        cand1 = np.clip(np.searchsorted(xs, out_r, "right"), c0, c1)
        sure0 = np.clip(np.searchsorted(xs, in_l, "left"), cand0, cand1)
        sure1 = np.clip(np.searchsorted(xs, in_r, "right"), sure0, cand1)
        full = sure1 > sure0
        rr = rows[full] - r0
        _add_at(runs, rr, sure0[full] - c0)
        _add_at(runs, rr, sure1[full] - c0, -1)
        # the cells left to test: [cand0, sure0) and [sure1, cand1) (all of [cand0, cand1) when no sure run)
        sure1 = np.where(full, sure1, cand0)
        sure0 = np.where(full, sure0, cand0)
        for t0, t1 in ((cand0, sure0), (sure1, cand1)):
            j, col = _spans(t0, t1)
            if j.size == 0:
                continue
            jx, jy = xs[col], y[j]
            pax, pay, pbx, pby = ax[j], ay[j], bx[j], by[j]
            dx, dy = pbx - pax, pby - pay
            ll = dx * dx + dy * dy
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(ll > 0, np.clip(((jx - pax) * dx + (jy - pay) * dy) / ll, 0.0, 1.0), 0.0)
            px, py = pax + t * dx - jx, pay + t * dy - jy
            near = px * px + py * py <= lim
            hit[rows[j][near] - r0, col[near] - c0] = True
    hit |= np.cumsum(runs, axis=1, dtype=np.int32)[:, :ncols] > 0
    return (r0, c0, hit)


def _touched_cells(pts: np.ndarray, W: float, H: float, h: int, w: int) -> Crop:
    """The cells a polyline (or a single point) passes through, sampled along each segment at under half a cell.

    Segment a-b gets n = ceil(|b - a| / step) + 1 samples a + linspace(0, 1, n) * (b - a), step half the smaller
    cell side; a sample's cell is (floor(y / H * h), floor(x / W * w)) clamped to the grid.
    """
    step = 0.5 * min(W / w, H / h)
    # the samples lie in the points' bbox (up to rounding): one cell of margin holds every sampled cell
    rlo = min(max(math.floor(pts[:, 1].min() / H * h) - 1, 0), h - 1)
    rhi = min(max(math.floor(pts[:, 1].max() / H * h) + 1, 0), h - 1)
    clo = min(max(math.floor(pts[:, 0].min() / W * w) - 1, 0), w - 1)
    chi = min(max(math.floor(pts[:, 0].max() / W * w) + 1, 0), w - 1)
    hit = np.zeros((rhi - rlo + 1, chi - clo + 1), dtype=bool)

    def mark(sx: np.ndarray, sy: np.ndarray) -> None:
        cols = np.clip(np.floor(sx / W * w), 0, w - 1).astype(np.int64)
        rows = np.clip(np.floor(sy / H * h), 0, h - 1).astype(np.int64)
        hit[np.clip(rows, rlo, rhi) - rlo, np.clip(cols, clo, chi) - clo] = True

    mark(pts[:1, 0], pts[:1, 1])
    if len(pts) > 1:
        a, b = pts[:-1], pts[1:]
        d = b - a
        n = np.array([math.ceil(math.hypot(float(dx), float(dy)) / step) + 1 for dx, dy in d], dtype=np.int64)
        for s, e in _chunks(n):
            k, idx = _spans(np.zeros(e - s, dtype=np.int64), n[s:e])
            nk = n[s:e][k]
            # np.linspace(0, 1, n): k * (1 / (n - 1)), the last one exactly 1 (n = 1: [0])
            with np.errstate(divide="ignore", invalid="ignore"):
                lin = np.where(nk > 1, idx * (1.0 / (nk - 1)), 0.0)
            lin = np.where((idx == nk - 1) & (nk > 1), 1.0, lin)
            aa, dd = a[s:e][k], d[s:e][k]
            mark(aa[:, 0] + lin * dd[:, 0], aa[:, 1] + lin * dd[:, 1])
    return (rlo, clo, hit)
