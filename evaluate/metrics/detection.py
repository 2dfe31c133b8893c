"""Box AP, AP50, AP75 and mask AP of a detector's output against the layouts' instances, computed by pycocotools.

Source: the COCO detection metric (Lin et al., "Microsoft COCO", ECCV 2014; cocodataset.org/#detection-eval), as
implemented by ``pycocotools.cocoeval.COCOeval`` (the reference implementation), which this module calls unchanged:
AP is the 101-point interpolated precision averaged over recall, over the IoU thresholds 0.50:0.05:0.95 and over
categories; AP50 / AP75 at one threshold; at most 100 detections per image (the highest scores); area ranges
small / medium / large by the ground truth's ``area``. InstanceDiffusion reports box AP / AP50 with YOLOv8 and mask
AP with YOLOv8-seg (``yolo val segment``); IFAdapter reports Grounding-DINO AP (variant not given; we report COCO
AP@[.5:.95] with AP50 / AP75 beside it). The detector is pluggable: any that returns :class:`Detection` objects.

Conversion rules (docs/evaluation.md, "Detection AP"):

- one COCO image per (layout, image size); one ground-truth annotation per enabled instance
  (:mod:`.ground_truth`): ``bbox`` = its box as xywh, ``segmentation`` = its rasterised mask as compressed RLE
  (``pycocotools.mask.encode``), ``area`` = the mask's pixel count (COCO's convention; the box area when the mask is
  empty), ``iscrowd`` = 0;
- categories are the distinct instance categories (label, else description; exact strings) over all the layouts,
  numbered from 1 in order of first appearance;
- a detection's ``category`` must equal one of those strings to count; detections of other categories are dropped
  (COCOeval evaluates only the ground truth's categories, so they could never match);
- crowd / ignore: a layout has no crowd regions, so no ground truth is ``iscrowd`` or ignored: every enabled
  instance must be found, and every detection that matches none is a false positive. Disabled instances are not
  ground truth; a detection on one is a false positive;
- no detections at all give AP 0.0 (pycocotools' own result for unmatched ground truth); no ground truth at all
  gives NaN (pycocotools' -1, "undefined").
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

try:  # inside the node pack (see ground_truth.py)
    from ...core.layout import Layout
except ImportError:  # `evaluate` as a top-level package
    from core.layout import Layout

from .ground_truth import GroundTruth, ground_truth, image_size

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MAX_DETECTIONS_PER_IMAGE = 1000  # refused above this; COCOeval keeps the 100 best-scored anyway


@dataclass(frozen=True, eq=False)
class Detection:
    """One detector output on one image: pixel xyxy ``box``, confidence ``score``, ``category`` string and, for
    mask AP, a bool [H, W] ``mask`` at the image's size."""

    box: tuple[float, float, float, float]
    score: float
    category: str
    mask: np.ndarray | None = None


def encode_mask(mask: np.ndarray) -> dict:
    """A bool [H, W] mask as COCO's compressed RLE (``pycocotools.mask.encode`` of the Fortran-ordered uint8)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return rle


def coco_ground_truth(images: Sequence[tuple[Layout, tuple[int, int]]]) -> tuple[dict, dict[str, int]]:
    """The COCO ground-truth dataset of (layout, (width, height)) pairs, image ids from 1, and the category ids.

    Returns (dataset dict for ``COCO``, {category string: id}).
    """
    cats: dict[str, int] = {}
    imgs, anns = [], []
    for img_id, (layout, size) in enumerate(images, start=1):
        w, h = image_size(size, f"image {img_id} size")
        imgs.append({"id": img_id, "width": w, "height": h})
        for gt in ground_truth(layout, (w, h)):
            anns.append(_gt_annotation(gt, img_id, cats.setdefault(gt.category, len(cats) + 1), len(anns) + 1))
    categories = [{"id": i, "name": name} for name, i in cats.items()]
    return {"images": imgs, "annotations": anns, "categories": categories}, cats


def _gt_annotation(gt: GroundTruth, img_id: int, cat_id: int, ann_id: int) -> dict:
    area = int(gt.mask.sum())
    if area == 0:
        x, y, bw, bh = gt.box_xywh
        area = bw * bh
    return {"id": ann_id, "image_id": img_id, "category_id": cat_id, "bbox": gt.box_xywh,
            "segmentation": encode_mask(gt.mask), "area": float(area), "iscrowd": 0}  # fmt: skip


def coco_results(detections: Sequence[Sequence[Detection]], cats: dict[str, int], iou_type: str,
                 sizes: Sequence[tuple[int, int]]) -> list[dict]:  # fmt: skip
    """Detections (one list per image, image ids from 1) as COCO results of ``iou_type``; unknown categories dropped.

    ``bbox`` results carry [x, y, w, h] and the score; ``segm`` results the compressed RLE of the mask (which must
    be at the image's size) and the score, their box and area then come from the mask as pycocotools computes them.
    """
    out = []
    for img_id, (dets, (w, h)) in enumerate(zip(detections, sizes), start=1):
        if len(dets) > MAX_DETECTIONS_PER_IMAGE:
            raise ValueError(f"image {img_id}: {len(dets)} detections; at most {MAX_DETECTIONS_PER_IMAGE} allowed")
        for k, d in enumerate(dets, start=1):
            if d.category not in cats:
                continue
            box = [float(v) for v in d.box]
            if len(box) != 4 or not np.isfinite(box + [float(d.score)]).all():
                raise ValueError(f"image {img_id}, detection {k}: box must be four finite numbers and score finite, "
                                 f"got box {d.box!r}, score {d.score!r}")  # fmt: skip
            res = {"image_id": img_id, "category_id": cats[d.category], "score": float(d.score)}
            if iou_type == "bbox":
                x0, y0, x1, y1 = box
                res["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            else:
                m = None if d.mask is None else np.asarray(d.mask)
                if m is None or m.shape != (h, w):
                    got = "none" if m is None else f"shape {m.shape}"
                    raise ValueError(f"image {img_id}, detection {k}: mask AP needs a [{h}, {w}] mask, got {got}")
                res["segmentation"] = encode_mask(m > 0)
            out.append(res)
    return out


def coco_ap(images: Sequence[tuple[Layout, tuple[int, int]]], detections: Sequence[Sequence[Detection]],
            iou_type: str = "bbox") -> dict[str, float]:  # fmt: skip
    """COCO AP of ``detections`` (one list per image) against the layouts' instances, by ``COCOeval``.

    ``images``: (layout, (width, height)) per generated image; ``iou_type``: "bbox" (box AP) or "segm" (mask AP).
    Returns {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"} in 0..1
    (COCOeval's ``stats``; NaN where pycocotools reports -1, i.e. undefined for lack of ground truth).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if len(detections) != len(images):
        raise ValueError(f"detections: {len(detections)} lists for {len(images)} images; give one list per image")
    dataset, cats = coco_ground_truth(images)
    results = coco_results(detections, cats, iou_type, [(im["width"], im["height"]) for im in dataset["images"]])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes cannot take an empty list; an empty result set is what it would build
            dt = COCO()
            dt.dataset = {"images": list(dataset["images"]), "categories": list(dataset["categories"]),
                          "annotations": []}  # fmt: skip
            dt.createIndex()
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (float(v) if v >= 0 else float("nan")) for name, v in zip(STAT_NAMES, ev.stats)}
