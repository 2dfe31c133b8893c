"""Importers of other layout formats: the InstanceDiffusion demo JSON ("annos"), the IFAdapter sample layouts
("annotations") and a MASK batch. Each returns a :class:`~.model.Layout` in canvas pixels, counting the layout-wide
limits while it reads (``from_json`` validates the result)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .limits import (
    MAX_CANVAS,
    MAX_INSTANCES,
    MAX_POINTS_PER_REGION,
    MAX_PROMPT_CHARS,
    MAX_REGIONS_PER_INSTANCE,
    Budget,
    LayoutError,
    over,
)
from .model import Instance, Layout, Region
from .values import _decode_rle, _is_num, _jsonable, _num, _who, _xy


def _canvas_side(v: Any, where: str) -> int:
    if not _is_num(v):
        raise LayoutError(f"{where} must be an integer number of pixels, got {v!r}")
    f = _num(v, where)  # NaN, infinity and ints too big for a float: a LayoutError naming the field
    if f != int(f):
        raise LayoutError(f"{where} must be an integer number of pixels, got {v!r}")
    return int(f)


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
        raise over(f"{fmt} layout", "the length of 'caption' in characters", len(prompt), MAX_PROMPT_CHARS)
    items = d.get(list_key)
    if not isinstance(items, (list, tuple)):
        raise LayoutError(f"{fmt} '{list_key}' must be a list, got {type(items).__name__}")
    if len(items) > MAX_INSTANCES:
        raise over(f"{fmt} layout", f"the number of '{list_key}'", len(items), MAX_INSTANCES)
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
    budget = Budget()
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
                raise over(who, "the number of mask polygons", len(m), MAX_REGIONS_PER_INSTANCE)
            for k, poly in enumerate(m):
                if not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2:
                    raise LayoutError(
                        f"{who}: mask polygon {k} must be a flat list [x1, y1, x2, y2, ...] (>= 3 points)"
                    )
                if len(poly) // 2 > MAX_POINTS_PER_REGION:
                    raise over(f"{who}: mask polygon {k}", "the number of points", len(poly) // 2,
                                MAX_POINTS_PER_REGION)
                budget.take("points", len(poly) // 2, f"{who}: mask polygon {k}")
                pts = [_clip_pt((_num(poly[j], f"{who}: mask polygon {k}"), _num(poly[j + 1], f"{who}: mask polygon {k}")),
                                W, H) for j in range(0, len(poly), 2)]  # fmt: skip
                # rasterised as pycocotools' annToMask does (core/coco_polygon.py), also after a JSON round trip
                regions.append(Region("polygon", points=pts, extra={"fill": "coco"}))
        elif m not in (None, [], ()):
            raise LayoutError(f"{who}: 'mask' must be a COCO RLE object, a polygon list or [], got {type(m).__name__}")
        if a.get("point") not in (None, [], ()):
            regions.append(Region("point", points=[_clip_pt(_xy(a["point"], f"{who}: 'point'"), W, H)]))
        s = a.get("scribble")
        if s not in (None, [], ()):
            if not isinstance(s, (list, tuple)):
                raise LayoutError(f"{who}: 'scribble' must be a list of [x, y] pairs, got {type(s).__name__}")
            if len(s) > 2 * MAX_POINTS_PER_REGION:  # pairs or a flat list: over the limit either way
                raise over(f"{who}: scribble", "the number of values", len(s), 2 * MAX_POINTS_PER_REGION)
            if s and all(_is_num(v) for v in s):
                if len(s) % 2:
                    raise LayoutError(f"{who}: flat 'scribble' [x1, y1, ...] needs an even count, got {len(s)}")
                s = [s[j : j + 2] for j in range(0, len(s), 2)]
            if len(s) > MAX_POINTS_PER_REGION:
                raise over(f"{who}: scribble", "the number of points", len(s), MAX_POINTS_PER_REGION)
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
