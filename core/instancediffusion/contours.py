"""Iso-contours of a 2-D array by marching squares, identical to ``skimage.measure.find_contours`` (no skimage).

The official InstanceDiffusion polygon input is built from ``find_contours(pad(mask, 1), 0.0)``; which 128 boundary
points ``linspace`` picks depends on every vertex, on the order of the vertices and of the contours, and on where
each closed contour starts. This module reproduces all of it:

1. **Segments.** Cells (r, c) are visited row by row. A corner is "above" when its value is ``> level``; the cell
   case is ul·1 + ur·2 + ll·4 + lr·8. Each crossed cell edge gets a point linearly interpolated from its first
   corner (top/bottom edges from the left corner, left/right edges from the upper corner), and the case emits one
   directed segment (two for the saddles 6 and 9, whose pairing follows ``fully_connected``) as skimage's fixed
   case table says (:data:`_CASES`). Cells with a NaN corner emit nothing.
2. **Assembly.** Segments are chained in emission order: a segment whose end starts a chain is prepended to it, one
   whose start ends a chain is appended, one that does both joins the two chains (the older chain absorbs the
   younger) or closes a loop. Zero-length segments (a corner exactly at the level) are skipped. Chains are returned
   in the order they were created, each as a [n, 2] float64 array of (row, col), closed ones ending on their first
   point.

For a {0, 1} mask at level 0 every vertex lies on a background pixel next to the foreground (the interpolation
weight from a 0 corner is 0), which is why official polygons have integer, padded-frame coordinates.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# Edge codes: 0 top (r0, c0 + f(ul, ur)), 1 bottom (r1, c0 + f(ll, lr)), 2 left (r0 + f(ul, ll), c0),
# 3 right (r0 + f(ur, lr), c1). Per case: the directed segments (from_edge, to_edge) in emission order.
_T, _B, _L, _R = 0, 1, 2, 3
_CASES: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((_T, _L),),
    2: ((_R, _T),),
    3: ((_R, _L),),
    4: ((_L, _B),),
    5: ((_T, _B),),
    7: ((_R, _B),),
    8: ((_B, _R),),
    10: ((_B, _T),),
    11: ((_B, _L),),
    12: ((_L, _R),),
    13: ((_T, _R),),
    14: ((_L, _T),),
}
# Saddles: background connected ("low", the default) or foreground connected ("high").
_SADDLES = {
    ("low", 6): ((_R, _T), (_L, _B)),
    ("high", 6): ((_L, _T), (_R, _B)),
    ("low", 9): ((_T, _L), (_B, _R)),
    ("high", 9): ((_T, _R), (_B, _L)),
}


def _fraction(a: np.ndarray, b: np.ndarray, level: float) -> np.ndarray:
    """Where ``level`` lies between corner values a (at 0) and b (at 1); 0 where a == b."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (level - a) / (b - a)
    return np.where(a == b, 0.0, f)


def _segment_arrays(image: np.ndarray, level: float, fully_connected: str) -> tuple[np.ndarray, np.ndarray]:
    """Directed marching-squares segments as two [m, 2] float64 arrays (starts, ends) of (row, col), in skimage's
    emission order (row-major cells; a saddle's two segments in table order). Built without a per-cell loop."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"find_contours: expected a 2-D array, got shape {img.shape}")
    if fully_connected not in ("low", "high"):
        raise ValueError(f"fully_connected must be 'low' or 'high', got {fully_connected!r}")
    empty = np.zeros((0, 2), dtype=np.float64)
    if img.shape[0] < 2 or img.shape[1] < 2:
        return empty, empty
    level = float(level)
    ul, ur, ll, lr = img[:-1, :-1], img[:-1, 1:], img[1:, :-1], img[1:, 1:]
    case = (ul > level) * 1 + (ur > level) * 2 + (ll > level) * 4 + (lr > level) * 8
    valid = (case > 0) & (case < 15) & ~np.isnan(ul + ur + ll + lr)
    rs, cs = np.nonzero(valid)  # row-major: the order skimage visits cells
    if rs.size == 0:
        return empty, empty
    ul, ur, ll, lr = ul[rs, cs], ur[rs, cs], ll[rs, cs], lr[rs, cs]
    r0, c0 = rs.astype(np.float64), cs.astype(np.float64)
    r1, c1 = r0 + 1.0, c0 + 1.0
    edges = np.stack([
        np.stack([r0, c0 + _fraction(ul, ur, level)], 1),  # top
        np.stack([r1, c0 + _fraction(ll, lr, level)], 1),  # bottom
        np.stack([r0 + _fraction(ul, ll, level), c0], 1),  # left
        np.stack([r0 + _fraction(ur, lr, level), c1], 1),  # right
    ])  # [4 edges, cells, 2]
    table = np.full((16, 2, 2), -1, dtype=np.int64)  # case -> up to two (from_edge, to_edge) segments
    for k, segs in {**_CASES, 6: _SADDLES[(fully_connected, 6)], 9: _SADDLES[(fully_connected, 9)]}.items():
        table[k, : len(segs)] = segs
    codes = case[rs, cs]
    count = 1 + (table[codes, 1, 0] >= 0)  # segments per cell
    cell = np.repeat(np.arange(codes.size), count)
    which = np.arange(cell.size) - np.repeat(np.cumsum(count) - count, count)  # 0 or 1 within its cell
    pair = table[codes[cell], which]  # [m, 2] edge codes
    return edges[pair[:, 0], cell], edges[pair[:, 1], cell]


def contour_segments(image: np.ndarray, level: float, fully_connected: str = "low") -> list[tuple[tuple, tuple]]:
    """Directed marching-squares segments ``((r, c), (r, c))`` in skimage's emission order (row-major cells)."""
    starts, ends = _segment_arrays(image, level, fully_connected)
    return list(zip(map(tuple, starts.tolist()), map(tuple, ends.tolist())))


