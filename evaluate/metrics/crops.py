"""Box -> crop, as the official instance-level scripts cut an instance out of a generated image.

Source: InstanceDiffusion ``eval/eval_attribute_binding.py``: the COCO box is normalised by the annotation's image
size (``x / width``), multiplied by the generated image's size and handed to ``PIL.Image.crop``. PIL rounds each of
the four coordinates to the nearest integer (Python's ``round``: halves to even), keeps the pixels
[x0, x1) x [y0, y1) and fills the part of the crop that lies outside the image with zeros. A crop with no pixel
(x1 <= x0 or y1 <= y0 after rounding) cannot be encoded; the official script then drops the instance from every
instance-level score (its ``try``/``except`` around the scoring), and :func:`instance_crops` gives ``None`` for it.

The same crop serves the instance CLIP score, attribute binding and the IFS verification crop (IFAdapter's paper
does not say how it crops; docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:  # inside the node pack (see ground_truth.py)
    from ...core.layout import Layout
except ImportError:  # `evaluate` as a top-level package
    from core.layout import Layout

from .ground_truth import image_size


def crop_bounds(box: Sequence[float]) -> tuple[int, int, int, int]:
    """PIL's integer crop bounds of a pixel xyxy box: each coordinate rounded half to even."""
    if len(box) != 4 or not all(np.isfinite(float(v)) for v in box):
        raise ValueError(f"box must be four finite numbers (x0, y0, x1, y1) in pixels, got {box!r}")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return x0, y0, x1, y1


def crop_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The crop of ``image`` [H, W] or [H, W, C] under the pixel xyxy ``box``, as ``PIL.Image.crop`` cuts it.

    Returns [y1 - y0, x1 - x0(, C)] of the image's dtype (a copy), zeros where the box leaves the image; an empty
    array (a zero side) when the rounded box has no width or height. The crop is bounded by the image size plus
    the box's own size, so a box far outside the image is refused (ValueError) rather than allocated.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {image.shape}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = crop_bounds(box)
    cw, ch = max(x1 - x0, 0), max(y1 - y0, 0)
    if cw > 2 * w + 2 or ch > 2 * h + 2:
        raise ValueError(f"box {tuple(box)} is {cw}x{ch} pixels, far larger than the {w}x{h} image")
    out = np.zeros((ch, cw) + image.shape[2:], dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def instance_crops(layout: Layout, image: np.ndarray) -> list[np.ndarray | None]:
    """The crop of every enabled instance's box (in layout order) from ``image`` [H, W(, C)]; None where empty.

    The box is the instance's box in canvas pixels, normalised by the canvas and scaled to the image as the
    official script does (``x / canvas_width * image_width``).
    """
    image = np.asarray(image)
    w, h = image_size((image.shape[1], image.shape[0]) if image.ndim >= 2 else (0, 0), "image")
    cw, ch = layout.width, layout.height
    out: list[np.ndarray | None] = []
    for inst in layout.active():
        x0, y0, x1, y1 = inst.bbox((cw, ch))
        crop = crop_box(image, (x0 / cw * w, y0 / ch * h, x1 / cw * w, y1 / ch * h))
        out.append(crop if crop.size else None)
    return out
