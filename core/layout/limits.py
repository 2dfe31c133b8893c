"""Layout limits (docs/layout-format.md#limits) and the error every invalid layout raises.

Every prompt is untrusted and ComfyUI runs one prompt at a time, so a layout that passes validation must be cheap to
parse, draw and preview: these bound every loop and allocation. :class:`Budget` keeps the layout-wide totals while a
layout is parsed or validated, so that a document over a limit is refused before the rest of it is decoded.
"""

from __future__ import annotations

from typing import Any

from ..rle import MAX_SIDE

MAX_FRAMES = 1024  # frame indices are 0..MAX_FRAMES-1; a layout's "frames" count is 1..MAX_FRAMES
MAX_KEYFRAMES = MAX_FRAMES  # per instance (frames are unique, so this is also implied by MAX_FRAMES)
MAX_CANVAS = MAX_SIDE
MAX_INSTANCES = 64  # instances per layout (enabled or not); back-ends allow fewer enabled ones (10, 30)
MAX_REGIONS_PER_INSTANCE = 16
MAX_REGIONS = 256  # regions in the whole layout
# keyframe regions in the whole layout: a track is one region per frame, so every track an importer admits (64
# objects x 1,024 frames) fits; keyframe regions count in the layout's points, mask pixels and RLE length as well
MAX_KEYFRAME_REGIONS = MAX_INSTANCES * MAX_FRAMES
MAX_DESCRIPTION_CHARS = 2000  # CLIP reads 75 tokens per chunk; 2000 characters is far more than any back-end uses
MAX_LABEL_CHARS = 200
MAX_PROMPT_CHARS = 10000
MAX_POINTS_PER_REGION = 1024  # polygon / scribble points
MAX_POINTS = 2048  # polygon, scribble and point points in the whole layout
MAX_STROKE_WIDTH = 2 * MAX_CANVAS  # scribble stroke width / point radius in pixels (wider covers any canvas)
MAX_MASK_PIXELS = 4096 * 4096  # decoded size mh * mw of one mask (the editor stores masks at 512 x 512)
MAX_MASK_PIXELS_TOTAL = 4 * 4096 * 4096  # all masks of a layout
MAX_RLE_CHARS = 1 << 18  # characters (string form) or counts (list form) of all masks' RLE in a layout
MAX_JSON_CHARS = 16 << 20  # layout JSON text
MAX_JSON_DEPTH = 64  # nesting of objects and lists, unknown fields included
LIMITS_DOC = "docs/layout-format.md#limits"


class LayoutError(ValueError):
    """An invalid layout. The message names the instance (number from 1 and description) and the field at fault."""


def over(where: str, what: str, n: int, limit: int) -> LayoutError:
    return LayoutError(f"{where}: {what} is {n}; at most {limit} allowed (see {LIMITS_DOC})")


class Budget:
    """Running totals while a layout is parsed, so that a document over a layout-wide limit is refused before the
    rest of it is decoded (a mask's RLE is only decoded once the totals so far allow it)."""

    def __init__(self) -> None:
        self.regions = self.keyframe_regions = self.points = self.mask_pixels = self.rle_chars = 0

    def take(self, field_: str, n: int, where: str) -> None:
        limit, what = {"regions": (MAX_REGIONS, "the number of regions in the layout"),
                       "keyframe_regions": (MAX_KEYFRAME_REGIONS, "the number of keyframe regions in the layout"),
                       "points": (MAX_POINTS, "the number of points in the layout"),
                       "mask_pixels": (MAX_MASK_PIXELS_TOTAL, "the number of mask pixels in the layout"),
                       "rle_chars": (MAX_RLE_CHARS, "the length of all RLE counts in the layout")}[field_]  # fmt: skip
        total = getattr(self, field_) + n
        if total > limit:
            raise over(where, f"{what} (with this one)", total, limit)
        setattr(self, field_, total)


def check_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (walked without recursion, so any depth gives a LayoutError)."""
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, dict):
            children = o.values()
        elif isinstance(o, (list, tuple)):
            children = o
        else:
            continue
        if depth > limit:
            raise LayoutError(f"layout JSON is nested {depth}+ levels deep; at most {limit} allowed (see {LIMITS_DOC})")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list, tuple)))

