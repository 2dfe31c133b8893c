"""Short, bounded text for layouts, instances and regions (their ``repr``).

ComfyUI keeps ``str()`` of every input of a node that failed in the prompt's history (``execution_error`` ->
``current_inputs``) for as long as the server runs, and logs it. The dataclass default spelled out every point,
description, keyframe and unknown JSON field, so a hostile layout made each failed prompt hold a copy of itself
(issue 18 item 5: several MB per prompt, never released). These summaries stay under :data:`MAX_REPR` characters
whatever the layout holds.
"""
from __future__ import annotations

from typing import Any

MAX_TEXT = 40  # characters of a description or prompt shown
MAX_LISTED = 4  # instances / regions spelled out, then "... N more"
MAX_REPR = 2000  # the longest summary of a layout


def _text(s: Any) -> str:
    s = str(s)
    return repr(s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + "...") + (f" ({len(s)} chars)" if len(s) > MAX_TEXT else "")


def _num(v: Any) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return "?"


def region_summary(r: Any) -> str:
    kind = str(r.kind)[:MAX_TEXT]
    if r.mask is not None:
        shape = getattr(r.mask, "shape", ())
        what = "x".join(str(int(n)) for n in shape[:2]) if len(shape) >= 2 else "?"
    elif r.box is not None:
        what = "(" + ", ".join(_num(v) for v in list(r.box)[:4]) + ")"
    elif r.points is not None:
        what = f"{len(r.points)} points"
    else:
        what = "empty"
    extra = f", {len(r.extra)} unknown fields" if r.extra else ""
    return f"Region({kind}: {what}{extra})"


def _regions(regions: list) -> str:
    shown = ", ".join(region_summary(r) for r in regions[:MAX_LISTED])
    more = f", ... {len(regions) - MAX_LISTED} more" if len(regions) > MAX_LISTED else ""
    return f"[{shown}{more}]"


def instance_summary(inst: Any) -> str:
    parts = [_text(inst.description), f"regions={_regions(inst.regions)}"]
    if inst.keyframes is not None:
        parts.append(f"{len(inst.keyframes)} keyframes")
    if inst.frames is not None:
        parts.append(f"frames={tuple(inst.frames)!r}"[:MAX_TEXT])
    if not inst.enabled:
        parts.append("disabled")
    if inst.extra:
        parts.append(f"{len(inst.extra)} unknown fields")
    return "Instance(" + ", ".join(parts) + ")"


def layout_summary(lay: Any) -> str:
    n = len(lay.instances)
    parts = [f"{lay.width}x{lay.height}", f"{n} instances"]
    if lay.frames is not None:
        parts.append(f"frames={lay.frames}")
    if lay.prompt:
        parts.append(f"prompt={_text(lay.prompt)}")
    if lay.extra:
        keys = sorted(str(k)[:MAX_TEXT] for k in list(lay.extra)[:MAX_LISTED])
        parts.append(f"unknown fields {keys}" + (f" and {len(lay.extra) - MAX_LISTED} more"
                                                 if len(lay.extra) > MAX_LISTED else ""))
    listed = [instance_summary(i) for i in lay.instances[:MAX_LISTED]]
    if n > MAX_LISTED:
        listed.append(f"... {n - MAX_LISTED} more")
    text = "Layout(" + ", ".join(parts) + (": " + "; ".join(listed) if listed else "") + ")"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 4] + "...)"
