"""Layouts over time: resolve a time-aware (version 2) layout to the static layout of one frame.

A version-2 layout (docs/layout-format.md, "Layouts over time") gives an instance ``keyframes`` (frame -> its
regions at that frame) and a visible range ``frames`` = (first, last), inclusive, last None = to the end. This
module answers "what does frame i look like":

- before the first keyframe the first holds, after the last the last holds;
- between keyframes A and B (t = (i - a) / (b - a)), region j of A pairs with region j of B when both keyframes have
  the same number of regions and the kinds match: boxes, points (and their radius), polygon and scribble vertices
  (and the stroke width) move linearly; polygons and scribbles only when the vertex counts match. Anything that does
  not pair (different region counts, kinds or vertex counts, and masks always) takes the nearest keyframe in time
  (the earlier one at the exact middle);
- outside its visible range an instance is absent: :func:`at_frame` keeps it, disabled, so that instance numbers
  and back-end slots stay the same on every frame.

Pure numpy/torch, no ComfyUI.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from .limits import MAX_FRAMES, LayoutError
from .model import Instance, Layout, Region


def frame_span(layout: Layout) -> int:
    """Frames up to which anything changes: frame ``frame_span - 1`` and every later frame are identical.

    The last keyframe, the first frame after a visible range ends, the first visible frame (whichever is latest),
    plus one; 1 for a static layout.
    """
    last = 0
    for inst in layout.instances:
        if inst.keyframes:
            last = max(last, int(inst.keyframes[-1][0]))
        if inst.frames is not None:
            first, end = inst.frames
            last = max(last, int(first), (int(end) + 1) if end is not None else 0)
    return min(last + 1, MAX_FRAMES)


def frame_count(layout: Layout) -> int:
    """The number of frames the layout covers: its ``frames`` field if set, else :func:`frame_span`."""
    return int(layout.frames) if layout.frames is not None else frame_span(layout)


def visible(inst: Instance, frame: int) -> bool:
    """Whether ``inst`` is present on ``frame`` (inside its visible range; always when it has none)."""
    if inst.frames is None:
        return True
    first, last = inst.frames
    return frame >= first and (last is None or frame <= last)


def _lerp(a: float, b: float, t: float) -> float:
    """a + (b - a)·t, kept inside [min(a, b), max(a, b)] so that canvas bounds survive float rounding."""
    v = a + (b - a) * t
    return float(min(max(v, min(a, b)), max(a, b)))


def _lerp_region(ra: Region, rb: Region, t: float) -> Region | None:
    """Region ``ra`` moved a fraction ``t`` towards ``rb``, or None when the two do not pair (kinds, counts, mask)."""
    if ra.kind != rb.kind or ra.kind == "mask":
        return None
    if ra.kind == "box":
        return Region("box", box=tuple(_lerp(a, b, t) for a, b in zip(ra.box, rb.box)), extra=copy.deepcopy(ra.extra))
    if len(ra.points) != len(rb.points):
        return None
    pts = [(_lerp(xa, xb, t), _lerp(ya, yb, t)) for (xa, ya), (xb, yb) in zip(ra.points, rb.points)]
    width = ra.width if ra.width == rb.width else _lerp(ra.width, rb.width, t)
    return Region(ra.kind, points=pts, width=width, extra=copy.deepcopy(ra.extra))


def regions_at(inst: Instance, frame: int) -> list[Region]:
    """The instance's regions on ``frame`` (new objects; the instance is not changed). See the module docstring."""
    if frame < 0:
        raise LayoutError(f"frame {frame} is negative; frames count from 0")
    kfs = inst.keyframes
    if not kfs:
        return copy.deepcopy(inst.regions)
    frames = [int(f) for f, _ in kfs]
    k = int(np.searchsorted(frames, frame, side="right"))  # keyframes[k-1].frame <= frame < keyframes[k].frame
    if k == 0:
        return copy.deepcopy(kfs[0][1])
    fa, ra = kfs[k - 1]
    if k == len(kfs) or frame == fa:
        return copy.deepcopy(ra)
    fb, rb = kfs[k]
    t = (frame - fa) / (fb - fa)
    nearest = ra if t <= 0.5 else rb
    if len(ra) != len(rb):
        return copy.deepcopy(nearest)
    out = []
    for a, b, n in zip(ra, rb, nearest):
        r = _lerp_region(a, b, t)
        out.append(r if r is not None else copy.deepcopy(n))
    return out


def at_frame(layout: Layout, frame: int) -> Layout:
    """The static layout of ``frame``: every instance with its regions on that frame, no time fields.

    Instances outside their visible range come out disabled (kept, so numbering and slots do not shift). A static
    layout comes back as a copy of itself. ``frame`` >= the frame count holds the last keyframe.
    """
    if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool) or frame < 0:
        raise LayoutError(f"frame must be an integer >= 0, got {frame!r}")
    if not layout.timed:
        return copy.deepcopy(layout)
    out = Layout(layout.width, layout.height, layout.prompt, [], copy.deepcopy(layout.extra))
    for inst in layout.instances:
        out.instances.append(Instance(
            inst.description, inst.label, regions_at(inst, int(frame)), inst.z, inst.weight,
            inst.enabled and visible(inst, int(frame)), inst.color, copy.deepcopy(inst.extra)))
    return out


class Timeline:
    """A layout resolved over ``n`` frames, grouped into the distinct frames a back-end has to encode.

    Attributes:
        n: frames covered (row i of a batch is frame ``min(i, n - 1)``).
        layouts: the distinct static frame layouts, every *active* instance of the source layout enabled in it
            (absent ones too, with their nearest regions; see ``visible``), so back-end slots line up.
        index: ``[n]`` long, frame -> position in ``layouts``.
        visible: ``[len(layouts), n_active]`` bool, which active instances are present in each distinct frame.
    """

    def __init__(self, layout: Layout, n: int):
        if not 1 <= n <= MAX_FRAMES:
            raise LayoutError(f"frame count {n} must be in 1..{MAX_FRAMES}")
        self.n = int(n)
        active = [inst for inst in layout.instances if inst.enabled]
        span = min(frame_span(layout), self.n)
        self.layouts: list[Layout] = []
        vis: list[list[bool]] = []
        index = []
        for f in range(span):  # frames >= span repeat frame span - 1
            frame = Layout(layout.width, layout.height, layout.prompt,
                           [Instance(inst.description, inst.label, regions_at(inst, f), inst.z, inst.weight, True,
                                     inst.color, inst.extra) for inst in active], layout.extra)
            v = [visible(inst, f) for inst in active]
            if self.layouts and v == vis[-1] and frame == self.layouts[-1]:
                index.append(len(self.layouts) - 1)
                continue
            self.layouts.append(frame)
            vis.append(v)
            index.append(len(self.layouts) - 1)
        index += [index[-1]] * (self.n - span)
        self.index = torch.tensor(index, dtype=torch.long)
        self.visible = torch.tensor(vis, dtype=torch.bool).reshape(len(self.layouts), len(active))

    def __len__(self) -> int:
        return len(self.layouts)


def frame_rows(frames: Sequence[int], n: int) -> list[int]:
    """Frame indices clamped to ``0..n-1`` (frames past the layout's end hold its last frame)."""
    return [min(max(int(f), 0), n - 1) for f in frames]
