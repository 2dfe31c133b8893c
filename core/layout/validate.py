"""Validating a layout: the geometry and limits of every instance, region and keyframe against the canvas, with
the layout-wide totals counted once more (a layout built in code never went through the parser)."""

from __future__ import annotations

import numpy as np

from ..rle import MAX_SIDE
from .limits import (
    MAX_CANVAS,
    MAX_DESCRIPTION_CHARS,
    MAX_FRAMES,
    MAX_INSTANCES,
    MAX_KEYFRAMES,
    MAX_LABEL_CHARS,
    MAX_MASK_PIXELS,
    MAX_POINTS_PER_REGION,
    MAX_PROMPT_CHARS,
    MAX_REGIONS_PER_INSTANCE,
    Budget,
    LayoutError,
    over,
)
from .model import _COLOR_RE, PALETTE, REGION_KINDS, Instance, Layout, Region
from .values import _frame_index, _num, _who, _width, _xy


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0



def validate_layout(layout: Layout, max_instances: int | None = None, backend: str = "") -> Layout:
    """Check the whole layout and return it; raise LayoutError naming the instance and field at fault.

    Also fills missing colours from PALETTE. ``max_instances`` is the back-end's limit on enabled instances
    (e.g. 30 for InstanceDiffusion), ``backend`` its name for the message.
    """
    for key, v in (("width", layout.width), ("height", layout.height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= MAX_CANVAS:
            raise LayoutError(f"layout '{key}' is {v!r}; expected an integer number of pixels in 1..{MAX_CANVAS}")
    if layout.frames is not None and (not isinstance(layout.frames, (int, np.integer)) or isinstance(layout.frames, bool)
                                    or not 1 <= layout.frames <= MAX_FRAMES):
        raise LayoutError(f"layout 'frames' is {layout.frames!r}; expected an integer in 1..{MAX_FRAMES}")
    if not isinstance(layout.prompt, str):
        raise LayoutError(f"layout 'prompt' must be a string, got {type(layout.prompt).__name__}")
    if len(layout.prompt) > MAX_PROMPT_CHARS:
        raise over("layout", "the length of 'prompt' in characters", len(layout.prompt), MAX_PROMPT_CHARS)
    if len(layout.instances) > MAX_INSTANCES:
        raise over("layout", "the number of 'instances'", len(layout.instances), MAX_INSTANCES)
    budget = Budget()
    for i, inst in enumerate(layout.instances):
        _validate_instance(layout, i, inst, budget)
        if inst.color is None:
            inst.color = PALETTE[i % len(PALETTE)]
    if max_instances is not None:
        n = len(layout.active())
        if n > max_instances:
            who = f"back-end {backend!r}" if backend else "this back-end"
            raise LayoutError(
                f"layout has {n} enabled instances but {who} allows at most {max_instances}; "
                "disable or merge some instances"
            )
    return layout

def _validate_instance(layout: Layout, i: int, inst: Instance, budget: Budget) -> None:
    who = _who(i, inst.description)
    if not isinstance(inst, Instance):
        raise LayoutError(f"instance {i + 1} must be an Instance, got {type(inst).__name__}")
    if not isinstance(inst.description, str):
        raise LayoutError(f"{who}: 'description' must be a string, got {type(inst.description).__name__}")
    if len(inst.description) > MAX_DESCRIPTION_CHARS:
        raise over(who, "the length of 'description' in characters", len(inst.description), MAX_DESCRIPTION_CHARS)
    if not isinstance(inst.label, str):
        raise LayoutError(f"{who}: 'label' must be a string")
    if len(inst.label) > MAX_LABEL_CHARS:
        raise over(who, "the length of 'label' in characters", len(inst.label), MAX_LABEL_CHARS)
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
        raise over(who, "the number of 'regions'", len(inst.regions), MAX_REGIONS_PER_INSTANCE)
    budget.take("regions", len(inst.regions), who)
    for j, r in enumerate(inst.regions):
        _validate_region(layout, f"{who}: regions[{j}]", r, budget)
    _validate_time(layout, who, inst, budget)

def _validate_time(layout: Layout, who: str, inst: Instance, budget: Budget) -> None:
    """Keyframes: at most MAX_KEYFRAMES, frames unique, ascending, in range, regions valid (non-empty when
    enabled, at most MAX_REGIONS_PER_INSTANCE per keyframe, every one counted in the layout-wide ``budget`` like a
    static region); visible range: first <= last, both frame indices."""
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
        if len(kf[1]) > MAX_REGIONS_PER_INSTANCE:
            raise over(f"{who}: keyframes[{k}] (frame {f})", "the number of 'regions'", len(kf[1]),
                       MAX_REGIONS_PER_INSTANCE)
        budget.take("keyframe_regions", len(kf[1]), f"{who}: keyframes[{k}] (frame {f})")
        for j, r in enumerate(kf[1]):
            _validate_region(layout, f"{who}: keyframes[{k}] (frame {f}) regions[{j}]", r, budget)

def _validate_region(layout: Layout, where: str, r: Region, budget: Budget) -> None:
    W, H = layout.width, layout.height
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
            raise over(where, f"the size of the mask ({m.shape[0]}x{m.shape[1]}) in pixels", m.size,
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
        raise over(where, "the number of points", len(pts), MAX_POINTS_PER_REGION)
    budget.take("points", len(pts), where)
    for k, p in enumerate(pts):
        x, y = _xy(p, f"{where} points[{k}]")
        inside(x, f"points[{k}] x", W, "width")
        inside(y, f"points[{k}] y", H, "height")
    if r.kind == "polygon" and _polygon_area(np.asarray(pts, dtype=np.float64)) <= 0:
        raise LayoutError(f"{where}: polygon has zero area (all points on one line)")
    if r.kind in ("scribble", "point"):
        _width(r.width, f"{where}: width")
