"""COCO run-length encoding of binary masks, re-implemented without pycocotools.

A COCO RLE is ``{"size": [height, width], "counts": ...}``. The mask is flattened in column-major (Fortran)
order and ``counts`` holds alternating run lengths, starting with a run of zeros (possibly of length 0).
``counts`` is either a list of ints or COCO's compressed string: each count (from the fourth on, as the
difference to the count two places before) is written as little-endian 5-bit groups, each group a character
``48 + g`` where bit 0x20 of ``g`` says "more groups follow" and bit 0x10 of the last group is the sign.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SIDE = 16384  # largest mask side accepted, matching ComfyUI's MAX_RESOLUTION


class RLEError(ValueError):
    """A malformed RLE; the message says what is wrong and what would be right."""


def _runs(flat: np.ndarray) -> list[int]:
    """Alternating run lengths of a flat bool vector, starting with zeros."""
    n = flat.size
    if n == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [n]))
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def counts_to_string(counts: list[int]) -> str:
    """Compress a list of run lengths into COCO's string form."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            g = x & 0x1F
            x >>= 5
            more = (x != -1) if (g & 0x10) else (x != 0)
            if more:
                g |= 0x20
            out.append(chr(g + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Decode COCO's compressed counts string into run lengths; raises RLEError on malformed input."""
    counts: list[int] = []
    x = k = 0
    pending = False
    for pos, ch in enumerate(s):
        g = ord(ch) - 48
        if not 0 <= g < 64:
            raise RLEError(
                f"counts string has character {ch!r} at position {pos}; expected characters '0'..'o' (ASCII 48..111)"
            )
        if k > 12:
            raise RLEError(f"counts string has a run longer than 13 groups at position {pos}; the value is too large")
        x |= (g & 0x1F) << (5 * k)
        k += 1
        pending = bool(g & 0x20)
        if not pending:
            if g & 0x10:
                x |= -1 << (5 * k)
            if len(counts) > 2:
                x += counts[-2]
            counts.append(x)
            x = k = 0
    if pending:
        raise RLEError("counts string ends in the middle of a value (last character has the continuation bit 0x20)")
    return counts


def rle_encode(mask: Any, compress: bool = True) -> dict:
    """Encode a 2-D binary mask (array-like, shape (h, w)) as a COCO RLE dict.

    ``compress=True`` gives the string form of ``counts``, ``False`` the list of ints.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise RLEError(f"mask must be 2-D (height, width), got shape {tuple(m.shape)}")
    flat = np.asarray(m, dtype=bool).reshape(-1, order="F")
    counts = _runs(flat)
    h, w = (int(s) for s in m.shape)
    return {"size": [h, w], "counts": counts_to_string(counts) if compress else counts}


def rle_size(rle: Any) -> tuple[int, int]:
    """Validated (height, width) of an RLE dict."""
    if not isinstance(rle, dict):
        raise RLEError(f"RLE must be an object {{'size': [h, w], 'counts': ...}}, got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise RLEError("RLE needs both 'size' ([height, width]) and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise RLEError(f"RLE 'size' must be [height, width] as two integers, got {size!r}")
    h, w = size
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise RLEError(f"RLE 'size' {list(size)} must have both sides in 1..{MAX_SIDE}")
    return h, w


def rle_counts(rle: Any) -> list[int]:
    """Validated run lengths of an RLE dict (sum equals height * width, none negative)."""
    h, w = rle_size(rle)
    c = rle["counts"]
    if isinstance(c, bytes):
        try:
            c = c.decode("ascii")
        except UnicodeDecodeError as e:
            raise RLEError("RLE 'counts' bytes are not ASCII") from e
    if isinstance(c, str):
        counts = string_to_counts(c)
    elif isinstance(c, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in c):
            raise RLEError("RLE 'counts' list must hold only integers")
        counts = [int(v) for v in c]
    else:
        raise RLEError(f"RLE 'counts' must be a string or a list of integers, got {type(c).__name__}")
    for i, v in enumerate(counts):
        if v < 0:
            raise RLEError(f"RLE counts[{i}] = {v} is negative; run lengths must be >= 0")
    total = sum(counts)
    if total != h * w:
        raise RLEError(f"RLE counts sum to {total} but size {h}x{w} needs {h * w}")
    return counts


def rle_decode(rle: dict) -> np.ndarray:
    """Decode a COCO RLE dict into a bool array of shape (height, width); raises RLEError if malformed."""
    h, w = rle_size(rle)
    counts = rle_counts(rle)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")
