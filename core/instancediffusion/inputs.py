"""Grounding-input preparation for the InstanceDiffusion position net (spec §1.2–1.3).

The core, :func:`prepare_inputs`, takes plain per-instance records (:class:`InstanceInput`, pixel coordinates of a
``width`` × ``height`` canvas) and returns the official ``prepare_batch`` tensors, always padded to 30 slots:

=====================  ==================  ==================================================================
key                    shape               content
=====================  ==================  ==================================================================
``boxes``              [1, 30, 4]          xyxy / canvas, zeros for empty slots
``masks``              [1, 30]             1 for a real instance slot, 0 for padding
``positive_embeddings`` [1, 30, 768]       CLIP-L pooled (un-projected) text embedding per instance
``points``             [1, 30, 2]          x/W, y/H; box centres when no instance has a point
``scribbles``          [1, 30, 40]         20 points (x, y) flattened
``polygons``           [1, 30, 512]        256 points (128 boundary + 128 interior) flattened
``segs``               [1, 30, 512, 512]   binary instance mask, one channel per slot
``drop``               [4] bool            modality drop flags (boxes, points, scribbles, masks) of the preset
=====================  ==================  ==================================================================

:func:`from_layout` is a thin adapter from ``core.layout.Layout``. :func:`null_inputs` gives the all-null input used
for the unconditional CFG rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import raster
from .contours import find_contours_binary
from .position_net import MAX_OBJS, DropFlags
from .resize import resize_like_skimage

# Official test configs' drop flags (spec §1.4 table).
PRESETS: dict[str, DropFlags] = {
    "boxes": DropFlags(boxes=False, points=False, scribbles=True, masks=True),  # test_box.yaml
    "masks": DropFlags(boxes=False, points=False, scribbles=True, masks=False),  # test_mask.yaml
    "points": DropFlags(boxes=True, points=False, scribbles=True, masks=True),  # test_point.yaml
    "scribbles": DropFlags(boxes=False, points=False, scribbles=False, masks=False),  # test_scribble.yaml
}
PRESET_NAMES: tuple[str, ...] = ("auto", *PRESETS)

N_SCRIBBLE = 20
N_POLYGON = 256
SEG_SIZE = 512
EMBED_DIM = 768
# Masks of more pixels are first reduced to SEG_SIZE x SEG_SIZE by nearest neighbour (as the official evaluation path
# resizes every mask to 512 x 512 with PIL NEAREST before its inputs are built), so that preparing a mask costs the
# same at 16384 x 1024 as at 512 x 512. Masks up to 512 x 512 pixels (the editor's) are used as they are.
MAX_DIRECT_MASK_PIXELS = SEG_SIZE * SEG_SIZE


@dataclass
class InstanceInput:
    """One instance, in pixel coordinates of the canvas (origin top-left, x right, y down).

    embedding: [768] CLIP-L pooled un-projected text embedding of the instance caption.
    box: (x0, y0, x1, y1) pixels, or None (see ``missing_box`` of :func:`prepare_inputs`).
    point: (x, y) pixels, or None.
    scribble: list of (x, y) pixel pairs (any number >= 1), or None.
    mask: bool/0-1 array [mh, mw] covering the whole canvas (any resolution), or None.
    name: used in error messages only.
    number: how messages number this instance (counted from 1, e.g. its place in the layout); None = slot + 1.
    """

    embedding: torch.Tensor
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None
    scribble: Sequence[tuple[float, float]] | None = None
    mask: np.ndarray | None = None
    name: str = ""
    number: int | None = None


def _norm_key(p: Any) -> float:
    """Sort key of the official code: ``np.linalg.norm(np.array(p) - center)`` with center (0, 0)."""
    return float(np.linalg.norm(np.array(p)))


def equally_spaced(points: Sequence[Any], n: int) -> list[Any]:
    """Official resampling to n items: index i·(len//n) if len >= n, else (i·len)//n (with repeats)."""
    if len(points) == 0:
        raise ValueError("equally_spaced: empty point list")
    if n <= len(points):
        gap = len(points) // n
        return [points[i * gap] for i in range(n)]
    return [points[(i * len(points)) // n % len(points)] for i in range(n)]


def reorder_scribble(points: Sequence[tuple[float, float]], n: int = N_SCRIBBLE) -> list[tuple[float, float]]:
    """Sort by distance to (0, 0) (stable), resample to n points, sort again (official ``reorder_scribbles``)."""
    pts = sorted([(float(x), float(y)) for x, y in points], key=_norm_key)
    return sorted(equally_spaced(pts, n), key=_norm_key)


def scribble_from_mask(mask: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[float, float]] | None:
    """n random foreground pixels as (x=col, y=row), sorted by distance to (0,0); None for an empty mask.

    Without replacement when there are at least n pixels, with replacement otherwise (official
    ``sample_random_points_from_mask``; the official code uses the global numpy RNG, we take an explicit one).
    """
    fg = np.argwhere(mask)
    if len(fg) == 0:
        return None
    idx = rng.choice(len(fg), n, replace=len(fg) < n)
    pts = sorted((tuple(p) for p in fg[idx].tolist()), key=_norm_key)
    return [(float(c), float(r)) for r, c in pts]


def _tie_clusters(srt: np.ndarray) -> np.ndarray:
    """Start index of each position's near-tie cluster in the sorted distances ``srt``: maximal runs whose
    neighbours are at most 8 ulps apart (a value without such a neighbour is a cluster of one)."""
    tie = np.diff(srt) <= 8 * np.spacing(srt[1:])
    starts = np.ones(len(srt), dtype=bool)
    starts[1:] = ~tie
    return np.maximum.accumulate(np.where(starts, np.arange(len(srt)), 0))


def _picks_by_distance(pts: np.ndarray, center: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Indices of the points at ``positions`` of ``pts`` [N, 2] sorted stably by the official key
    ``np.linalg.norm(p - center)`` (one call per point).

    The vectorised norm can differ from the per-point one (a BLAS dot, possibly fused multiply-adds) by an ulp, which
    reorders near-ties. The vectorised norm places every point whose neighbours are more than 8 ulps away; a point
    inside a near-tie cluster stays inside its cluster's positions, where the per-point norm orders it. Only the
    clusters at ``positions`` get per-point norms (not every tie of the mask), so the work is a vectorised sort.
    """
    diff = pts - center
    d = np.linalg.norm(diff, axis=1)
    order = np.argsort(d, kind="stable")
    srt = d[order]
    start = _tie_clusters(srt) if len(d) > 1 else np.zeros(len(d), dtype=np.int64)
    ends = np.append(np.nonzero(start[1:] != start[:-1])[0] + 1, len(d))
    out = order[positions].copy()
    for j, p in enumerate(positions.tolist()):
        a = int(start[p])
        b = int(ends[np.searchsorted(ends, p, side="right")])
        if b - a > 1:
            members = order[a:b].tolist()
            exact = sorted(members, key=lambda i: (np.linalg.norm(diff[i]), i))
            out[j] = exact[p - a]
    return out


def interior_points(mask: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """k interior points (x=col, y=row): foreground pixels sorted by distance to their centroid, split into k equal
    segments, the middle element of each (official ``sample_uniform_sparse_points``); random with replacement if
    there are fewer than k pixels (the official draws from Python's global ``random``; we take an explicit rng)."""
    fg = np.argwhere(mask)
    if len(fg) == 0:
        return []
    if len(fg) < k:
        idx = rng.integers(0, len(fg), size=k)
        return [(float(fg[i][1]), float(fg[i][0])) for i in idx]
    per = len(fg) // k
    positions = np.arange(k) * per + per // 2  # the middle of each segment [i·per, (i+1)·per)
    picked = fg[_picks_by_distance(fg, np.mean(fg, axis=0), positions)]
    return [(float(c), float(r)) for r, c in picked.tolist()]


def boundary_points(mask: np.ndarray) -> np.ndarray | None:
    """The concatenated contours of the zero-padded mask as [L, 2] (x, y) in the padded frame (official
    ``binary_mask_to_polygon`` with tolerance 0: contours closed, those with < 3 vertices dropped, negative
    coordinates set to 0); None when the mask has no contour."""
    padded = np.pad(np.asarray(mask).astype(np.int32), 1)
    parts = []
    for c in find_contours_binary(padded):
        if not np.array_equal(c[0], c[-1]):
            c = np.vstack((c, c[0]))
        if len(c) >= 3:
            parts.append(np.maximum(c[:, ::-1], 0))
    return np.concatenate(parts, axis=0) if parts else None


def mask_to_polygon_points(mask: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[float, float]] | None:
    """The official 256-point polygon of a mask, in mask pixel units (x, y); None when the mask has no contour.

    n//2 boundary points at ``int(linspace(0, L-1, n//2))`` along :func:`boundary_points` (exactly skimage's
    contours: same vertices, order and starts), plus n - n//2 interior points; all sorted (stably, interior points
    first) by distance to (0, 0) as the official ``sample_sparse_points_from_mask``.
    """
    boundary = boundary_points(mask)
    if boundary is None:
        return None
    idx = [int(i) for i in np.linspace(0, boundary.shape[0] - 1, n // 2)]
    sampled = [(float(x), float(y)) for x, y in boundary[idx]]
    inside = interior_points(mask, n - len(sampled), rng)
    return sorted(inside + sampled, key=_norm_key)


def _flatten_norm(points: Sequence[tuple[float, float]], w: float, h: float, clip: bool) -> list[float]:
    out = []
    for x, y in points:
        xn, yn = x / w, y / h
        if clip:
            xn, yn = min(xn, 1.0), min(yn, 1.0)
        out += [xn, yn]
    return out


def _label(i: int, inst: InstanceInput) -> str:
    """The instance as a person counts it (from 1): its own ``number``, else slot ``i`` + 1."""
    n = inst.number if inst.number is not None else i + 1
    return f'instance {n} ("{inst.name}")' if inst.name else f"instance {n}"


def working_mask(mask: np.ndarray, size: int = SEG_SIZE) -> np.ndarray:
    """The mask the polygon, the auto-scribble and ``segs`` are built from: ``mask`` itself up to
    MAX_DIRECT_MASK_PIXELS pixels, else its nearest-neighbour reduction to ``size`` x ``size`` (pixel centres: output
    pixel i reads source pixel floor((i + 0.5) * n / size)); the reduction reads size² pixels, not the mask."""
    mh, mw = mask.shape
    if mh * mw <= MAX_DIRECT_MASK_PIXELS:
        return mask
    rows = np.minimum(((np.arange(size) + 0.5) * (mh / size)).astype(np.int64), mh - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * (mw / size)).astype(np.int64), mw - 1)
    return mask[rows[:, None], cols[None, :]]


def _mask_bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1) of a non-empty bool mask, pixels [col0, col1) x [row0, row1), from its row and column
    projections (no per-pixel coordinate arrays)."""
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """Instance mask -> [size, size] float32 as the official ``skimage.transform.resize(mask, (512, 512, 1))``:
    bilinear with Gaussian anti-aliasing, so not binary unless the mask already has that size."""
    return torch.from_numpy(resize_like_skimage(mask, size, size))


def choose_preset(instances: Sequence[InstanceInput]) -> str:
    """ "auto": scribbles if any instance has one, else masks if any has a mask, else boxes if any has a box, else
    points (the config whose semantics match the given modalities, spec §9)."""
    if any(i.scribble is not None for i in instances):
        return "scribbles"
    if any(i.mask is not None for i in instances):
        return "masks"
    if any(i.box is not None for i in instances) or not any(i.point is not None for i in instances):
        return "boxes"
    return "points"


def _check_xy(i: int, inst: InstanceInput, what: str, x: float, y: float, w: int, h: int) -> None:
    if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0 or x > w or y > h:
        raise ValueError(f"{_label(i, inst)}: {what} ({x:g}, {y:g}) is outside the canvas 0..{w} x 0..{h} pixels")


MISSING_BOX = ("from regions", "zeros (official)")


def _instance_box(i: int, inst: InstanceInput, w: int, h: int, missing_box: str = "from regions") -> list[float]:
    if inst.box is not None:
        x0, y0, x1, y1 = (float(v) for v in inst.box)
        _check_xy(i, inst, "box corner", x0, y0, w, h)
        _check_xy(i, inst, "box corner", x1, y1, w, h)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{_label(i, inst)}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs x0 <= x1 and y0 <= y1")
        return [x0 / w, y0 / h, x1 / w, y1 / h]
    if missing_box == "zeros (official)":
        return [0.0, 0.0, 0.0, 0.0]  # official inference.py: a missing bbox becomes [0, 0, 0, 0]
    if inst.mask is not None and np.asarray(inst.mask).any():
        m = np.asarray(inst.mask).astype(bool)
        c0, r0, c1, r1 = _mask_bbox(m)
        mh, mw = m.shape
        return [c0 / mw, r0 / mh, c1 / mw, r1 / mh]
    pts = list(inst.scribble or []) + ([inst.point] if inst.point is not None else [])
    if pts:
        xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
        return [min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h]
    return [0.0, 0.0, 0.0, 0.0]  # nothing to derive a box from


def prepare_inputs(
    instances: Sequence[InstanceInput],
    width: int,
    height: int,
    preset: str = "auto",
    seed: int = 0,
    max_objs: int = MAX_OBJS,
    seg_size: int = SEG_SIZE,
    missing_box: str = "from regions",
) -> dict[str, torch.Tensor]:
    """Build the position-net input dict (shapes in the module docstring) for instances in slot order 0..n-1.

    width/height: canvas in pixels; every coordinate is divided by them (masks by their own resolution).
    preset: "auto", "boxes", "masks", "points" or "scribbles" (official test_*.yaml drop flags).
    seed: for the random parts (auto-scribbles from masks, interior points of masks with < 128 pixels).
    missing_box: for an instance without a box, "from regions" (the bounding box of its mask, else of its
    scribble and point) or "zeros (official)" ([0, 0, 0, 0], as the official inference.py).
    Raises ValueError naming the instance for out-of-canvas coordinates, more than ``max_objs`` instances, or a bad
    embedding.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"canvas must be positive, got {width} x {height}")
    if missing_box not in MISSING_BOX:
        raise ValueError(f"unknown missing_box {missing_box!r}; choose one of {', '.join(MISSING_BOX)}")
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown InstanceDiffusion preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    n = len(instances)
    if n > max_objs:
        raise ValueError(
            f"InstanceDiffusion supports at most {max_objs} instances (its mask encoder has exactly {max_objs} input "
            f"channels); got {n}. Disable or merge {n - max_objs} instance(s)."
        )
    if preset == "auto":
        preset = choose_preset(instances)
    rng = np.random.default_rng(seed)
    out = null_inputs(max_objs, seg_size)
    out["drop"] = PRESETS[preset].as_tensor()
    for i, inst in enumerate(instances):
        emb = torch.as_tensor(inst.embedding).reshape(-1).float()
        if emb.numel() != EMBED_DIM:
            raise ValueError(
                f"{_label(i, inst)}: text embedding has {emb.numel()} values; expected {EMBED_DIM} "
                "(CLIP-L pooled, un-projected: encode with return_pooled='unprojected')"
            )
        box = _instance_box(i, inst, width, height, missing_box)
        out["masks"][0, i] = 1.0
        out["positive_embeddings"][0, i] = emb
        out["boxes"][0, i] = torch.tensor(box)
        if inst.point is not None:
            x, y = (float(v) for v in inst.point)
            _check_xy(i, inst, "point", x, y, width, height)
            out["points"][0, i] = torch.tensor([x / width, y / height])
        else:
            # official: box centres when no instance has a point; we also use the centre for an instance without
            # a point when others have one (the official code has no rule for that mix)
            out["points"][0, i] = torch.tensor([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        mask = None if inst.mask is None else np.asarray(inst.mask).astype(bool)
        if mask is not None and mask.ndim == 2:
            mask = working_mask(mask, seg_size)  # the box above came from the mask itself
        if inst.scribble is not None:
            pts = list(inst.scribble)
            if len(pts) == 0:
                raise ValueError(f"{_label(i, inst)}: scribble has no points; give at least one (x, y) pair")
            for x, y in pts:
                _check_xy(i, inst, "scribble point", float(x), float(y), width, height)
            # official order: normalise by the canvas, then sort by distance to (0, 0) and resample
            norm = reorder_scribble([(float(x) / width, float(y) / height) for x, y in pts])
            out["scribbles"][0, i] = torch.tensor([v for p in norm for v in p])
        elif mask is not None:
            pts = scribble_from_mask(mask, N_SCRIBBLE, rng)
            if pts is not None:
                out["scribbles"][0, i] = torch.tensor(_flatten_norm(pts, mask.shape[1], mask.shape[0], clip=True))
        if mask is not None:
            if mask.ndim != 2:
                raise ValueError(f"{_label(i, inst)}: mask must be 2-D [h, w], got shape {mask.shape}")
            poly = mask_to_polygon_points(mask, N_POLYGON, rng)
            if poly is not None:
                out["polygons"][0, i] = torch.tensor(_flatten_norm(poly, mask.shape[1], mask.shape[0], clip=True))
            out["segs"][0, i] = _resize_mask(mask, seg_size)
    return out


def null_inputs(max_objs: int = MAX_OBJS, seg_size: int = SEG_SIZE, batch: int = 1) -> dict[str, torch.Tensor]:
    """The all-null grounding input (official ``get_null_input``): every tensor zero, ``masks`` included.

    Every slot becomes null text + null layouts, the mask branch null + ``pos_embedding``. Used for the
    unconditional CFG rows (which are *not* plain SD in InstanceDiffusion). ``drop`` is all False (the drop flags
    do not change a null input).
    """
    return {
        "boxes": torch.zeros(batch, max_objs, 4),
        "masks": torch.zeros(batch, max_objs),
        "positive_embeddings": torch.zeros(batch, max_objs, EMBED_DIM),
        "points": torch.zeros(batch, max_objs, 2),
        "scribbles": torch.zeros(batch, max_objs, 2 * N_SCRIBBLE),
        "polygons": torch.zeros(batch, max_objs, 2 * N_POLYGON),
        "segs": torch.zeros(batch, max_objs, seg_size, seg_size),
        "drop": torch.zeros(4, dtype=torch.bool),
    }


def single_instance_inputs(inputs: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """Grounding input with only instance ``index`` (moved to slot 0, 29 null slots): an MIS branch input."""
    out = {k: torch.zeros_like(v) for k, v in inputs.items()}
    out["drop"] = inputs["drop"].clone()
    for k, v in inputs.items():
        if k != "drop":
            out[k][:, 0] = v[:, index]
    return out


def rasterize_polygon(
    points: Sequence[tuple[float, float]], mh: int, mw: int, width: float, height: float, fill: str = "even-odd"
) -> np.ndarray:
    """A pixel-coordinate polygon on an [mh, mw] grid covering a width x height canvas: ``fill="even-odd"`` tests
    pixel centres (the editor's rule, one scanline pass over the polygon's bounding box); ``fill="coco"`` is
    pycocotools' ``annToMask`` rule, the official mask of an imported COCO polygon (core/raster.py)."""
    out = np.zeros((mh, mw), dtype=bool)
    raster.paste(out, raster.fill_polygon(points, fill, width, height, mh, mw))
    return out


def _resize_bool(mask: np.ndarray, mh: int, mw: int) -> np.ndarray:
    if mask.shape == (mh, mw):
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(t, size=(mh, mw), mode="nearest-exact")[0, 0].numpy() > 0.5


def from_layout(
    layout: Any,
    embeddings: Sequence[torch.Tensor] | torch.Tensor,
    preset: str = "auto",
    seed: int = 0,
    missing_box: str = "from regions",
) -> dict[str, torch.Tensor]:
    """Adapter from ``core.layout.Layout``: one :class:`InstanceInput` per *active* instance, in list order.

    embeddings: [n_active, 768] (or a list of [768]) pooled CLIP embeddings of the instance descriptions.
    Region use: "box" -> box (else derived from the mask / scribble / point); first "point" -> point; first "scribble" ->
    scribble points; the union of all "mask" and "polygon" regions (polygons by their fill rule) -> the instance
    mask (at the first mask's resolution, else at canvas resolution, or at SEG_SIZE x SEG_SIZE for a canvas past
    MAX_DIRECT_MASK_PIXELS).
    """
    active = layout.active()
    if len(embeddings) != len(active):
        raise ValueError(f"from_layout: {len(active)} active instances but {len(embeddings)} text embeddings")
    w, h = int(layout.width), int(layout.height)
    instances = []
    for number, inst, emb in zip(layout.active_numbers(), active, embeddings):
        masks = [np.asarray(r.mask).astype(bool) for r in inst.regions if r.kind == "mask" and r.mask is not None]
        polys = [r for r in inst.regions if r.kind == "polygon" and r.points]
        mask = None
        if masks or polys:
            mh, mw = masks[0].shape if masks else (h, w)
            if not masks and mh * mw > MAX_DIRECT_MASK_PIXELS:  # polygons alone: drawn at the size they end at
                mh = mw = SEG_SIZE
            mask = np.zeros((mh, mw), dtype=bool)
            for m in masks:
                mask |= _resize_bool(m, mh, mw)
            for r in polys:  # imported COCO polygons by pycocotools' rule, drawn ones by pixel centres
                mask |= rasterize_polygon(r.points, mh, mw, w, h, raster.polygon_fill(r))
        pt_r, scr_r = inst.region("point"), inst.region("scribble")
        box_r = inst.region("box")
        box = tuple(box_r.bbox((w, h))) if box_r is not None else None  # else derived by prepare_inputs
        instances.append(
            InstanceInput(
                embedding=torch.as_tensor(emb),
                box=box,
                point=tuple(pt_r.points[0]) if pt_r is not None and pt_r.points else None,
                scribble=list(scr_r.points) if scr_r is not None and scr_r.points else None,
                mask=mask,
                name=inst.description,
                number=number,
            )
        )
    return prepare_inputs(instances, w, h, preset=preset, seed=seed, missing_box=missing_box)


def received_overlays(
    layout: Any, preset: str = "auto", seed: int = 0, missing_box: str = "from regions"
) -> dict[int, list[dict]]:
    """What the model receives, as marks for ``core.render.render_layout(overlays=...)``, in canvas pixels.

    For each active instance: the normalised box, the point, the 20 resampled scribble points (a polyline) and the
    256 mask-polygon points, exactly as :func:`from_layout` prepares them, scaled back by the canvas size.
    Modalities that the preset replaces by the null embedding are left out (e.g. scribbles under "boxes").
    """
    active = layout.active()
    inputs = from_layout(layout, torch.zeros(len(active), EMBED_DIM), preset=preset, seed=seed,
                         missing_box=missing_box)
    drop = DropFlags.from_tensor(inputs["drop"])
    w, h = float(layout.width), float(layout.height)

    def pts(flat: torch.Tensor) -> list[list[float]]:
        xy = flat.reshape(-1, 2)
        return [[float(x) * w, float(y) * h] for x, y in xy.tolist()]

    out: dict[int, list[dict]] = {}
    for i in range(len(active)):
        marks = []
        if not drop.boxes:
            x0, y0, x1, y1 = inputs["boxes"][0, i].tolist()
            marks.append({"kind": "box", "box": [x0 * w, y0 * h, x1 * w, y1 * h]})
        if not drop.points:
            marks.append({"kind": "points", "points": pts(inputs["points"][0, i])})
        if not drop.scribbles and bool(inputs["scribbles"][0, i].any()):
            marks.append({"kind": "polyline", "points": pts(inputs["scribbles"][0, i])})
        if not drop.masks and bool(inputs["polygons"][0, i].any()):
            marks.append({"kind": "points", "points": pts(inputs["polygons"][0, i])[::2]})
        out[i] = marks
    return out
