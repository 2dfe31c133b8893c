"""The instance layout: canvas, global prompt and instances with regions, its JSON format and rasterisation.

This is the one object every back-end reads (IFAdapter boxes, InstanceDiffusion boxes/masks/scribbles/points)
and the one the editor widget writes. Coordinates are canvas pixels: origin top-left, x right, y down.
The JSON format is documented in docs/layout-format.md ("format": "instance-layout", "version": 1, or 2 when the
layout is time-aware: instance ``keyframes`` / ``frames`` and the layout's ``frames``; core/timeline.py reads them).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import raster
from .raster import box_cells, rasterize_boxes  # noqa: F401  (part of this module's API)
from .rle import MAX_SIDE, RLEError, rle_decode, rle_encode, rle_size

FORMAT = "instance-layout"
VERSION = 1  # written for static layouts, so that they keep loading in older builds
VERSION_TIMED = 2  # written when any time field (keyframes, visible frames, frame count) is used
READ_VERSIONS = (1, 2)
MAX_FRAMES = 1024  # frame indices are 0..MAX_FRAMES-1; a layout's "frames" count is 1..MAX_FRAMES
MAX_KEYFRAMES = MAX_FRAMES  # per instance (frames are unique, so this is also implied by MAX_FRAMES)
REGION_KINDS = ("box", "polygon", "mask", "scribble", "point")
MAX_CANVAS = MAX_SIDE
DEFAULT_WIDTH = 4.0

# Limits (docs/layout-format.md#limits). Every prompt is untrusted and ComfyUI runs one prompt at a time, so a
# layout that passes validation must be cheap to parse, draw and preview: these bound every loop and allocation.
MAX_INSTANCES = 64  # instances per layout (enabled or not); back-ends allow fewer enabled ones (10, 30)
MAX_REGIONS_PER_INSTANCE = 16
MAX_REGIONS = 256  # regions in the whole layout
MAX_DESCRIPTION_CHARS = 2000  # CLIP reads 75 tokens per chunk; 2000 characters is far more than any back-end uses
MAX_LABEL_CHARS = 200
MAX_PROMPT_CHARS = 10000
MAX_POINTS_PER_REGION = 1024  # polygon / scribble points
MAX_POINTS = 2048  # polygon, scribble and point points in the whole layout
MAX_MASK_PIXELS = 4096 * 4096  # decoded size mh * mw of one mask (the editor stores masks at 512 x 512)
MAX_MASK_PIXELS_TOTAL = 4 * 4096 * 4096  # all masks of a layout
MAX_RLE_CHARS = 1 << 18  # characters (string form) or counts (list form) of all masks' RLE in a layout
MAX_JSON_CHARS = 16 << 20  # layout JSON text
MAX_JSON_DEPTH = 64  # nesting of objects and lists, unknown fields included
LIMITS_DOC = "docs/layout-format.md#limits"
# 20 distinct colours (Trubetskoy's list), used for instances that carry none.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe",
    "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080",
)  # fmt: skip
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")

_REGION_KEYS = {
    "box": ("kind", "box"),
    "polygon": ("kind", "points"),
    "mask": ("kind", "rle"),
    "scribble": ("kind", "points", "width"),
    "point": ("kind", "point", "width"),
}
_INSTANCE_KEYS = ("description", "label", "enabled", "weight", "z", "color", "regions", "keyframes", "frames")
_LAYOUT_KEYS = ("format", "version", "width", "height", "prompt", "instances", "frames")


class LayoutError(ValueError):
    """An invalid layout. The message names the instance (number from 1 and description) and the field at fault."""


def _over(where: str, what: str, n: int, limit: int) -> LayoutError:
    return LayoutError(f"{where}: {what} is {n}; at most {limit} allowed (see {LIMITS_DOC})")


class _Budget:
    """Running totals while a layout is parsed, so that a document over a layout-wide limit is refused before the
    rest of it is decoded (a mask's RLE is only decoded once the totals so far allow it)."""

    def __init__(self) -> None:
        self.regions = self.points = self.mask_pixels = self.rle_chars = 0

    def take(self, field_: str, n: int, where: str) -> None:
        limit, what = {"regions": (MAX_REGIONS, "the number of regions in the layout"),
                       "points": (MAX_POINTS, "the number of points in the layout"),
                       "mask_pixels": (MAX_MASK_PIXELS_TOTAL, "the number of mask pixels in the layout"),
                       "rle_chars": (MAX_RLE_CHARS, "the length of all RLE counts in the layout")}[field_]  # fmt: skip
        total = getattr(self, field_) + n
        if total > limit:
            raise _over(where, f"{what} (with this one)", total, limit)
        setattr(self, field_, total)


def _decode_rle(rle: Any, where: str, key: str, budget: _Budget | None) -> tuple[np.ndarray, bool]:
    """(mask, compressed) of the COCO RLE in field ``key``: its size and length are checked against the limits
    before it is decoded."""
    try:
        h, w = rle_size(rle)
    except RLEError as e:
        raise LayoutError(f"{where}: malformed RLE in '{key}': {e}") from None
    if h * w > MAX_MASK_PIXELS:
        raise _over(where, f"the size of the mask in '{key}' ({h}x{w}) in pixels", h * w, MAX_MASK_PIXELS)
    counts = rle["counts"]
    n = len(counts) if isinstance(counts, (str, bytes, list, tuple)) else 0
    if n > MAX_RLE_CHARS:
        raise _over(where, f"the length of the RLE counts in '{key}'", n, MAX_RLE_CHARS)
    if budget is not None:
        budget.take("mask_pixels", h * w, where)
        budget.take("rle_chars", n, where)
    try:
        return rle_decode(rle), not isinstance(counts, (list, tuple))
    except RLEError as e:
        raise LayoutError(f"{where}: malformed RLE in '{key}': {e}") from None


def _check_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> None:
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


# --------------------------------------------------------------------------------------------------------------
# small helpers


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


def _num(v: Any, where: str) -> float | int:
    """A finite JSON number; ints stay ints so that round-trips are exact."""
    if not _is_num(v):
        raise LayoutError(f"{where} must be a number, got {v!r}")
    try:
        f = float(v)
    except OverflowError:
        raise LayoutError(f"{where} = {v!r} is too large; expected a finite number") from None
    if not math.isfinite(f):
        raise LayoutError(f"{where} is {v!r}; expected a finite number (NaN and infinity are not allowed)")
    if isinstance(v, (int, np.integer)):
        return int(v)
    return f


def _xy(p: Any, where: str) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or len(p) != 2:
        raise LayoutError(f"{where} must be a pair [x, y], got {p!r}")
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
# data model


@dataclass(eq=False)
class Region:
    """One region form of an instance.

    - ``box``: (x0, y0, x1, y1) pixels.
    - ``polygon`` (>= 3 points), ``scribble`` (>= 2 points, stroke ``width`` pixels), ``point`` (exactly 1 point,
      disc radius ``width`` pixels): ``points`` as [(x, y), ...] pixels.
    - ``mask``: bool array (mh, mw) of any size, stretched over the whole canvas.
    ``extra`` keeps unknown JSON fields for the round-trip.
    """

    kind: str
    box: tuple[float, float, float, float] | None = None
    points: list[tuple[float, float]] | None = None
    mask: np.ndarray | None = None
    width: float = DEFAULT_WIDTH
    extra: dict = field(default_factory=dict)
    rle_compressed: bool = field(default=True, repr=False)  # JSON form of the mask counts: string or list

    def __post_init__(self) -> None:
        if self.mask is not None and not (isinstance(self.mask, np.ndarray) and self.mask.dtype == bool):
            m = self.mask
            if isinstance(m, torch.Tensor):
                m = m.detach().cpu().float().numpy()
            m = np.asarray(m)
            self.mask = m > 0.5 if m.dtype != bool else m
        if self.box is not None:
            self.box = tuple(self.box)
        if self.points is not None:
            self.points = [tuple(p) for p in self.points]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        if (self.mask is None) != (other.mask is None):
            return False
        if self.mask is not None and not (
            self.mask.shape == other.mask.shape and bool(np.array_equal(self.mask, other.mask))
        ):
            return False
        return (self.kind, self.box, self.points, self.width, self.extra) == (
            other.kind, other.box, other.points, other.width, other.extra,
        )  # fmt: skip

    def bbox(self, canvas: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
        """Pixel xyxy bounding box of this region.

        ``canvas`` = (width, height) maps a mask onto the canvas; without it a mask is taken at canvas resolution.
        Scribbles grow by half their stroke width, points by their radius.
        """
        if self.kind == "box":
            return tuple(float(v) for v in self.box)
        if self.kind == "mask":
            mh, mw = self.mask.shape
            cw, ch = canvas if canvas is not None else (mw, mh)
            rows = np.flatnonzero(self.mask.any(axis=1))
            cols = np.flatnonzero(self.mask.any(axis=0))
            if rows.size == 0:
                return (0.0, 0.0, 0.0, 0.0)
            sx, sy = cw / mw, ch / mh
            return (cols[0] * sx, rows[0] * sy, (cols[-1] + 1) * sx, (rows[-1] + 1) * sy)
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        grow = {"scribble": self.width / 2.0, "point": self.width}.get(self.kind, 0.0)
        x0, y0 = pts.min(axis=0) - grow
        x1, y1 = pts.max(axis=0) + grow
        return (float(x0), float(y0), float(x1), float(y1))

    # JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The region as a version-1 JSON object (unknown fields kept)."""
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind == "box":
            d["box"] = [_out_num(v) for v in self.box]
        elif self.kind in ("polygon", "scribble"):
            d["points"] = [[_out_num(x), _out_num(y)] for x, y in self.points]
            if self.kind == "scribble":
                d["width"] = _out_num(self.width)
        elif self.kind == "point":
            x, y = self.points[0]
            d["point"] = [_out_num(x), _out_num(y)]
            if self.width != DEFAULT_WIDTH:
                d["width"] = _out_num(self.width)
        elif self.kind == "mask":
            d["rle"] = rle_encode(self.mask, compress=self.rle_compressed)
        d.update(copy.deepcopy(self.extra))
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "region", budget: _Budget | None = None) -> Region:
        """Parse a version-1 region object; raises LayoutError naming ``where`` and the field.

        ``budget`` carries the layout-wide totals (points, mask pixels, RLE length) while a layout is parsed.
        """
        if not isinstance(d, dict):
            raise LayoutError(f"{where} must be an object with a 'kind', got {type(d).__name__}")
        kind = d.get("kind")
        if kind not in REGION_KINDS:
            raise LayoutError(f"{where}: unknown region kind {kind!r}; expected one of {', '.join(REGION_KINDS)}")
        where = f"{where} ({kind})"
        known = _REGION_KEYS[kind]
        extra = _jsonable({k: v for k, v in d.items() if k not in known}, where)
        r = cls(kind=kind, extra=extra)
        if kind == "box":
            b = d.get("box")
            if not isinstance(b, (list, tuple)) or len(b) != 4:
                raise LayoutError(f"{where}: 'box' must be [x0, y0, x1, y1] pixels, got {b!r}")
            r.box = tuple(_num(v, f"{where} box {n}") for v, n in zip(b, ("x0", "y0", "x1", "y1")))
        elif kind in ("polygon", "scribble"):
            pts = d.get("points")
            if not isinstance(pts, (list, tuple)):
                raise LayoutError(f"{where}: 'points' must be a list of [x, y] pixel pairs, got {pts!r}")
            if len(pts) > MAX_POINTS_PER_REGION:
                raise _over(where, "the number of points", len(pts), MAX_POINTS_PER_REGION)
            if budget is not None:
                budget.take("points", len(pts), where)
            r.points = [_xy(p, f"{where} points[{i}]") for i, p in enumerate(pts)]
        elif kind == "point":
            if budget is not None:
                budget.take("points", 1, where)
            r.points = [_xy(d.get("point"), f"{where} 'point'")]
        elif kind == "mask":
            r.mask, r.rle_compressed = _decode_rle(d.get("rle"), where, "rle", budget)
        if kind in ("scribble", "point") and "width" in d:
            r.width = _num(d["width"], f"{where} width")
        return r


@dataclass
class Instance:
    """One object to place: a free-text description, an optional short label and one or more regions."""

    description: str
    label: str = ""
    regions: list[Region] = field(default_factory=list)
    z: int = 0
    weight: float = 1.0
    enabled: bool = True
    color: str | None = None  # "#rrggbb"
    extra: dict = field(default_factory=dict)
    # time (version 2): [(frame, regions), ...] sorted by unique frame, or None (the plain regions on every frame);
    # and the visible range (first, last) inclusive, last None = to the end, or None (always visible)
    keyframes: list[tuple[int, list[Region]]] | None = None
    frames: tuple[int, int | None] | None = None

    @property
    def timed(self) -> bool:
        """Whether this instance uses a time field (keyframes or a visible range)."""
        return self.keyframes is not None or self.frames is not None

    def region(self, kind: str) -> Region | None:
        """The first region of that kind, or None."""
        return next((r for r in self.regions if r.kind == kind), None)

    def bbox(self, canvas: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
        """Pixel xyxy box: the explicit box if present, else the bounding box of the union of all regions.

        ``canvas`` = (width, height) places masks on the canvas and clips the result to it.
        """
        b = self.region("box")
        if b is not None:
            box = b.bbox(canvas)
        elif not self.regions:
            return (0.0, 0.0, 0.0, 0.0)
        else:
            boxes = np.array([r.bbox(canvas) for r in self.regions], dtype=np.float64)
            box = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
        if canvas is not None:
            cw, ch = canvas
            box = (min(max(box[0], 0), cw), min(max(box[1], 0), ch), min(max(box[2], 0), cw), min(max(box[3], 0), ch))
        return tuple(float(v) for v in box)

    def to_dict(self) -> dict:
        """The instance as a version-1 JSON object (unknown fields kept)."""
        d = {
            "description": self.description,
            "label": self.label,
            "enabled": self.enabled,
            "weight": _out_num(self.weight),
            "z": int(self.z),
            "color": self.color,
            "regions": [r.to_dict() for r in self.regions],
        }
        if self.keyframes is not None:
            d["keyframes"] = [{"frame": int(f), "regions": [r.to_dict() for r in regs]} for f, regs in self.keyframes]
        if self.frames is not None:
            d["frames"] = [int(self.frames[0]), None if self.frames[1] is None else int(self.frames[1])]
        d.update(copy.deepcopy(self.extra))
        return d

    @classmethod
    def from_dict(cls, d: Any, index: int = 0, budget: _Budget | None = None) -> Instance:
        """Parse a version-1 instance object (``index`` its 0-based place in the layout); raises LayoutError naming
        the instance (counted from 1) and the field."""
        if not isinstance(d, dict):
            raise LayoutError(f"instance {index + 1} must be an object, got {type(d).__name__}")
        desc = d.get("description")
        who = _who(index, desc)
        if "description" not in d:
            raise LayoutError(f"{who}: missing 'description' (the free-text description of the object)")
        if not isinstance(desc, str):
            raise LayoutError(f"{who}: 'description' must be a string, got {type(desc).__name__}")
        if len(desc) > MAX_DESCRIPTION_CHARS:
            raise _over(who, "the length of 'description' in characters", len(desc), MAX_DESCRIPTION_CHARS)
        label = d.get("label", "")
        if not isinstance(label, str):
            raise LayoutError(f"{who}: 'label' must be a string, got {type(label).__name__}")
        if len(label) > MAX_LABEL_CHARS:
            raise _over(who, "the length of 'label' in characters", len(label), MAX_LABEL_CHARS)
        enabled = d.get("enabled", True)
        if not isinstance(enabled, bool):
            raise LayoutError(f"{who}: 'enabled' must be true or false, got {enabled!r}")
        weight = _num(d.get("weight", 1.0), f"{who}: 'weight'")
        z = d.get("z", 0)
        if not isinstance(z, int) or isinstance(z, bool):
            raise LayoutError(f"{who}: 'z' must be an integer, got {z!r}")
        color = d.get("color")
        if color is not None and (not isinstance(color, str) or not _COLOR_RE.match(color)):
            raise LayoutError(f"{who}: 'color' must be '#rrggbb' or null, got {color!r}")
        regions = d.get("regions", [] if "keyframes" in d else None)  # keyframed instances may omit it
        if not isinstance(regions, (list, tuple)):
            raise LayoutError(f"{who}: 'regions' must be a list of region objects, got {regions!r}")
        if len(regions) > MAX_REGIONS_PER_INSTANCE:
            raise _over(who, "the number of 'regions'", len(regions), MAX_REGIONS_PER_INSTANCE)
        if budget is not None:
            budget.take("regions", len(regions), who)
        regs = [Region.from_dict(r, f"{who}: regions[{i}]", budget) for i, r in enumerate(regions)]
        keyframes = _keyframes_from_json(d["keyframes"], who) if "keyframes" in d else None
        frames = _frame_range_from_json(d["frames"], who) if "frames" in d else None
        extra = _jsonable({k: v for k, v in d.items() if k not in _INSTANCE_KEYS}, who)
        return cls(desc, label, regs, z, weight, enabled, color, extra, keyframes, frames)


def _frame_index(v: Any, where: str) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or not 0 <= v < MAX_FRAMES:
        raise LayoutError(f"{where} is {v!r}; expected an integer frame index in 0..{MAX_FRAMES - 1}")
    return int(v)


def _keyframes_from_json(kfs: Any, who: str) -> list[tuple[int, list[Region]]]:
    """Parse an instance's "keyframes" list (types only; order and limits are checked by validate())."""
    if not isinstance(kfs, (list, tuple)):
        raise LayoutError(f"{who}: 'keyframes' must be a list of {{\"frame\", \"regions\"}} objects, got {kfs!r}")
    if len(kfs) > MAX_KEYFRAMES:
        raise LayoutError(f"{who}: {len(kfs)} keyframes; at most {MAX_KEYFRAMES} per instance")
    out = []
    for k, kf in enumerate(kfs):
        where = f"{who}: keyframes[{k}]"
        if not isinstance(kf, dict) or "frame" not in kf or not isinstance(kf.get("regions"), (list, tuple)):
            raise LayoutError(f"{where} must be an object {{\"frame\": int, \"regions\": [...]}}, got {kf!r}")
        f = _frame_index(kf["frame"], f"{where} 'frame'")
        out.append((f, [Region.from_dict(r, f"{where} (frame {f}) regions[{i}]") for i, r in enumerate(kf["regions"])]))
    return out


def _frame_range_from_json(v: Any, who: str) -> tuple[int, int | None]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise LayoutError(f"{who}: 'frames' must be [first, last] (inclusive; last may be null), got {v!r}")
    return (_frame_index(v[0], f"{who}: 'frames' first"),
            None if v[1] is None else _frame_index(v[1], f"{who}: 'frames' last"))


@dataclass
class Layout:
    """A canvas (pixels), an optional global prompt and an ordered list of instances."""

    width: int
    height: int
    prompt: str = ""
    instances: list[Instance] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    frames: int | None = None  # the frame count the layout was drawn for (version 2), or None

    @property
    def timed(self) -> bool:
        """Whether this layout uses a time field (written as version 2; core.timeline resolves frames)."""
        return self.frames is not None or any(inst.timed for inst in self.instances)

    # JSON ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text_or_dict: str | bytes | dict) -> Layout:
        """Parse and validate a layout.

        Accepts the native format (a JSON string or dict with "format": "instance-layout") and auto-detects the
        InstanceDiffusion demo JSON ("annos") and the IFAdapter sample layouts ("annotations").
        Returns a valid layout or raises LayoutError, never another exception.
        """
        d = text_or_dict
        if isinstance(d, (str, bytes, bytearray)):
            if len(d) > MAX_JSON_CHARS:
                raise _over("layout", "the length of the JSON text", len(d), MAX_JSON_CHARS)
            try:
                d = json.loads(d)
            except RecursionError:
                raise LayoutError(f"layout JSON is nested too deeply to read; at most {MAX_JSON_DEPTH} levels "
                                  f"allowed (see {LIMITS_DOC})") from None
            except ValueError as e:
                raise LayoutError(f"layout is not valid JSON: {e}") from None
        _check_depth(d)
        if not isinstance(d, dict):
            raise LayoutError(f"layout must be a JSON object, got {type(d).__name__}")
        if "format" in d:
            if d["format"] != FORMAT:
                raise LayoutError(f"layout 'format' is {d['format']!r}; expected {FORMAT!r}")
            layout = cls.from_dict(d)
        elif "annos" in d:
            layout = from_instancediffusion_json(d)
        elif "annotations" in d:
            layout = from_ifadapter_json(d)
        else:
            raise LayoutError(
                f"unrecognised layout JSON (keys {sorted(map(str, d))[:8]}); expected 'format': {FORMAT!r}, "
                "an InstanceDiffusion demo ('annos') or an IFAdapter sample ('annotations')"
            )
        return layout.validate()

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        """Parse a native version-1 or -2 dict (types only; call validate() for the geometry checks)."""
        version = d.get("version")
        if version not in READ_VERSIONS or isinstance(version, bool):
            newer = _is_num(version) and version > max(READ_VERSIONS)
            raise LayoutError(f"layout 'version' is {version!r}; this build reads versions 1 and 2"
                              + ("; the layout was written by a newer build, update this pack" if newer else ""))
        size = []
        for key in ("width", "height"):
            v = d.get(key)
            if not isinstance(v, int) or isinstance(v, bool):
                raise LayoutError(f"layout '{key}' must be an integer number of pixels, got {v!r}")
            size.append(v)
        prompt = d.get("prompt", "")
        if not isinstance(prompt, str):
            raise LayoutError(f"layout 'prompt' must be a string, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _over("layout", "the length of 'prompt' in characters", len(prompt), MAX_PROMPT_CHARS)
        insts = d.get("instances", [])
        if not isinstance(insts, (list, tuple)):
            raise LayoutError(f"layout 'instances' must be a list, got {type(insts).__name__}")
        if len(insts) > MAX_INSTANCES:
            raise _over("layout", "the number of 'instances'", len(insts), MAX_INSTANCES)
        budget = _Budget()
        instances = [Instance.from_dict(x, i, budget) for i, x in enumerate(insts)]
        frames = d.get("frames")
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool)
                                   or not 1 <= frames <= MAX_FRAMES):
            raise LayoutError(f"layout 'frames' is {frames!r}; expected the frame count, an integer in 1..{MAX_FRAMES}")
        extra = _jsonable({k: v for k, v in d.items() if k not in _LAYOUT_KEYS}, "layout")
        return cls(size[0], size[1], prompt, instances, extra, frames)

    def to_dict(self) -> dict:
        """The layout as a JSON object (version 1, or 2 when it uses time fields); instances without a colour get
        their palette colour."""
        d = {"format": FORMAT, "version": VERSION_TIMED if self.timed else VERSION, "width": int(self.width),
             "height": int(self.height), "prompt": self.prompt, "instances": []}  # fmt: skip
        if self.frames is not None:
            d["frames"] = int(self.frames)
        for i, inst in enumerate(self.instances):
            di = inst.to_dict()
            if di["color"] is None:
                di["color"] = PALETTE[i % len(PALETTE)]
            d["instances"].append(di)
        d.update(copy.deepcopy(self.extra))
        return d

    def to_json(self, indent: int | None = None) -> str:
        """to_dict() as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # validation ---------------------------------------------------------------------------------------------
    def validate(self, max_instances: int | None = None, backend: str = "") -> Layout:
        """Check the whole layout and return it; raise LayoutError naming the instance and field at fault.

        Also fills missing colours from PALETTE. ``max_instances`` is the back-end's limit on enabled instances
        (e.g. 30 for InstanceDiffusion), ``backend`` its name for the message.
        """
        for key, v in (("width", self.width), ("height", self.height)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= MAX_CANVAS:
                raise LayoutError(f"layout '{key}' is {v!r}; expected an integer number of pixels in 1..{MAX_CANVAS}")
        if self.frames is not None and (not isinstance(self.frames, (int, np.integer)) or isinstance(self.frames, bool)
                                        or not 1 <= self.frames <= MAX_FRAMES):
            raise LayoutError(f"layout 'frames' is {self.frames!r}; expected an integer in 1..{MAX_FRAMES}")
        if not isinstance(self.prompt, str):
            raise LayoutError(f"layout 'prompt' must be a string, got {type(self.prompt).__name__}")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise _over("layout", "the length of 'prompt' in characters", len(self.prompt), MAX_PROMPT_CHARS)
        if len(self.instances) > MAX_INSTANCES:
            raise _over("layout", "the number of 'instances'", len(self.instances), MAX_INSTANCES)
        budget = _Budget()
        for i, inst in enumerate(self.instances):
            self._validate_instance(i, inst, budget)
            if inst.color is None:
                inst.color = PALETTE[i % len(PALETTE)]
        if max_instances is not None:
            n = len(self.active())
            if n > max_instances:
                who = f"back-end {backend!r}" if backend else "this back-end"
                raise LayoutError(
                    f"layout has {n} enabled instances but {who} allows at most {max_instances}; "
                    "disable or merge some instances"
                )
        return self

    def _validate_instance(self, i: int, inst: Instance, budget: _Budget) -> None:
        who = _who(i, inst.description)
        if not isinstance(inst, Instance):
            raise LayoutError(f"instance {i + 1} must be an Instance, got {type(inst).__name__}")
        if not isinstance(inst.description, str):
            raise LayoutError(f"{who}: 'description' must be a string, got {type(inst.description).__name__}")
        if len(inst.description) > MAX_DESCRIPTION_CHARS:
            raise _over(who, "the length of 'description' in characters", len(inst.description), MAX_DESCRIPTION_CHARS)
        if not isinstance(inst.label, str):
            raise LayoutError(f"{who}: 'label' must be a string")
        if len(inst.label) > MAX_LABEL_CHARS:
            raise _over(who, "the length of 'label' in characters", len(inst.label), MAX_LABEL_CHARS)
        _num(inst.weight, f"{who}: 'weight'")
        if inst.weight < 0:
            raise LayoutError(f"{who}: 'weight' is {inst.weight}; expected a number >= 0")
        if not isinstance(inst.z, (int, np.integer)) or isinstance(inst.z, bool):
            raise LayoutError(f"{who}: 'z' must be an integer, got {inst.z!r}")
        if not isinstance(inst.enabled, bool):
            raise LayoutError(f"{who}: 'enabled' must be a bool, got {inst.enabled!r}")
        if inst.color is not None and (not isinstance(inst.color, str) or not _COLOR_RE.match(inst.color)):
            raise LayoutError(f"{who}: 'color' must be '#rrggbb' or null, got {inst.color!r}")
        if inst.enabled and not inst.regions and not inst.keyframes:
            raise LayoutError(f"{who}: 'regions' is empty; give at least one box, polygon, mask, scribble or point")
        if len(inst.regions) > MAX_REGIONS_PER_INSTANCE:
            raise _over(who, "the number of 'regions'", len(inst.regions), MAX_REGIONS_PER_INSTANCE)
        budget.take("regions", len(inst.regions), who)
        for j, r in enumerate(inst.regions):
            self._validate_region(f"{who}: regions[{j}]", r, budget)
        self._validate_time(who, inst, budget)

    def _validate_time(self, who: str, inst: Instance, budget=None) -> None:
        """Keyframes: at most MAX_KEYFRAMES, frames unique, ascending, in range, regions valid (non-empty when
        enabled); visible range: first <= last, both frame indices."""
        if inst.frames is not None:
            if not isinstance(inst.frames, (list, tuple)) or len(inst.frames) != 2:
                raise LayoutError(f"{who}: 'frames' must be (first, last), got {inst.frames!r}")
            first = _frame_index(inst.frames[0], f"{who}: 'frames' first")
            if inst.frames[1] is not None and _frame_index(inst.frames[1], f"{who}: 'frames' last") < first:
                raise LayoutError(f"{who}: 'frames' [{first}, {inst.frames[1]}] ends before it starts; expected "
                                  "first <= last")
        if inst.keyframes is None:
            return
        if not isinstance(inst.keyframes, (list, tuple)):
            raise LayoutError(f"{who}: 'keyframes' must be a list of (frame, regions), got {inst.keyframes!r}")
        if len(inst.keyframes) > MAX_KEYFRAMES:
            raise LayoutError(f"{who}: {len(inst.keyframes)} keyframes; at most {MAX_KEYFRAMES} per instance")
        prev = -1
        for k, kf in enumerate(inst.keyframes):
            if not isinstance(kf, (list, tuple)) or len(kf) != 2 or not isinstance(kf[1], (list, tuple)):
                raise LayoutError(f"{who}: keyframes[{k}] must be (frame, [regions]), got {kf!r}")
            f = _frame_index(kf[0], f"{who}: keyframes[{k}] 'frame'")
            if f <= prev:
                raise LayoutError(f"{who}: keyframes[{k}] is at frame {f} after frame {prev}; keyframes must be "
                                  "sorted by frame with no frame twice")
            prev = f
            if inst.enabled and not kf[1]:
                raise LayoutError(f"{who}: keyframes[{k}] (frame {f}) has no region; give at least one")
            for j, r in enumerate(kf[1]):
                self._validate_region(f"{who}: keyframes[{k}] (frame {f}) regions[{j}]", r, budget)

    def _validate_region(self, where: str, r: Region, budget: _Budget) -> None:
        W, H = self.width, self.height
        if not isinstance(r, Region):
            raise LayoutError(f"{where} must be a Region, got {type(r).__name__}")
        if r.kind not in REGION_KINDS:
            raise LayoutError(f"{where}: unknown region kind {r.kind!r}; expected one of {', '.join(REGION_KINDS)}")
        where = f"{where} ({r.kind})"

        def inside(v: float, name: str, hi: int, axis: str) -> None:
            if not 0 <= v <= hi:
                raise LayoutError(f"{where}: {name}={v} is outside the canvas 0..{hi} ({axis})")

        if r.kind == "box":
            if r.box is None or len(r.box) != 4:
                raise LayoutError(f"{where}: 'box' must be (x0, y0, x1, y1) pixels, got {r.box!r}")
            x0, y0, x1, y1 = (_num(v, f"{where} box {n}") for v, n in zip(r.box, ("x0", "y0", "x1", "y1")))
            for v, n, hi, ax in ((x0, "x0", W, "width"), (y0, "y0", H, "height"), (x1, "x1", W, "width"),
                                 (y1, "y1", H, "height")):  # fmt: skip
                inside(v, n, hi, ax)
            if not (x1 > x0 and y1 > y0):
                raise LayoutError(
                    f"{where}: box ({x0}, {y0}, {x1}, {y1}) has zero or negative area; expected x0 < x1 and y0 < y1"
                )
            return
        if r.kind == "mask":
            m = r.mask
            if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype != bool:
                raise LayoutError(f"{where}: 'mask' must be a 2-D bool array, got {type(m).__name__}")
            if not (1 <= m.shape[0] <= MAX_SIDE and 1 <= m.shape[1] <= MAX_SIDE):
                raise LayoutError(f"{where}: mask shape {tuple(m.shape)} must have both sides in 1..{MAX_SIDE}")
            if m.size > MAX_MASK_PIXELS:
                raise _over(where, f"the size of the mask ({m.shape[0]}x{m.shape[1]}) in pixels", m.size,
                            MAX_MASK_PIXELS)
            budget.take("mask_pixels", m.size, where)
            if not m.any():
                raise LayoutError(f"{where}: mask is empty (no foreground pixel); draw the object or remove it")
            return
        need = {"polygon": 3, "scribble": 2, "point": 1}[r.kind]
        pts = r.points if r.points is not None else []
        if r.kind == "point" and len(pts) != 1:
            raise LayoutError(f"{where}: a point needs exactly 1 [x, y], got {len(pts)}")
        if len(pts) < need:
            raise LayoutError(f"{where}: a {r.kind} needs at least {need} points, got {len(pts)}")
        if len(pts) > MAX_POINTS_PER_REGION:
            raise _over(where, "the number of points", len(pts), MAX_POINTS_PER_REGION)
        budget.take("points", len(pts), where)
        for k, p in enumerate(pts):
            x, y = _xy(p, f"{where} points[{k}]")
            inside(x, f"points[{k}] x", W, "width")
            inside(y, f"points[{k}] y", H, "height")
        if r.kind == "polygon" and _polygon_area(np.asarray(pts, dtype=np.float64)) <= 0:
            raise LayoutError(f"{where}: polygon has zero area (all points on one line)")
        if r.kind in ("scribble", "point"):
            w = _num(r.width, f"{where} width")
            if w <= 0:
                raise LayoutError(f"{where}: width={w}; expected a stroke width / radius > 0 pixels")

    def require_descriptions(self, backend: str) -> Layout:
        """Check that every enabled instance has a non-blank description and return the layout.

        A layout may hold instances without a description (drawn, not yet described: previews and masks work);
        only back-ends that encode the descriptions (IFAdapter's appearance tokens, InstanceDiffusion) call this.
        """
        for i, inst in enumerate(self.instances):
            if inst.enabled and not inst.description.strip():
                raise LayoutError(
                    f"{_who(i)}: missing description; {backend} encodes the description of every enabled instance, "
                    "so describe the object (or disable the instance)"
                )
        return self

    # transforms ---------------------------------------------------------------------------------------------
    def scaled(self, width: int, height: int) -> Layout:
        """The same layout on a ``width`` x ``height`` canvas: every coordinate is scaled per axis.

        Masks need no change (they always stretch over the whole canvas); stroke widths and point radii scale
        with the mean of the two factors. The original is left untouched.
        """
        if width <= 0 or height <= 0:
            raise LayoutError(f"canvas {width}x{height}: width and height must be > 0 pixels")
        sx, sy = width / self.width, height / self.height
        sw = (sx + sy) / 2
        out = copy.deepcopy(self)
        out.width, out.height = int(width), int(height)
        for inst in out.instances:
            for r in inst.regions + [r for _, regs in (inst.keyframes or []) for r in regs]:
                if r.box is not None:
                    x0, y0, x1, y1 = r.box
                    r.box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
                if r.points is not None:
                    r.points = [(x * sx, y * sy) for x, y in r.points]
                if r.kind in ("scribble", "point"):
                    r.width = r.width * sw
        return out

    # queries ------------------------------------------------------------------------------------------------
    def active(self) -> list[Instance]:
        """Enabled instances, in list order."""
        return [i for i in self.instances if i.enabled]

    def active_numbers(self) -> list[int]:
        """The number a person reads for each enabled instance: its position in ``instances`` counted from 1."""
        return [n + 1 for n, i in enumerate(self.instances) if i.enabled]

    def boxes_normalized(self) -> torch.Tensor:
        """[n_active, 4] float32 xyxy in 0..1: each enabled instance's bbox divided by the canvas size."""
        canvas = (self.width, self.height)
        b = [inst.bbox(canvas) for inst in self.active()]
        t = torch.tensor(b, dtype=torch.float64).reshape(-1, 4)
        scale = torch.tensor([self.width, self.height, self.width, self.height], dtype=torch.float64)
        return (t / scale).float()

    def rasterize(self, h: int, w: int) -> torch.Tensor:
        """[n_active, h, w] float32 in {0, 1}: each enabled instance's regions (union) on an h x w grid.

        Boxes use the IFAdapter cell rule, masks a nearest resize, polygons fill the cells whose centre is inside,
        scribbles and points cover the cells whose centre is within width/2 (scribble) or width (point) pixels,
        plus every cell the stroke passes through or the point lies in. A non-empty region never vanishes on a
        coarse grid: if it would cover no cell, the cell holding its bbox centre is set (core/raster.py).
        Allocates the output only; callers that need a union, counts or one instance at a time use
        union_mask, areas or instance_cells instead.
        """
        h, w = raster.grid(h, w)
        cells = self.instance_cells(h, w)
        out = np.zeros((len(cells), h, w), dtype=np.float32)
        for n, crop in enumerate(cells):
            raster.paste(out[n], crop, 1.0)
        return torch.from_numpy(out)

    def instance_cells(self, h: int, w: int) -> list[raster.Crop]:
        """Each enabled instance on an h x w grid as a crop (row0, col0, bool cells) over its own bounding box."""
        h, w = raster.grid(h, w)
        return [raster.instance_cells(inst, self.width, self.height, h, w) for inst in self.active()]

    def union_mask(self, h: int, w: int) -> torch.Tensor:
        """[h, w] float32: 1 where any enabled instance covers the cell."""
        h, w = raster.grid(h, w)
        out = np.zeros((h, w), dtype=bool)
        for inst in self.active():
            for r in inst.regions:
                raster.paste(out, raster.region_cells(r, self.width, self.height, h, w))
        return torch.from_numpy(out.astype(np.float32))

    def background_mask(self, h: int, w: int) -> torch.Tensor:
        """[h, w] float32: 1 where no enabled instance covers the cell (IFAdapter's M_bg)."""
        return 1.0 - self.union_mask(h, w)

    def areas(self, h: int, w: int) -> torch.Tensor:
        """[n_active] float32: number of grid cells each enabled instance covers."""
        counts = [int(crop[2].sum()) for crop in self.instance_cells(h, w)]
        return torch.tensor(counts, dtype=torch.float32)

    def describe(self) -> str:
        """A short human-readable summary (one line per instance)."""
        lines = [f"{self.width}x{self.height} layout, {len(self.active())}/{len(self.instances)} instances enabled"
                 + (f', prompt "{self.prompt}"' if self.prompt else "")]  # fmt: skip
        canvas = (self.width, self.height)
        for i, inst in enumerate(self.instances):
            kinds = "+".join(r.kind for r in inst.regions) or "no region"
            x0, y0, x1, y1 = inst.bbox(canvas)
            flag = "" if inst.enabled else " [disabled]"
            d = inst.description if len(inst.description) <= 40 else inst.description[:37] + "..."
            lines.append(f'  {i + 1}: "{d}" {kinds} [{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}]{flag}')
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# rasterisation


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


# --------------------------------------------------------------------------------------------------------------
# importers


def _canvas_side(v: Any, where: str) -> int:
    if not _is_num(v) or not math.isfinite(float(v)) or float(v) != int(float(v)):
        raise LayoutError(f"{where} must be an integer number of pixels, got {v!r}")
    return int(v)


def _clip_box(x: float, y: float, bw: float, bh: float, W: int, H: int) -> tuple[float, ...] | None:
    """COCO [x, y, w, h] -> xyxy clipped to the canvas, or None if nothing is left."""
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, W), min(y + bh, H)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def _clip_pt(p: tuple[float, float], W: int, H: int) -> tuple[float, float]:
    return (min(max(p[0], 0), W), min(max(p[1], 0), H))


def _import_header(d: dict, fmt: str, list_key: str, width: Any, height: Any) -> tuple[int, int, str, list]:
    """Canvas, caption and instance list shared by the importers (``d`` is a dict), each checked by name."""
    W = _canvas_side(width, f"{fmt} 'width'")
    H = _canvas_side(height, f"{fmt} 'height'")
    if not (1 <= W <= MAX_CANVAS and 1 <= H <= MAX_CANVAS):
        raise LayoutError(f"{fmt} canvas {W}x{H} must have both sides in 1..{MAX_CANVAS}")
    prompt = d.get("caption", "")
    if not isinstance(prompt, str):
        raise LayoutError(f"{fmt} 'caption' must be a string, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _over(f"{fmt} layout", "the length of 'caption' in characters", len(prompt), MAX_PROMPT_CHARS)
    items = d.get(list_key)
    if not isinstance(items, (list, tuple)):
        raise LayoutError(f"{fmt} '{list_key}' must be a list, got {type(items).__name__}")
    if len(items) > MAX_INSTANCES:
        raise _over(f"{fmt} layout", f"the number of '{list_key}'", len(items), MAX_INSTANCES)
    return W, H, prompt, items


def from_instancediffusion_json(d: dict) -> Layout:
    """Import an InstanceDiffusion demo JSON.

    ``{"caption", "width", "height", "annos": [{"caption", "category_name", "bbox": [x, y, w, h], "mask": RLE or
    COCO polygons or [], "point": [x, y], "scribble": [[x, y], ...] or [x1, y1, ...]}]}``, pixels on the
    width x height frame. Coordinates slightly outside the frame are clipped; an all-zero bbox means "no box".
    Unknown keys are kept in ``extra``. The result is not validated (from_json does that).
    """
    if not isinstance(d, dict):
        raise LayoutError(f"InstanceDiffusion layout must be an object, got {type(d).__name__}")
    W, H, prompt, annos = _import_header(d, "InstanceDiffusion", "annos", d.get("width"), d.get("height"))
    known = ("caption", "category_name", "bbox", "mask", "point", "scribble")
    instances = []
    budget = _Budget()
    for i, a in enumerate(annos):
        if not isinstance(a, dict):
            raise LayoutError(f"annos[{i}] must be an object, got {type(a).__name__}")
        desc = a.get("caption")
        label = a.get("category_name", "")
        who = _who(i, desc)
        if desc is None:
            raise LayoutError(f"{who} (annos[{i}]): missing 'caption' (the instance description)")
        if not isinstance(desc, str) or not isinstance(label, str):
            raise LayoutError(f"{who} (annos[{i}]): 'caption' and 'category_name' must be strings")
        regions: list[Region] = []
        if a.get("bbox") is not None:
            b = a["bbox"]
            if not isinstance(b, (list, tuple)) or len(b) != 4:
                raise LayoutError(f"{who}: 'bbox' must be [x, y, w, h] pixels, got {b!r}")
            bx = [_num(v, f"{who}: bbox {n}") for v, n in zip(b, "xywh")]
            box = _clip_box(*bx, W, H)
            if box is not None:
                regions.append(Region("box", box=box))
        m = a.get("mask")
        if isinstance(m, dict):
            mask, compressed = _decode_rle(m, who, "mask", budget)
            regions.append(Region("mask", mask=mask, rle_compressed=compressed))
        elif isinstance(m, (list, tuple)) and len(m) > 0:  # COCO polygon list [[x, y, x, y, ...], ...]
            if len(m) > MAX_REGIONS_PER_INSTANCE:
                raise _over(who, "the number of mask polygons", len(m), MAX_REGIONS_PER_INSTANCE)
            for k, poly in enumerate(m):
                if not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2:
                    raise LayoutError(
                        f"{who}: mask polygon {k} must be a flat list [x1, y1, x2, y2, ...] (>= 3 points)"
                    )
                if len(poly) // 2 > MAX_POINTS_PER_REGION:
                    raise _over(f"{who}: mask polygon {k}", "the number of points", len(poly) // 2,
                                MAX_POINTS_PER_REGION)
                budget.take("points", len(poly) // 2, f"{who}: mask polygon {k}")
                pts = [_clip_pt((_num(poly[j], f"{who}: mask polygon {k}"), _num(poly[j + 1], f"{who}: mask polygon {k}")),
                                W, H) for j in range(0, len(poly), 2)]  # fmt: skip
                regions.append(Region("polygon", points=pts))
        elif m not in (None, [], ()):
            raise LayoutError(f"{who}: 'mask' must be a COCO RLE object, a polygon list or [], got {type(m).__name__}")
        if a.get("point") not in (None, [], ()):
            regions.append(Region("point", points=[_clip_pt(_xy(a["point"], f"{who}: 'point'"), W, H)]))
        s = a.get("scribble")
        if s not in (None, [], ()):
            if not isinstance(s, (list, tuple)):
                raise LayoutError(f"{who}: 'scribble' must be a list of [x, y] pairs, got {type(s).__name__}")
            if len(s) > 2 * MAX_POINTS_PER_REGION:  # pairs or a flat list: over the limit either way
                raise _over(f"{who}: scribble", "the number of values", len(s), 2 * MAX_POINTS_PER_REGION)
            if s and all(_is_num(v) for v in s):
                if len(s) % 2:
                    raise LayoutError(f"{who}: flat 'scribble' [x1, y1, ...] needs an even count, got {len(s)}")
                s = [s[j : j + 2] for j in range(0, len(s), 2)]
            if len(s) > MAX_POINTS_PER_REGION:
                raise _over(f"{who}: scribble", "the number of points", len(s), MAX_POINTS_PER_REGION)
            budget.take("points", len(s), f"{who}: scribble")
            pts = [_clip_pt(_xy(p, f"{who}: scribble[{k}]"), W, H) for k, p in enumerate(s)]
            regions.append(Region("scribble", points=pts))
        if not regions:
            raise LayoutError(f"{who} (annos[{i}]): no usable region (bbox, mask, point or scribble)")
        extra = _jsonable({k: v for k, v in a.items() if k not in known}, who)
        instances.append(Instance(desc, label, regions, extra=extra))
    extra = _jsonable({k: v for k, v in d.items() if k not in ("caption", "width", "height", "annos")}, "layout")
    return Layout(W, H, prompt, instances, extra)


def from_ifadapter_json(d: dict, width: int = 768, height: int = 768) -> Layout:
    """Import an IFAdapter sample layout.

    ``{"caption": str, "annotations": [{"box": [x, y, w, h], "caption": str or [str]}]}`` with pixel boxes on a
    ``width`` x ``height`` canvas (768 x 768 in the official samples; "width"/"height" keys in ``d`` win).
    Boxes are clipped to the canvas. The result is not validated (from_json does that).
    """
    if not isinstance(d, dict):
        raise LayoutError(f"IFAdapter layout must be an object, got {type(d).__name__}")
    W, H, prompt, anns = _import_header(d, "IFAdapter", "annotations", d.get("width", width), d.get("height", height))
    instances = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise LayoutError(f"annotations[{i}] must be an object, got {type(a).__name__}")
        c = a.get("caption")
        if isinstance(c, (list, tuple)):
            c = c[0] if c else None
        who = _who(i, c)
        if not isinstance(c, str):
            raise LayoutError(f"{who} (annotations[{i}]): 'caption' must be a string or [string], got {c!r}")
        b = a.get("box")
        if not isinstance(b, (list, tuple)) or len(b) != 4:
            raise LayoutError(f"{who}: 'box' must be [x, y, w, h] pixels, got {b!r}")
        box = _clip_box(*(_num(v, f"{who}: box {n}") for v, n in zip(b, "xywh")), W, H)
        if box is None:
            raise LayoutError(f"{who}: box {list(b)} has zero area inside the {W}x{H} canvas")
        extra = _jsonable({k: v for k, v in a.items() if k not in ("box", "caption")}, who)
        instances.append(Instance(c, "", [Region("box", box=box)], extra=extra))
    extra = _jsonable({k: v for k, v in d.items() if k not in ("caption", "annotations", "width", "height")}, "layout")
    return Layout(W, H, prompt, instances, extra)


def from_masks(masks: Any, descriptions: list[str], prompt: str = "") -> Layout:
    """Build a layout from a MASK batch [n, H, W] (values > 0.5 are foreground) and one description per mask.

    The canvas is W x H; each instance gets one mask region. The result is validated.
    """
    m = masks.detach().cpu().float().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise LayoutError(f"masks must be [n, H, W], got shape {tuple(m.shape)}")
    if isinstance(descriptions, str):
        descriptions = [descriptions]
    descriptions = list(descriptions)
    if len(descriptions) != m.shape[0]:
        raise LayoutError(f"got {m.shape[0]} masks but {len(descriptions)} descriptions; give one description per mask")
    instances = [Instance(desc, "", [Region("mask", mask=mk > 0.5)]) for desc, mk in zip(descriptions, m)]
    return Layout(int(m.shape[2]), int(m.shape[1]), prompt, instances).validate()
