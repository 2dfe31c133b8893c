"""Synthetic scenes for the metric tests: layouts with known geometry and images drawn from them."""

from __future__ import annotations

import numpy as np

from core.layout import Instance, Layout, Region
from evaluate.metrics.detection import Detection

RGB = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "white": (255, 255, 255)}


def box_instance(desc: str, box: tuple[float, float, float, float], label: str = "", **kw) -> Instance:
    return Instance(description=desc, label=label, regions=[Region("box", box=box)], **kw)


def draw(size: tuple[int, int], shapes: list[tuple[tuple[int, int, int, int], str]]) -> np.ndarray:
    """A [H, W, 3] uint8 image, grey background, with filled xyxy rectangles of named colours (in order)."""
    w, h = size
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    for (x0, y0, x1, y1), colour in shapes:
        img[y0:y1, x0:x1] = RGB[colour]
    return img


def two_boxes() -> Layout:
    """A 100 x 80 canvas with a red ball (10..40, 10..50) and a blue cube (60..90, 20..70)."""
    return Layout(100, 80, "a ball and a cube", [
        box_instance("red ball", (10, 10, 40, 50), label="ball"),
        box_instance("blue cube", (60, 20, 90, 70), label="cube"),
    ])  # fmt: skip


class ColourDetector:
    """A real, deterministic detector for drawn scenes: each queried category is found as the bounding box of the
    pixels of its colour (``colour_of``: category -> a name in ``RGB``; a category that is itself a colour name needs
    no entry), score 1; nothing when no pixel has that colour."""

    def __init__(self, colour_of: dict[str, str] | None = None):
        self.colour_of = dict(colour_of or {})

    def detect(self, images, queries):
        out = []
        for im, qs in zip(images, queries):
            found = []
            for q in qs:
                ys, xs = np.nonzero(np.all(im == np.array(RGB[self.colour_of.get(q, q)], np.uint8), axis=-1))
                if len(xs):
                    found.append(Detection((float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                            float(ys.max() + 1)), 1.0, q))  # fmt: skip
            out.append(found)
        return out
