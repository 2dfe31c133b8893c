"""A layout's instances as evaluation ground truth at the size of the generated image.

Every metric compares a generated image with the layout it was generated from. This module turns the layout's
enabled instances into what the metrics read, in image pixels (origin top-left, x right, y down):

- ``category``: the instance's label, or its description when the label is blank (both stripped). Detectors are
  asked for and matched on this string; an instance with neither is refused (ValueError naming it, from 1).
- ``box``: the instance's xyxy box (its box region, else the bounding box of its regions, clipped to the canvas),
  scaled from the canvas to the image per axis as ``x / canvas_width * image_width``.
- ``mask``: the union of its regions rasterised on the image's pixel grid by the layout's own rule
  (``Layout.instance_cells`` at image size: pixel (i, j) belongs to the instance when its centre does; boxes by
  the IFAdapter cell rule). A box-only instance's mask is its box.
- ``points`` / ``scribble_points``: the centres of its point regions and the vertices of its scribbles, scaled.

Disabled instances are not ground truth (nothing asked the generator for them). Layouts over time must be resolved
to one frame first (core.layout.timeline). Bound: the image has at most ``MAX_EVAL_PIXELS`` pixels, so the masks
of a layout's at most 64 instances stay under 256 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # inside the node pack, which ComfyUI imports as a package (the Evaluate Layout node)
    from ...core import raster
    from ...core.layout import Instance, Layout
except ImportError:  # `evaluate` as a top-level package: the CLI and the tests, run from the repository root
    from core import raster
    from core.layout import Instance, Layout

MAX_EVAL_PIXELS = 2048 * 2048


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """One enabled instance at image size. ``number`` is its place in ``layout.instances`` counted from 1."""

    number: int
    category: str
    description: str
    box: tuple[float, float, float, float]  # xyxy image pixels
    mask: np.ndarray  # bool [H, W]
    points: np.ndarray  # float64 [k, 2] (x, y) image pixels of its point regions
    scribble_points: np.ndarray  # float64 [k, 2] (x, y) image pixels of its scribbles' vertices

    @property
    def box_xywh(self) -> list[float]:
        """The box as COCO's [x, y, width, height]."""
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0, y1 - y0]


def image_size(size: tuple[int, int], field: str = "image size") -> tuple[int, int]:
    """(width, height) as positive ints within ``MAX_EVAL_PIXELS``; ValueError naming ``field`` otherwise."""
    try:
        w, h = (int(v) for v in size)
        ok = (w, h) == tuple(size) and w >= 1 and h >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{field} must be (width, height) as two positive integers, got {size!r}")
    if w * h > MAX_EVAL_PIXELS:
        raise ValueError(f"{field} {w}x{h} has {w * h} pixels; evaluation allows at most {MAX_EVAL_PIXELS}")
    return w, h


def category_of(inst: Instance, number: int) -> str:
    """The instance's label, else its description (stripped); ValueError naming the instance when both are blank."""
    cat = inst.label.strip() or inst.description.strip()
    if not cat:
        raise ValueError(f"instance {number}: no label and no description; evaluation needs one to name its category")
    return cat


def _scaled_points(points: list[tuple[float, float]], sx: float, sy: float) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p * np.array([sx, sy])


def ground_truth(layout: Layout, size: tuple[int, int]) -> list[GroundTruth]:
    """The layout's enabled instances, in layout order, at image ``size`` = (width, height)."""
    w, h = image_size(size)
    cw, ch = layout.width, layout.height
    out = []
    for number, inst in enumerate(layout.instances, start=1):
        if not inst.enabled:
            continue
        category = category_of(inst, number)
        x0, y0, x1, y1 = inst.bbox((cw, ch))
        box = (x0 / cw * w, y0 / ch * h, x1 / cw * w, y1 / ch * h)
        mask = np.zeros((h, w), dtype=bool)
        raster.paste(mask, raster.instance_cells(inst, cw, ch, h, w))
        sx, sy = w / cw, h / ch
        pts = [p for r in inst.regions if r.kind == "point" for p in r.points]
        scr = [p for r in inst.regions if r.kind == "scribble" for p in r.points]
        out.append(GroundTruth(number, category, inst.description, box, mask, _scaled_points(pts, sx, sy),
                               _scaled_points(scr, sx, sy)))  # fmt: skip
    return out
