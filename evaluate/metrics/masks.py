"""Mask IoU per instance and PiM (points in mask): InstanceDiffusion's instance-level location metrics.

Source: InstanceDiffusion (Wang et al., CVPR 2024), Sec. 5 (mask inputs: instance mask IoU; point and scribble
inputs: PiM) and its official script ``eval/eval_pim.py``. The official rules, matched here:

- **IoU** of two masks = |A and B| / |A or B| (NaN when both are empty: 0 / 0).
- **Matching** (``match_masks`` in the script): ground-truth instances in order; each takes, among the detected
  masks not taken yet, the one of highest IoU (the first on ties; a NaN IoU is never taken) and keeps it when that
  IoU is >= the threshold, which is **0.0** for PiM. Matching is class-agnostic: a detection of any class can
  match. Every detection takes part (the script applies no score threshold to the detector's predictions).
  An instance left without a detection (more instances than detections) is skipped, not scored 0.
- **PiM, points**: 1 if the instance's point lies in its matched mask, else 0. In the COCO protocol the point is the
  centre of the ground-truth mask's bounding box (:func:`mask_centre_point`); for a layout it is the drawn point.
- **PiM, scribbles**: the share of the instance's scribble points inside its matched mask. In the COCO protocol
  these are 20 points drawn from the ground-truth mask (:func:`sample_mask_points`); for a layout they are the
  scribble's vertices.
- A point (x, y) is inside when ``mask[y, x]`` is set, with integer pixel indices: the official points are pixel
  indices already; drawn points in pixels are floored to the pixel that holds them and clipped to the image.
- **Aggregation**: the mean over an image's scored instances, then the mean over the images that have one (NaN
  values dropped): :func:`mean_over_images`.

The mask IoU uses the same matching and aggregation with the IoU of each matched pair as the instance's value
(the released script holds the IoU and matching functions but prints PiM only; the paper reports the instance mask
IoU). ``missing="zero"`` scores an unmatched instance 0 instead of skipping it, and ``same_class=True`` lets an
instance match only detections of its category: both options are deviations, off by default
(docs/official-differences.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ground_truth import GroundTruth

PIM_IOU_THRESHOLD = 0.0
SCRIBBLE_POINTS = 20  # points drawn from a ground-truth mask in the official scribble protocol


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a and b| / |a or b| of two bool masks of one shape; NaN when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes {a.shape} and {b.shape}; both must be the image's [H, W]")
    union = int(np.logical_or(a, b).sum())
    return float(np.logical_and(a, b).sum()) / union if union else float("nan")


def match_masks(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                iou_threshold: float = PIM_IOU_THRESHOLD, gt_classes: Sequence[str] | None = None,
                pred_classes: Sequence[str] | None = None) -> list[tuple[int, int, float]]:  # fmt: skip
    """The official greedy matching: [(gt index, pred index, IoU)] in ground-truth order.

    With ``gt_classes`` and ``pred_classes`` (the ``same_class`` deviation) an instance only considers detections
    whose class equals its own.
    """
    if (gt_classes is None) != (pred_classes is None):
        raise ValueError("give both gt_classes and pred_classes, or neither")
    taken: set[int] = set()
    pairs = []
    for i, g in enumerate(gt_masks):
        best, best_j = -1.0, -1
        for j, p in enumerate(pred_masks):
            if j in taken or (gt_classes is not None and gt_classes[i] != pred_classes[j]):
                continue
            iou = mask_iou(g, p)
            if iou > best:  # False for NaN
                best, best_j = iou, j
        if best >= iou_threshold and best_j >= 0:
            pairs.append((i, best_j, best))
            taken.add(best_j)
    return pairs


def pixel_indices(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """int64 [k, 2] (x, y) pixel indices of float pixel points [k, 2] on a (width, height) image: floor, clipped."""
    w, h = size
    p = np.floor(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    return np.clip(p, 0, [w - 1, h - 1])


def points_in_mask(mask: np.ndarray, points: np.ndarray) -> float:
    """The share of integer (x, y) pixel ``points`` [k, 2] where ``mask[y, x]`` is set (NaN for no point)."""
    p = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(p) == 0:
        return float("nan")
    return float(np.mean(np.asarray(mask, dtype=bool)[p[:, 1], p[:, 0]]))


def mask_centre_point(mask: np.ndarray) -> tuple[int, int] | None:
    """The official point of a ground-truth mask: the centre of its bounding box in pixel indices,
    (int((x_min + x_max) / 2), int((y_min + y_max) / 2)) with inclusive maxima; None for an empty mask."""
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    if len(xs) == 0:
        return None
    return int((int(xs.min()) + int(xs.max())) / 2), int((int(ys.min()) + int(ys.max())) / 2)


def sample_mask_points(mask: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """The official scribble points of a ground-truth mask: ``k`` of its pixels drawn by ``rng.choice`` (with
    replacement only when the mask has fewer than ``k`` pixels), as int64 [k, 2] (x, y); [0, 2] for an empty mask.

    Pass ``np.random.RandomState(seed)`` (the legacy generator behind the official ``np.random.choice``) to
    reproduce its draws. The official order (sorted by distance to (0, 0)) does not change PiM and is not kept.
    """
    nz = np.transpose(np.nonzero(np.asarray(mask, dtype=bool)))
    if len(nz) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    idx = rng.choice(len(nz), k, replace=len(nz) < k)
    return nz[idx][:, ::-1].astype(np.int64)


@dataclass(frozen=True)
class InstanceScores:
    """Per-instance values of one image (None where the instance was not scored) and their mean (NaN if none)."""

    per_instance: list[float | None]
    image: float


def _scores(values: list[float | None]) -> InstanceScores:
    scored = [v for v in values if v is not None and not np.isnan(v)]
    return InstanceScores(values, float(np.mean(scored)) if scored else float("nan"))


def _match(gts: Sequence[GroundTruth], pred_masks: Sequence[np.ndarray], pred_classes: Sequence[str] | None,
           same_class: bool) -> dict[int, tuple[int, float]]:  # fmt: skip
    if same_class and pred_classes is None:
        raise ValueError("same_class=True needs pred_classes (one category string per detected mask)")
    if pred_classes is not None and len(pred_classes) != len(pred_masks):
        raise ValueError(f"pred_classes: {len(pred_classes)} for {len(pred_masks)} masks; give one per mask")
    gc = [g.category for g in gts] if same_class else None
    pairs = match_masks([g.mask for g in gts], pred_masks, PIM_IOU_THRESHOLD, gc, pred_classes if same_class else None)
    return {i: (j, iou) for i, j, iou in pairs}


def instance_mask_iou(gts: Sequence[GroundTruth], pred_masks: Sequence[np.ndarray],
                      pred_classes: Sequence[str] | None = None, missing: str = "skip",
                      same_class: bool = False) -> InstanceScores:  # fmt: skip
    """Mask IoU of each instance with its matched detected mask (bool [H, W] at the image's size), and the mean.

    ``missing``: "skip" (official structure) leaves an unmatched instance out; "zero" scores it 0.
    """
    if missing not in ("skip", "zero"):
        raise ValueError(f"missing must be 'skip' or 'zero', got {missing!r}")
    matched = _match(gts, pred_masks, pred_classes, same_class)
    values = [matched[i][1] if i in matched else (0.0 if missing == "zero" else None) for i in range(len(gts))]
    return _scores(values)


def pim(gts: Sequence[GroundTruth], pred_masks: Sequence[np.ndarray], kind: str = "point",
        pred_classes: Sequence[str] | None = None, missing: str = "skip", same_class: bool = False) -> InstanceScores:
    """PiM of one image: per instance, the share of its drawn points (``kind="point"``) or scribble vertices
    (``kind="scribble"``) inside its matched detected mask; instances with no such points are not scored."""
    if kind not in ("point", "scribble"):
        raise ValueError(f"kind must be 'point' or 'scribble', got {kind!r}")
    if missing not in ("skip", "zero"):
        raise ValueError(f"missing must be 'skip' or 'zero', got {missing!r}")
    matched = _match(gts, pred_masks, pred_classes, same_class)
    values: list[float | None] = []
    for i, g in enumerate(gts):
        pts = g.points if kind == "point" else g.scribble_points
        if len(pts) == 0:
            values.append(None)
        elif i in matched:
            h, w = g.mask.shape
            values.append(points_in_mask(pred_masks[matched[i][0]], pixel_indices(pts, (w, h))))
        else:
            values.append(0.0 if missing == "zero" else None)
    return _scores(values)


def mean_over_images(image_values: Sequence[float]) -> float:
    """The official aggregate: the mean of the per-image values, NaN ones dropped (NaN when none is left)."""
    v = np.asarray([x for x in image_values if x is not None], dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
