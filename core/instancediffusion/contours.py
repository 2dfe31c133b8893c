"""Mask boundary tracing for the polygon input (stand-in for ``skimage.measure.find_contours(pad(mask, 1), 0.0)``).

Marching squares at level 0 on a {0, 1} mask: every contour vertex lies exactly on a background pixel that is
4-adjacent to a foreground pixel (the linear interpolation weight from the 0-valued corner is 0). Saddle cells are
resolved with the background connected (skimage's default ``fully_connected="low"``). Contours are closed (the first
vertex is repeated at the end) and returned as (row, col) arrays, like skimage.

Known difference: the vertex *set* of each contour matches skimage, but the start vertex and the order in which
separate contours are listed may differ, which can shift which 128 boundary points ``linspace`` picks.
"""

from __future__ import annotations

import numpy as np

# Cell corners clockwise (row-down image): ul, ur, lr, ll; edge k joins corner k and corner (k+1) % 4.
_CORNERS = ((0, 0), (0, 1), (1, 1), (1, 0))


def _edge_id(r: int, c: int, k: int) -> tuple[int, int, str]:
    """Global id of edge k of cell (r, c): horizontal edges ('h', row, col) and vertical edges ('v', row, col)."""
    if k == 0:
        return (r, c, "h")
    if k == 2:
        return (r + 1, c, "h")
    if k == 1:
        return (r, c + 1, "v")
    return (r, c, "v")


def find_contours_binary(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a binary mask at level 0, as a list of [n, 2] float (row, col) arrays."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"find_contours_binary: expected a 2-D mask, got shape {m.shape}")
    if m.shape[0] < 2 or m.shape[1] < 2:
        return []
    # cells that have both values among their corners
    ul, ur, ll, lr = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]
    s = ul.astype(np.int8) + ur + ll + lr
    cells = np.argwhere((s > 0) & (s < 4))
    nxt: dict[tuple, tuple] = {}  # start edge -> end edge
    point: dict[tuple, tuple[float, float]] = {}  # edge -> its background corner
    order: list[tuple] = []
    for r, c in cells.tolist():
        v = [bool(m[r + dr, c + dc]) for dr, dc in _CORNERS]
        # entries: edges crossed 0 -> 1 going clockwise; each pairs with the next 1 -> 0 edge clockwise
        for k in range(4):
            if not v[k] and v[(k + 1) % 4]:
                j = (k + 1) % 4
                while v[(j + 1) % 4]:
                    j = (j + 1) % 4
                start, end = _edge_id(r, c, k), _edge_id(r, c, j)
                nxt[start] = end
                order.append(start)
                for kk, e in ((k, start), (j, end)):
                    a, b = _CORNERS[kk], _CORNERS[(kk + 1) % 4]
                    bg = a if not v[kk] else b
                    point[e] = (float(r + bg[0]), float(c + bg[1]))
    contours = []
    seen: set = set()
    for start in order:
        if start in seen:
            continue
        chain = []
        e = start
        while e not in seen:
            seen.add(e)
            chain.append(point[e])
            e = nxt[e]
        chain.append(chain[0])
        contours.append(np.asarray(chain, dtype=np.float64))
    return contours
