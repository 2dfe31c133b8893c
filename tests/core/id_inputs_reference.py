"""The interior-point ordering as it was before issue 18 (every near-tie of the mask ordered by a per-point norm, a
full stable sort): the reference that ``core.instancediffusion.inputs.interior_points`` must equal (test only)."""

import numpy as np


def _order_by_distance(pts: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Indices sorting ``pts`` [N, 2] stably by the official key ``np.linalg.norm(p - center)`` (one call per point).

    The vectorised norm can differ from the per-point one (a BLAS dot, possibly fused multiply-adds) by an ulp,
    which reorders near-ties. So the vectorised norm orders every point whose neighbours are more than 8 ulps away,
    and only points inside such near-ties get the per-point norm: the same order as the official, at vector speed
    for most masks.
    """
    diff = pts - center
    d = np.linalg.norm(diff, axis=1)
    if len(d) < 2:
        return np.arange(len(d))
    srt = np.sort(d)
    tie = np.diff(srt) <= 8 * np.spacing(srt[1:])
    near_values = np.union1d(srt[:-1][tie], srt[1:][tie])
    near = np.nonzero(np.isin(d, near_values))[0]
    if near.size:
        d = d.copy()
        d[near] = [np.linalg.norm(diff[i]) for i in near.tolist()]
    return np.argsort(d, kind="stable")


def reference_interior_points(mask: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """k interior points (x=col, y=row): foreground pixels sorted by distance to their centroid, split into k equal
    segments, the middle element of each (official ``sample_uniform_sparse_points``); random with replacement if
    there are fewer than k pixels (the official draws from Python's global ``random``; we take an explicit rng)."""
    fg = np.argwhere(mask)
    if len(fg) == 0:
        return []
    if len(fg) < k:
        idx = rng.integers(0, len(fg), size=k)
        return [(float(fg[i][1]), float(fg[i][0])) for i in idx]
    fg = fg[_order_by_distance(fg, np.mean(fg, axis=0))]
    per = len(fg) // k
    out = []
    for i in range(k):
        seg = fg[i * per : (i + 1) * per]
        r, c = seg[len(seg) // 2]
        out.append((float(c), float(r)))
    return out


