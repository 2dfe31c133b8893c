"""The instance layout's data model: a canvas, a global prompt and instances with regions (and, for layouts over
time, keyframes), with the queries every back-end reads (bounding boxes, rasterised cells, areas).

Coordinates are canvas pixels: origin top-left, x right, y down. Parsing lives in ``parse.py``, validation in
``validate.py``, importers of other formats in ``importers.py``; the format is docs/layout-format.md.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import raster
from ..rle import rle_encode
from .limits import Budget, LayoutError
from .summary import instance_summary, layout_summary, region_summary
from .values import _out_num, _who

FORMAT = "instance-layout"
VERSION = 1  # written for static layouts, so that they keep loading in older builds
VERSION_TIMED = 2  # written when any time field (keyframes, visible frames, frame count) is used
READ_VERSIONS = (1, 2)
REGION_KINDS = ("box", "polygon", "mask", "scribble", "point")
DEFAULT_WIDTH = 4.0
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

    def __repr__(self) -> str:  # bounded: ComfyUI stores str() of a failed node's inputs (core/layout/summary.py)
        return region_summary(self)

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
    def from_dict(cls, d: Any, where: str = "region", budget: Budget | None = None) -> Region:
        """Parse a version-1 region object; raises LayoutError naming ``where`` and the field.

        ``budget`` carries the layout-wide totals (points, mask pixels, RLE length) while a layout is parsed.
        """
        from .parse import region_from_dict

        return region_from_dict(d, where, budget)



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

    def __repr__(self) -> str:  # bounded, see core/layout/summary.py
        return instance_summary(self)

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
    def from_dict(cls, d: Any, index: int = 0, budget: Budget | None = None) -> Instance:
        """Parse a version-1 instance object (``index`` its 0-based place in the layout); raises LayoutError naming
        the instance (counted from 1) and the field."""
        from .parse import instance_from_dict

        return instance_from_dict(d, index, budget)



@dataclass
class Layout:
    """A canvas (pixels), an optional global prompt and an ordered list of instances."""

    width: int
    height: int
    prompt: str = ""
    instances: list[Instance] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    frames: int | None = None  # the frame count the layout was drawn for (version 2), or None

    def __repr__(self) -> str:  # bounded, see core/layout/summary.py
        return layout_summary(self)

    @property
    def timed(self) -> bool:
        """Whether this layout uses a time field (written as version 2; core.layout.timeline resolves frames)."""
        return self.frames is not None or any(inst.timed for inst in self.instances)

    # JSON ---------------------------------------------------------------------------------------------------
    # JSON ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text_or_dict: str | bytes | dict) -> Layout:
        """Parse and validate a layout.

        Accepts the native format (a JSON string or dict with "format": "instance-layout") and auto-detects the
        InstanceDiffusion demo JSON ("annos") and the IFAdapter sample layouts ("annotations").
        Returns a valid layout or raises LayoutError, never another exception.
        """
        from .parse import layout_from_json

        return layout_from_json(text_or_dict)

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        """Parse a native version-1 or -2 dict (types only; call validate() for the geometry checks)."""
        from .parse import layout_from_dict

        return layout_from_dict(d)

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
        from .validate import validate_layout

        return validate_layout(self, max_instances, backend)

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

        Boxes use the IFAdapter cell rule, masks a nearest resize, polygons fill the cells whose centre is inside
        (imported COCO polygons, ``"fill": "coco"``: pycocotools' rule, core/coco_polygon.py), scribbles and points cover the cells whose centre is within width/2 (scribble) or width (point) pixels,
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
