"""COCO polygon rasterisation, bit for bit as pycocotools' ``annToMask`` (``frPyObjects`` + ``merge`` + ``decode``).

The rule (pycocotools ``rleFrPoly``; re-implemented here from its description, tested against pycocotools):

1. every vertex is upsampled by 5 and cast to an integer: ``X = int(5 * x + 0.5)`` (C cast: truncation toward 0);
2. each edge of the closed polygon is walked on that 5x grid along its major axis, one point per unit step:
   the minor coordinate is ``int(start + slope * t + 0.5)`` (the edge taken from its lower end on the major axis);
3. wherever two consecutive walk points differ in x, the step's smaller x, ``u``, names a pixel column when
   ``(u + 0.5) / 5 - 0.5`` is an integer ``c`` in ``0 .. w-1``; the step's smaller y gives the boundary row
   ``ceil(clip((y + 0.5) / 5 - 0.5, 0, h))``;
4. each (column, row) toggles the column-major pixel order from there on; a polygon's pixels are the odd ones;
5. the polygons of one instance are merged by union.

A pixel (row r, column c) is therefore inside when an odd number of its column's boundary rows are <= r. Work: one
step per 5x-grid unit along edges that run more vertically than horizontally, one per crossed column otherwise, then
the polygon's bounding box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .raster import Crop, _add_at, _chunks, _empty, _spans, union

SCALE = 5  # pycocotools' upsampling factor


def _c_int(a: np.ndarray) -> np.ndarray:
    """C's double -> int cast (truncation toward zero)."""
    return np.trunc(a).astype(np.int64)


def _toggles(xy: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Boundary (column, row) toggles of one polygon xy [k, 2] on an h x w image (rows in 0..h)."""
    X = _c_int(SCALE * xy[:, 0] + 0.5)
    Y = _c_int(SCALE * xy[:, 1] + 0.5)
    X1, Y1 = np.roll(X, -1), np.roll(Y, -1)
    dx, dy = np.abs(X1 - X), np.abs(Y1 - Y)
    xmaj = dx >= dy
    flip = (xmaj & (X > X1)) | (~xmaj & (Y > Y1))
    xs, xe = np.where(flip, X1, X), np.where(flip, X, X1)
    ys, ye = np.where(flip, Y1, Y), np.where(flip, Y, Y1)
    cols, rows = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]

    def emit(u0: np.ndarray, u1: np.ndarray, v0: np.ndarray, v1: np.ndarray) -> None:
        step = u0 != u1
        u = np.minimum(u0, u1)[step]  # |u1 - u0| = 1 on every step
        xd = (u.astype(np.float64) + 0.5) / SCALE - 0.5
        ok = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
        yd = (np.minimum(v0, v1)[step][ok].astype(np.float64) + 0.5) / SCALE - 0.5
        cols.append(xd[ok].astype(np.int64))
        rows.append(np.ceil(np.clip(yd, 0, h)).astype(np.int64))

    # edges walked along x: only the steps whose smaller x is 2 mod 5 can name a column, so visit just those
    e = np.flatnonzero(xmaj & (dx > 0))
    if e.size:
        xs_e, ys_e, dx_e = xs[e], ys[e], dx[e]
        s_e = (ye[e] - ys_e) / dx_e
        lo = np.maximum(0, 2 - xs_e)  # u = xs + t >= 2
        hi = np.minimum(dx_e - 1, SCALE * w - 3 - xs_e)  # u <= 5 (w - 1) + 2
        lo = lo + (2 - xs_e - lo) % SCALE  # first t with xs + t = 2 mod 5
        n = np.where(hi >= lo, (hi - lo) // SCALE + 1, 0)
        for a, b in _chunks(n):
            k, i = _spans(np.zeros(b - a, dtype=np.int64), n[a:b])
            t = lo[a:b][k] + SCALE * i
            x0, y0, s = xs_e[a:b][k], ys_e[a:b][k].astype(np.float64), s_e[a:b][k]
            emit(x0 + t, x0 + t + 1, _c_int(y0 + s * t + 0.5), _c_int(y0 + s * (t + 1) + 0.5))
    # edges walked along y: x changes by at most 1 per step and monotonically, so each column boundary
    # u -> u + 1 (u = 2 mod 5) is crossed once; find that step from the slope and confirm it on the exact walk
    e = np.flatnonzero(~xmaj & (dx > 0))
    if e.size:
        xs_e, ys_e, dy_e = xs[e].astype(np.float64), ys[e], dy[e]
        s_e = (xe[e] - xs[e]) / dy_e
        u_first = _c_int(xs_e + 0.5)
        u_last = _c_int(xs_e + s_e * dy_e + 0.5)
        lo = np.maximum(np.minimum(u_first, u_last), 2)  # boundaries U -> U + 1 with U in [lo, hi]
        hi = np.minimum(np.maximum(u_first, u_last) - 1, SCALE * w - 3)
        lo = lo + (2 - lo) % SCALE
        n = np.where(hi >= lo, (hi - lo) // SCALE + 1, 0)
        for a, b in _chunks(n):
            k, i = _spans(np.zeros(b - a, dtype=np.int64), n[a:b])
            U = lo[a:b][k] + SCALE * i
            x0, y0, s, d = xs_e[a:b][k], ys_e[a:b][k], s_e[a:b][k], dy_e[a:b][k]
            est = np.ceil((U + 0.5 - x0) / s).astype(np.int64)  # about the first t past the boundary
            todo = np.arange(U.size)
            for off in (0, -1, 1, -2, 2):  # the estimate is almost always exact: retry only the rest
                tt = np.clip(est[todo] + off, 1, d[todo])  # the step (t - 1, t)
                xx, ss = x0[todo], s[todo]
                u0, u1 = _c_int(xx + ss * (tt - 1) + 0.5), _c_int(xx + ss * tt + 0.5)
                hit = (u0 != u1) & (np.minimum(u0, u1) == U[todo])
                yy = y0[todo][hit] + tt[hit]
                emit(u0[hit], u1[hit], yy - 1, yy)
                todo = todo[~hit]
                if todo.size == 0:
                    break
    return np.concatenate(cols), np.concatenate(rows)


def polygon_crop(xy: Any, h: int, w: int) -> Crop:
    """One COCO polygon (a flat [x1, y1, x2, y2, ...] list or [k, 2] pixel coordinates) on an h x w image, as a
    crop ``(row0, col0, cells)`` over its bounding box (pycocotools' ``frPyObjects`` + ``decode`` of it)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return _empty()
    cols, rows = _toggles(xy, h, w)
    if cols.size == 0:
        return _empty()
    r0, r1 = int(rows.min()), min(int(rows.max()), h)
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    if r1 <= r0:
        return _empty()
    counts = np.zeros((r1 - r0 + 1, c1 - c0), dtype=np.uint8)  # toggles per (row, column); row h is off the image
    _add_at(counts, rows - r0, cols - c0)  # uint8 wraps mod 256: the parity is kept
    inside = np.cumsum(counts, axis=0, dtype=np.uint8)[:-1] & 1
    return (r0, c0, inside.astype(bool))


def polygons_crop(polygons: Any, h: int, w: int) -> Crop:
    """The union of several COCO polygons of one instance (pycocotools' ``merge``), as a crop."""
    return union([polygon_crop(p, h, w) for p in polygons])


def polygons_mask(polygons: Any, h: int, w: int) -> np.ndarray:
    """``annToMask`` of a COCO polygon list on an h x w image: bool [h, w]."""
    out = np.zeros((h, w), dtype=bool)
    r0, c0, m = polygons_crop(polygons, h, w)
    if m.size:
        out[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]] |= m
    return out
