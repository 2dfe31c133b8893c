"""Importers of per-frame tracks into time-aware (version 2) layouts.

- :func:`from_tracking`: logtd's TRACKING dict (``{class: {tracker_id: [per-frame (x0, y0, x1, y1, W, H) or
  None]}}``, from its TrackingNodes or KJNodes' spline editor), with logtd's ``"<id>.<class>": "<caption>"`` lines;
- :func:`from_box_tracks_json`: per-frame box lists from JSON (``{"width", "height", "tracks": [{"description",
  "boxes": [[x0, y0, x1, y1] or null, ...]}]}``);
- :func:`from_mask_frames`: a MASK batch ``[F, H, W]`` as the per-frame masks of one instance.

Every frame with a region becomes a keyframe (linear interpolation between consecutive frames reproduces them
exactly); the visible range runs from the first to the last frame with a region. Frames without a region inside that
range (a tracker that lost the object for a moment) are bridged: boxes interpolate, masks hold the nearest.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import numpy as np
import torch

from .limits import MAX_CANVAS, MAX_FRAMES, MAX_INSTANCES, MAX_JSON_CHARS, MAX_MASK_PIXELS, Budget, LayoutError, over
from .model import Instance, Layout, Region
from .values import _is_num, _num, _show

_CAPTION_LINE = re.compile(r'^\s*"?(-?\d+)\.([^":]+?)"?\s*:\s*"?(.*?)"?\s*,?\s*$')


def track_instance(description: str, per_frame: list[list[Region] | None], label: str = "") -> Instance | None:
    """One instance from its regions on each frame (None = not on that frame); None if it is on no frame."""
    present = [f for f, r in enumerate(per_frame) if r]
    if not present:
        return None
    first, last = present[0], present[-1]
    keyframes = [(f, per_frame[f]) for f in present]
    frames = None if (first == 0 and last == len(per_frame) - 1) else (first, last)
    return Instance(description, label, [], keyframes=keyframes, frames=frames)


def _frames_len(n: int, what: str) -> int:
    if not 1 <= n <= MAX_FRAMES:
        raise LayoutError(f"{what} covers {n} frames; expected 1..{MAX_FRAMES}")
    return n


def _finite_box(b: Any, where: str) -> tuple[float, float, float, float]:
    """Four finite numbers (NaN, infinity and ints too big for a float refused), as floats."""
    if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(_is_num(v) for v in b):
        raise LayoutError(f"{where} must be [x0, y0, x1, y1] pixels (finite numbers) or null, got {_show(b)}")
    return tuple(float(_num(v, f"{where} {n}")) for v, n in zip(b, ("x0", "y0", "x1", "y1")))


def _clipped_box(b: Any, W: int, H: int, where: str) -> tuple[float, float, float, float] | None:
    x0, y0, x1, y1 = _finite_box(b, where)  # xywh: x + w may overflow to infinity, refused here
    x0, x1 = min(max(x0, 0.0), W), min(max(x1, 0.0), W)
    y0, y1 = min(max(y0, 0.0), H), min(max(y1, 0.0), H)
    if x1 <= x0 or y1 <= y0:
        return None  # nothing left inside the canvas: not on this frame
    return (x0, y0, x1, y1)


def parse_captions(text: str) -> dict[tuple[int, str], str]:
    """logtd's prompt lines ``"<id>.<class>": "<caption>"`` -> {(id, class): caption}; id -1 = every id of that class.

    Blank lines and lines that do not match are refused with the line number (a typo would otherwise silently fall
    back to the class name).
    """
    out: dict[tuple[int, str], str] = {}
    for k, line in enumerate(str(text).splitlines(), 1):
        if not line.strip() or line.strip() in "{}":
            continue
        m = _CAPTION_LINE.match(line)
        if not m or not m.group(3).strip():
            raise LayoutError(f'captions line {k} {line.strip()[:60]!r}: expected "<id>.<class>": "<caption>", '
                              'e.g. "1.car": "a red car" (id -1 = every id of that class)')
        out[(int(m.group(1)), m.group(2).strip())] = m.group(3).strip()
    return out


def check_tracking_size(tracking: Any) -> None:
    """Refuse a TRACKING dict with more classes or tracked objects than a layout has instances, by counting only
    (nothing is read per frame): run before any track is built, and at validation for a dict given in the prompt."""
    if not isinstance(tracking, dict) or not tracking:
        raise LayoutError("TRACKING must be a non-empty dict {class: {tracker_id: [per-frame boxes]}}")
    if len(tracking) > MAX_INSTANCES:  # every class holds at least one object
        raise over("TRACKING", "the number of classes", len(tracking), MAX_INSTANCES)
    n_objects = 0
    for cls, ids in tracking.items():  # count before anything is built: one instance per (class, id)
        if not isinstance(ids, dict):
            raise LayoutError(f"TRACKING[{_show(cls)}] must be a dict {{tracker_id: [per-frame boxes]}}, got "
                              f"{type(ids).__name__}")
        n_objects += len(ids)
        if n_objects > MAX_INSTANCES:
            raise over("TRACKING", "the number of tracked objects (one instance each)", n_objects, MAX_INSTANCES)


def from_tracking(tracking: Any, captions: str | dict | None = None, prompt: str = "") -> Layout:
    """A time-aware layout from logtd's TRACKING dict.

    ``tracking``: ``{class_name: {tracker_id: [per-frame (x0, y0, x1, y1, W, H) or None]}}``, pixel boxes on a
    W x H frame (the same on every frame). ``captions``: logtd's lines (see :func:`parse_captions`) or a dict
    {(id, class): caption}; an instance without one is described by its class name. One instance per (class, id),
    in the dict's order; the layout's ``frames`` is the longest track. The result is validated.
    """
    check_tracking_size(tracking)
    if isinstance(captions, str) and len(captions) > MAX_JSON_CHARS:
        raise over("TRACKING captions", "the length in characters", len(captions), MAX_JSON_CHARS)
    caps = parse_captions(captions) if isinstance(captions, str) else dict(captions or {})
    size: tuple[int, int] | None = None
    tracks = []
    for cls, ids in tracking.items():
        for tid, frames in ids.items():
            where = f"TRACKING[{_show(cls)}][{_show(tid)}]"
            if not isinstance(frames, (list, tuple)):
                raise LayoutError(f"{where} must be a list of per-frame (x0, y0, x1, y1, W, H) or None")
            _frames_len(len(frames), where)
            for f, e in enumerate(frames):
                if e is None:
                    continue
                if not isinstance(e, (list, tuple)) or len(e) != 6 or not all(_is_num(v) for v in e):
                    raise LayoutError(f"{where} frame {f}: expected (x0, y0, x1, y1, W, H) numbers or None, got "
                                      f"{_show(e)}")
                _finite_box(e[:4], f"{where} frame {f}")
                fw, fh = (_num(v, f"{where} frame {f}: frame {k}") for v, k in ((e[4], "W"), (e[5], "H")))
                wh = (int(fw), int(fh))
                if not (1 <= wh[0] <= MAX_CANVAS and 1 <= wh[1] <= MAX_CANVAS) or wh != (fw, fh):
                    raise LayoutError(f"{where} frame {f}: frame size {_show(e[4])}x{_show(e[5])} must be integers "
                                      f"in 1..{MAX_CANVAS}")
                if size is None:
                    size = wh
                elif wh != size:
                    raise LayoutError(f"{where} frame {f}: frame size {wh[0]}x{wh[1]} differs from {size[0]}x{size[1]} "
                                      "of the other frames")
            tracks.append((str(cls), tid, frames))
    if size is None:
        raise LayoutError("TRACKING has no box on any frame")
    W, H = size
    n = max(len(fr) for _, _, fr in tracks)
    layout = Layout(W, H, prompt, [], frames=n)
    budget = Budget()  # every tracked box is a keyframe region: counted before it is built
    for cls, tid, frames in tracks:
        try:
            tid_int = int(tid)
        except (TypeError, ValueError):
            tid_int = None
        desc = caps.get((tid_int, cls)) or caps.get((-1, cls)) or cls
        per_frame = []
        for f, e in enumerate(frames):
            where = f"TRACKING[{_show(cls)}][{_show(tid)}] frame {f}"
            box = None if e is None else _clipped_box(list(e[:4]), W, H, where)
            if box is not None:
                budget.take("keyframe_regions", 1, f"{where} (each tracked box is a keyframe region)")
            per_frame.append([Region("box", box=box)] if box is not None else None)
        inst = track_instance(desc, per_frame, label=cls)
        if inst is not None:
            inst.extra = {"track": f"{tid}.{cls}"}
            layout.instances.append(inst)
    return layout.validate()


def from_box_tracks_json(text_or_dict: str | bytes | dict) -> Layout:
    """A time-aware layout from per-frame box lists.

    ``{"width": W, "height": H, "prompt": "...", "box_format": "xyxy" | "xywh" (default xyxy),
    "tracks": [{"description": "...", "label": "...", "boxes": [[x0, y0, x1, y1] or null, ...]}]}``: pixel boxes
    on the W x H canvas, one entry per frame (null = not on that frame); boxes are clipped to the canvas. The
    layout's ``frames`` is the longest list. The result is validated.
    """
    d = text_or_dict
    if isinstance(d, (str, bytes, bytearray)):
        if len(d) > MAX_JSON_CHARS:  # before json.loads: the text is untrusted
            raise over("box tracks", "the length of the JSON text", len(d), MAX_JSON_CHARS)
        try:
            d = json.loads(d)
        except (ValueError, RecursionError) as e:
            raise LayoutError(f"box tracks are not valid JSON: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("tracks"), list):
        raise LayoutError('box tracks must be an object {"width", "height", "tracks": [{"description", "boxes"}]}')
    W, H = d.get("width"), d.get("height")
    for k, v in (("width", W), ("height", H)):
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_CANVAS:
            raise LayoutError(f"box tracks '{k}' is {v!r}; expected an integer number of pixels in 1..{MAX_CANVAS}")
    fmt = d.get("box_format", "xyxy")
    if fmt not in ("xyxy", "xywh"):
        raise LayoutError(f"box tracks 'box_format' is {fmt!r}; expected 'xyxy' or 'xywh'")
    prompt = d.get("prompt", "")
    if not isinstance(prompt, str):
        raise LayoutError("box tracks 'prompt' must be a string")
    if not d["tracks"]:
        raise LayoutError("box tracks: 'tracks' is empty; give at least one track")
    if len(d["tracks"]) > MAX_INSTANCES:  # counted before any track is built (one instance each)
        raise over("box tracks", "the number of 'tracks' (one instance each)", len(d["tracks"]), MAX_INSTANCES)
    n = 0
    layout = Layout(W, H, prompt, [])
    budget = Budget()  # every box is a keyframe region: counted before it is built
    for i, t in enumerate(d["tracks"], 1):
        if not isinstance(t, dict) or not isinstance(t.get("description"), str) or not t["description"].strip():
            raise LayoutError(f"track {i}: needs a non-empty 'description' string")
        boxes, label = t.get("boxes"), t.get("label", "")
        if not isinstance(label, str):
            raise LayoutError(f"track {i}: 'label' must be a string")
        if not isinstance(boxes, list):
            raise LayoutError(f"track {i} ({t['description'][:40]!r}): 'boxes' must be a list, one entry per frame")
        n = max(n, _frames_len(len(boxes), f"track {i}"))
        per_frame = []
        for f, b in enumerate(boxes):
            if b is None:
                per_frame.append(None)
                continue
            if fmt == "xywh":
                x, y, bw, bh = _finite_box(b, f"track {i} frame {f}")
                b = [x, y, x + bw, y + bh]
            box = _clipped_box(b, W, H, f"track {i} frame {f}")
            if box is not None:
                budget.take("keyframe_regions", 1, f"track {i} frame {f} (each box is a keyframe region)")
            per_frame.append([Region("box", box=box)] if box is not None else None)
        inst = track_instance(t["description"], per_frame, label)
        if inst is None:
            raise LayoutError(f"track {i} ({t['description'][:40]!r}): no box on any frame")
        layout.instances.append(inst)
    layout.frames = n
    return layout.validate()


def from_mask_frames(masks: Any, description: str, layout: Layout | None = None) -> Layout:
    """A MASK batch ``[F, H, W]`` (values > 0.5 are foreground) as the per-frame masks of one instance.

    Frames with an empty mask are absent (outside the visible range, or bridged by the nearest mask inside it).
    Appended to ``layout`` (a copy; its canvas wins, masks stretch over it) or to a new H x W layout whose
    ``frames`` is F. The result is validated.
    """
    m = masks.detach() if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks, np.float32))
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise LayoutError(f"masks must be [frames, H, W], got shape {tuple(m.shape)}")
    _frames_len(m.shape[0], "the MASK batch")
    if not isinstance(description, str) or not description.strip():
        raise LayoutError("the instance needs a non-empty description")
    mh, mw = int(m.shape[1]), int(m.shape[2])
    if mh * mw > MAX_MASK_PIXELS:
        raise over("the MASK batch", f"the size of one mask ({mh}x{mw}) in pixels", mh * mw, MAX_MASK_PIXELS)
    budget = Budget()  # every non-empty mask is a keyframe region: counted before it is built
    per_frame: list[list[Region] | None] = []
    for f in range(m.shape[0]):
        fg = m[f] > 0.5
        if not bool(fg.any()):
            per_frame.append(None)
            continue
        where = f"the MASK batch frame {f} (each non-empty mask is a keyframe region)"
        budget.take("keyframe_regions", 1, where)
        budget.take("mask_pixels", mh * mw, where)
        per_frame.append([Region("mask", mask=fg.cpu().numpy())])
    inst = track_instance(description.strip(), per_frame)
    if inst is None:
        raise LayoutError(f"all {m.shape[0]} masks are empty; nothing to track")
    if layout is None:
        out = Layout(int(m.shape[2]), int(m.shape[1]), "", [inst], frames=int(m.shape[0]))
    else:
        out = copy.deepcopy(layout)
        out.instances.append(inst)
        out.frames = max(out.frames or 1, int(m.shape[0]))
    return out.validate()
