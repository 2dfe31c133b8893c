"""The Evaluate Layout node's picture: an image with its layout drawn over it, what the detector found, and each
instance marked hit (green) or miss (red).

Drawn by the layout preview's own renderer (``core.render.render_layout``) at the image's size, with the layout's
regions faint over the image; then, per instance, its matched detection box in green (hit) or red (miss) and a tag
"N hit" / "N miss" (with the IoU) at the layout box's lower-left corner; detections matched to no instance as
thin white boxes. The legend below lists each instance with its verdict. Pure numpy + Pillow.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

try:  # inside the node pack (see metrics/ground_truth.py)
    from ..core.layout import Layout
    from ..core.render import _font, render_layout
except ImportError:  # `evaluate` as a top-level package
    from core.layout import Layout
    from core.render import _font, render_layout

HIT, MISS, UNKNOWN = (40, 200, 80), (230, 40, 40), (200, 200, 200)


def _verdict(rec: dict) -> str:
    mark = {True: "hit", False: "miss", None: "not checked"}[rec["hit"]]
    if rec["iou"] is not None:
        mark += f", IoU {rec['iou']:.2f}"
    if rec["verified"] is not None:
        mark += ", VLM yes" if rec["verified"] else ", VLM no"
    return f"[{mark}] "


def draw_overlay(layout: Layout, image: np.ndarray, records: Sequence[dict],
                 detections: Sequence[dict] = ()) -> np.ndarray:  # fmt: skip
    """float32 [H', W, 3] in 0..1: ``image`` (uint8 [H, W, 3]) with ``layout`` (static, scaled to the image), the
    instance ``records`` of this image and its ``detections`` (``layout_check.score``'s report entries)."""
    h, w = image.shape[:2]
    lay = copy.deepcopy(layout).scaled(w, h)
    by_number = {r["instance"]: r for r in records}
    for number, inst in enumerate(lay.instances, start=1):
        if number in by_number:  # the verdict leads the legend line
            inst.description = _verdict(by_number[number]) + inst.description
    out = render_layout(lay, underlay=image.astype(np.float32) / 255.0, opacity=0.2, legend=True)
    canvas = Image.fromarray((out * 255).round().astype(np.uint8))
    sx = sy = canvas.width / w  # the renderer draws at the image's size (scaled down past 2048 px), legend below
    draw = ImageDraw.Draw(canvas)
    lw = max(2, round(min(w, h) / 200))
    font = _font(max(11, round(min(w, h) / 32)))
    matched = set()
    for r in records:
        col = {True: HIT, False: MISS, None: UNKNOWN}[r["hit"]]
        if r["detection"] is not None:
            x0, y0, x1, y1 = r["detection"]["box"]
            draw.rectangle([x0 * sx, y0 * sy, x1 * sx, y1 * sy], outline=col, width=lw)
            matched.add(tuple(round(v, 2) for v in r["detection"]["box"]))
        x0, _, _, y1 = r["box"]
        tag = f"{r['instance']} " + {True: "hit", False: "miss", None: "?"}[r["hit"]]
        tb = draw.textbbox((0, 0), tag, font=font)
        tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 6
        tx = min(max(0.0, x0 * sx), canvas.width - tw)
        ty = min(max(0.0, y1 * sy - th), max(0.0, h * sy - th))
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=col)
        draw.text((tx + 3, ty + 3 - tb[1]), tag, fill=(0, 0, 0), font=font)
    for d in detections:
        if tuple(round(float(v), 2) for v in d["box"]) not in matched:
            x0, y0, x1, y1 = d["box"]
            draw.rectangle([x0 * sx, y0 * sy, x1 * sx, y1 * sy], outline=(255, 255, 255), width=1)
    return np.asarray(canvas, dtype=np.float32) / 255.0
