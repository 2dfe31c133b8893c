"""Parsing layout JSON: the native format (versions 1 and 2) and the auto-detected InstanceDiffusion / IFAdapter
sample formats. Types and per-field limits are checked while parsing, and the layout-wide totals through a
:class:`~.limits.Budget` before each part is decoded; ``layout_from_json`` ends with validation (``validate.py``).
"""

from __future__ import annotations

import json
from typing import Any

from ..raster import POLYGON_FILLS
from .importers import from_ifadapter_json, from_instancediffusion_json
from .limits import (
    LIMITS_DOC,
    MAX_DESCRIPTION_CHARS,
    MAX_FRAMES,
    MAX_INSTANCES,
    MAX_JSON_CHARS,
    MAX_JSON_DEPTH,
    MAX_KEYFRAMES,
    MAX_LABEL_CHARS,
    MAX_POINTS_PER_REGION,
    MAX_PROMPT_CHARS,
    MAX_REGIONS_PER_INSTANCE,
    Budget,
    LayoutError,
    check_depth,
    over,
)
from .model import (
    _COLOR_RE,
    _INSTANCE_KEYS,
    _LAYOUT_KEYS,
    _REGION_KEYS,
    FORMAT,
    READ_VERSIONS,
    REGION_KINDS,
    Instance,
    Layout,
    Region,
)
from .values import _decode_rle, _frame_index, _is_num, _jsonable, _num, _who, _width, _xy


def layout_from_json(text_or_dict: str | bytes | dict) -> Layout:
    """Parse and validate a layout.

    Accepts the native format (a JSON string or dict with "format": "instance-layout") and auto-detects the
    InstanceDiffusion demo JSON ("annos") and the IFAdapter sample layouts ("annotations").
    Returns a valid layout or raises LayoutError, never another exception.
    """
    d = text_or_dict
    if isinstance(d, (str, bytes, bytearray)):
        if len(d) > MAX_JSON_CHARS:
            raise over("layout", "the length of the JSON text", len(d), MAX_JSON_CHARS)
        try:
            d = json.loads(d)
        except RecursionError:
            raise LayoutError(f"layout JSON is nested too deeply to read; at most {MAX_JSON_DEPTH} levels "
                              f"allowed (see {LIMITS_DOC})") from None
        except ValueError as e:
            raise LayoutError(f"layout is not valid JSON: {e}") from None
    check_depth(d)
    if not isinstance(d, dict):
        raise LayoutError(f"layout must be a JSON object, got {type(d).__name__}")
    if "format" in d:
        if d["format"] != FORMAT:
            raise LayoutError(f"layout 'format' is {d['format']!r}; expected {FORMAT!r}")
        layout = layout_from_dict(d)
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


def layout_from_dict(d: dict) -> Layout:
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
        raise over("layout", "the length of 'prompt' in characters", len(prompt), MAX_PROMPT_CHARS)
    insts = d.get("instances", [])
    if not isinstance(insts, (list, tuple)):
        raise LayoutError(f"layout 'instances' must be a list, got {type(insts).__name__}")
    if len(insts) > MAX_INSTANCES:
        raise over("layout", "the number of 'instances'", len(insts), MAX_INSTANCES)
    budget = Budget()
    instances = [instance_from_dict(x, i, budget) for i, x in enumerate(insts)]
    frames = d.get("frames")
    if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool)
                               or not 1 <= frames <= MAX_FRAMES):
        raise LayoutError(f"layout 'frames' is {frames!r}; expected the frame count, an integer in 1..{MAX_FRAMES}")
    extra = _jsonable({k: v for k, v in d.items() if k not in _LAYOUT_KEYS}, "layout")
    return Layout(size[0], size[1], prompt, instances, extra, frames)


def instance_from_dict(d: Any, index: int = 0, budget: Budget | None = None) -> Instance:
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
        raise over(who, "the length of 'description' in characters", len(desc), MAX_DESCRIPTION_CHARS)
    label = d.get("label", "")
    if not isinstance(label, str):
        raise LayoutError(f"{who}: 'label' must be a string, got {type(label).__name__}")
    if len(label) > MAX_LABEL_CHARS:
        raise over(who, "the length of 'label' in characters", len(label), MAX_LABEL_CHARS)
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
        raise over(who, "the number of 'regions'", len(regions), MAX_REGIONS_PER_INSTANCE)
    if budget is not None:
        budget.take("regions", len(regions), who)
    regs = [region_from_dict(r, f"{who}: regions[{i}]", budget) for i, r in enumerate(regions)]
    keyframes = _keyframes_from_json(d["keyframes"], who, budget) if "keyframes" in d else None
    frames = _frame_range_from_json(d["frames"], who) if "frames" in d else None
    extra = _jsonable({k: v for k, v in d.items() if k not in _INSTANCE_KEYS}, who)
    return Instance(desc, label, regs, z, weight, enabled, color, extra, keyframes, frames)


def _keyframes_from_json(kfs: Any, who: str, budget: Budget | None = None) -> list[tuple[int, list[Region]]]:
    """Parse an instance's "keyframes" list (types only; order is checked by validate()).

    Each keyframe's regions are the instance's regions on that frame: at most MAX_REGIONS_PER_INSTANCE of them, and
    every one counts in the layout-wide ``budget`` (regions, points, mask pixels, RLE length) before it is decoded.
    """
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
        where = f"{where} (frame {f})"
        regions = kf["regions"]
        if len(regions) > MAX_REGIONS_PER_INSTANCE:
            raise over(where, "the number of 'regions'", len(regions), MAX_REGIONS_PER_INSTANCE)
        if budget is not None:
            budget.take("keyframe_regions", len(regions), where)
        out.append((f, [region_from_dict(r, f"{where} regions[{i}]", budget) for i, r in enumerate(regions)]))
    return out


def _frame_range_from_json(v: Any, who: str) -> tuple[int, int | None]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise LayoutError(f"{who}: 'frames' must be [first, last] (inclusive; last may be null), got {v!r}")
    return (_frame_index(v[0], f"{who}: 'frames' first"),
            None if v[1] is None else _frame_index(v[1], f"{who}: 'frames' last"))


def region_from_dict(d: Any, where: str = "region", budget: Budget | None = None) -> Region:
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
    r = Region(kind=kind, extra=extra)
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
            raise over(where, "the number of points", len(pts), MAX_POINTS_PER_REGION)
        if budget is not None:
            budget.take("points", len(pts), where)
        r.points = [_xy(p, f"{where} points[{i}]") for i, p in enumerate(pts)]
        if kind == "polygon" and d.get("fill", "even-odd") not in POLYGON_FILLS:  # kept in extra, as written
            raise LayoutError(f"{where}: 'fill' must be one of {', '.join(map(repr, POLYGON_FILLS))}, got {d['fill']!r}")
    elif kind == "point":
        if budget is not None:
            budget.take("points", 1, where)
        r.points = [_xy(d.get("point"), f"{where} 'point'")]
    elif kind == "mask":
        r.mask, r.rle_compressed = _decode_rle(d.get("rle"), where, "rle", budget)
    if kind in ("scribble", "point") and "width" in d:
        r.width = _width(d["width"], f"{where} width")
    return r


