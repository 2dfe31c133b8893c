"""Reading JSON values into a layout: numbers, points, RLE masks, frame indices, unknown fields; and how a person
names an instance in a message (counted from 1)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np

from ..rle import RLEError, rle_decode, rle_size
from .limits import LIMITS_DOC, MAX_FRAMES, MAX_MASK_PIXELS, MAX_RLE_CHARS, MAX_STROKE_WIDTH, Budget, LayoutError, over


def _who(index: int | None, description: Any = None) -> str:
    """How a person names an instance: "instance 3 ("a red car")" for 0-based list ``index`` 2.

    People (and the editor, the preview and the docs) count instances from 1; ``index`` is the list position.
    """
    if index is None:
        return "layout"
    if isinstance(description, str) and description.strip():
        d = description.strip()
        d = d if len(d) <= 40 else d[:37] + "..."
        return f'instance {index + 1} ("{d}")'
    return f"instance {index + 1}"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _show(v: Any) -> str:
    """``repr(v)`` for a message, short: an integer too large for a float by its size, anything else cut at 60."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 1024:
        return f"an integer of {v.bit_length()} bits"
    try:
        s = repr(v)
    except ValueError:  # e.g. an integer past Python's digit limit inside a container
        s = f"a {type(v).__name__}"
    return s if len(s) <= 60 else s[:57] + "..."


def _num(v: Any, where: str) -> float | int:
    """A finite JSON number; ints stay ints so that round-trips are exact."""
    if not _is_num(v):
        raise LayoutError(f"{where} must be a number, got {_show(v)}")
    try:
        f = float(v)
    except OverflowError:
        raise LayoutError(f"{where} is {_show(v)}, too large for a number; expected a finite number") from None
    if not math.isfinite(f):
        raise LayoutError(f"{where} is {_show(v)}; expected a finite number (NaN and infinity are not allowed)")
    if isinstance(v, (int, np.integer)):
        return int(v)
    return f


def _width(v: Any, where: str) -> float | int:
    """A scribble's stroke width / a point's radius: a number in (0, MAX_STROKE_WIDTH] pixels."""
    w = _num(v, where)
    if not 0 < w <= MAX_STROKE_WIDTH:
        raise LayoutError(f"{where} is {_show(v)}; expected a stroke width / radius in pixels, > 0 and at most "
                          f"{MAX_STROKE_WIDTH} (see {LIMITS_DOC})")
    return w


def _xy(p: Any, where: str) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or len(p) != 2:
        raise LayoutError(f"{where} must be a pair [x, y], got {_show(p)}")
    return (_num(p[0], f"{where} x"), _num(p[1], f"{where} y"))


def _jsonable(extra: dict, where: str) -> dict:
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise LayoutError(f"{where}: unknown fields must be plain JSON values ({e})") from None
    return copy.deepcopy(extra)


def _out_num(v: float) -> float | int:
    return int(v) if isinstance(v, (int, np.integer)) else float(v)


# --------------------------------------------------------------------------------------------------------------


def _decode_rle(rle: Any, where: str, key: str, budget: Budget | None) -> tuple[np.ndarray, bool]:
    """(mask, compressed) of the COCO RLE in field ``key``: its size and length are checked against the limits
    before it is decoded."""
    try:
        h, w = rle_size(rle)
    except RLEError as e:
        raise LayoutError(f"{where}: malformed RLE in '{key}': {e}") from None
    if h * w > MAX_MASK_PIXELS:
        raise over(where, f"the size of the mask in '{key}' ({h}x{w}) in pixels", h * w, MAX_MASK_PIXELS)
    counts = rle["counts"]
    n = len(counts) if isinstance(counts, (str, bytes, list, tuple)) else 0
    if n > MAX_RLE_CHARS:
        raise over(where, f"the length of the RLE counts in '{key}'", n, MAX_RLE_CHARS)
    if budget is not None:
        budget.take("mask_pixels", h * w, where)
        budget.take("rle_chars", n, where)
    try:
        return rle_decode(rle), not isinstance(counts, (list, tuple))
    except RLEError as e:
        raise LayoutError(f"{where}: malformed RLE in '{key}': {e}") from None


def _frame_index(v: Any, where: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or not 0 <= v < MAX_FRAMES:
        raise LayoutError(f"{where} is {_show(v)}; expected an integer frame index in 0..{MAX_FRAMES - 1}")
    return int(v)