def _assemble_ids(starts: list[int], ends: list[int]) -> list[list[int]]:
    """Chain directed segments given as point ids (the rule in the module docstring), oldest chain first."""
    chains: dict[int, deque] = {}
    by_start: dict[int, tuple[deque, int]] = {}
    by_end: dict[int, tuple[deque, int]] = {}
    created = 0
    for p, q in zip(starts, ends):
        if p == q:
            continue
        after, after_id = by_start.pop(q, (None, -1))  # a chain that starts where this segment ends
        before, before_id = by_end.pop(p, (None, -1))  # a chain that ends where this segment starts
        if after is None and before is None:
            chain = deque((p, q))
            chains[created] = chain
            by_start[p] = (chain, created)
            by_end[q] = (chain, created)
            created += 1
        elif before is None:
            after.appendleft(p)
            by_start[p] = (after, after_id)
        elif after is None:
            before.append(q)
            by_end[q] = (before, before_id)
        elif after is before:
            before.append(q)  # the loop closes
        elif after_id > before_id:  # the older chain (before) absorbs the younger one
            before.extend(after)
            del chains[after_id]
            by_start[before[0]] = (before, before_id)
            by_end[before[-1]] = (before, before_id)
        else:
            after.extendleft(reversed(before))
            by_start.pop(before[0], None)
            del chains[before_id]
            by_start[after[0]] = (after, after_id)
            by_end[after[-1]] = (after, after_id)
    return [list(chains[k]) for k in sorted(chains)]


def _assemble_arrays(starts: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """Chain segments given as coordinate arrays: points become integer ids (equal coordinates, equal id) so that
    the chaining loop hashes integers, and the chains are mapped back to coordinates at the end."""
    if starts.shape[0] == 0:
        return []
    both = np.ascontiguousarray(np.concatenate([starts, ends]))
    keys, ids = np.unique(both.view(np.complex128).ravel(), return_inverse=True)  # (row, col) as one number
    points = np.stack([keys.real, keys.imag], axis=1)
    ids = ids.reshape(-1)
    m = starts.shape[0]
    return [points[np.asarray(c, dtype=np.int64)] for c in _assemble_ids(ids[:m].tolist(), ids[m:].tolist())]


def assemble_contours(segments: list[tuple[tuple, tuple]]) -> list[np.ndarray]:
    """Chain directed segments into contours (the rule in the module docstring), oldest chain first."""
    if not segments:
        return []
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2)
    return _assemble_arrays(seg[:, 0], seg[:, 1])


def find_contours(image: np.ndarray, level: float, fully_connected: str = "low") -> list[np.ndarray]:
    """Contours of ``image`` [H, W] at ``level``: a list of [n, 2] float64 (row, col) arrays, equal to
    ``skimage.measure.find_contours(image, level, fully_connected)`` (positive_orientation "low", no mask)."""
    return _assemble_arrays(*_segment_arrays(image, level, fully_connected))


def find_contours_binary(mask: np.ndarray) -> list[np.ndarray]:
    """Contours of a binary mask at level 0 (``find_contours(mask, 0.0)``), as [n, 2] float64 (row, col) arrays."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"find_contours_binary: expected a 2-D mask, got shape {m.shape}")
    return find_contours(m.astype(bool).astype(np.float64), 0.0)
