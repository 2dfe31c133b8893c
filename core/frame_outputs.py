"""What the video nodes draw from a layout over time: its preview and its masks on every frame.

The frame count and the mask size come from the nodes' own inputs, not from the layout, so the layout limits do not
bound them: the whole output is bounded here instead (:data:`MAX_OUTPUT_VALUES`, the same budget as Layout to Masks),
checked before anything is drawn, and every frame is drawn straight into a preallocated output of the final shape and
dtype (never a list of per-frame tensors joined at the end). docs/layout-format.md#limits states the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from . import raster
from .layout import Layout, LayoutError
from .layout.timeline import at_frame, visible
from .render import legend_height, preview_size, render_layout

MAX_OUTPUT_VALUES = 1 << 28  # values in one node's output (1 GiB as float32), as Layout to Masks' MAX_MASK_OUTPUT


def check_output(node: str, what: str, shape: tuple[int, ...], copies: int = 1, hint: str = "") -> None:
    """Refuse an output of ``copies`` tensors of ``shape`` over MAX_OUTPUT_VALUES values, naming the node and size."""
    n = copies * math.prod(shape)
    if n > MAX_OUTPUT_VALUES:
        raise LayoutError(f"{node}: {what} would be {n / 1e6:.0f} M values; at most {MAX_OUTPUT_VALUES / 1e6:.0f} M "
                          f"(1 GiB as float32){hint} (see docs/layout-format.md#limits)")


def _frame_heights(layout: Layout, n: int, legend: bool) -> list[int]:
    """Height of each frame's preview: the canvas (scaled down as render_layout does) plus the legend of the
    instances on that frame, computed without drawing (one legend per distinct set of visible instances)."""
    w, h = preview_size(int(layout.width), int(layout.height))
    if not legend:
        return [h] * n
    heights, seen = [], {}
    for f in range(n):
        on = tuple(k for k, inst in enumerate(layout.instances) if inst.enabled and visible(inst, f))
        if on not in seen:
            seen[on] = h + (legend_height(layout, [layout.instances[k] for k in on], [k + 1 for k in on], w)
                            if on else 0)
        heights.append(seen[on])
    return heights


def preview_frames(layout: Layout, n: int, underlay: Callable[[int], np.ndarray | None] | None = None,
                   opacity: float = 0.45, legend: bool = True, node: str = "Layout Preview over Frames") -> torch.Tensor:
    """``[n, H, W, 3]`` float32: frame f of the layout drawn by render_layout; frames shorter than the tallest (the
    legend grows with the instances on screen) repeat their last row. ``underlay(f)``: the picture under frame f.

    Refused before drawing when the batch would hold more than MAX_OUTPUT_VALUES values."""
    w, _ = preview_size(int(layout.width), int(layout.height))
    heights = _frame_heights(layout, n, legend)
    tallest = max(heights)
    check_output(node, f"{n} frames of {w}x{tallest} (RGB)", (n, tallest, w, 3),
                 hint=": draw fewer frames, or a smaller canvas (Layout at Frame shows one frame)")
    out = torch.empty((n, tallest, w, 3), dtype=torch.float32)
    dst = out.numpy()
    for f in range(n):
        img = render_layout(at_frame(layout, f), underlay=None if underlay is None else underlay(f), opacity=opacity,
                            legend=legend)
        dst[f, : img.shape[0]] = img
        dst[f, img.shape[0]:] = img[-1:]
    return out


def mask_frames(layout: Layout, instance: int, n: int, h: int, w: int,
                node: str = "Layout to Masks over Frames") -> tuple[torch.Tensor, torch.Tensor]:
    """(masks, background), each ``[n, h, w]`` float32: instance ``instance`` (from 1; 0 = every enabled instance
    together) on each frame, empty where it is absent, and the cells no enabled instance covers.

    Refused before drawing when the two outputs together would hold more than MAX_OUTPUT_VALUES values. Each frame
    draws only the chosen instance (never the stack of all of them)."""
    h, w = raster.grid(h, w)
    if not 0 <= instance <= len(layout.instances):
        raise LayoutError(f"instance {instance} does not exist; the layout has {len(layout.instances)} "
                          "(numbered from 1; 0 = all)")
    check_output(node, f"2 outputs of {n} masks of {w}x{h}", (n, h, w), copies=2,
                 hint=": ask for fewer frames or a smaller size")
    masks = torch.zeros((n, h, w), dtype=torch.float32)
    background = torch.empty((n, h, w), dtype=torch.float32)
    mk, bg = masks.numpy(), background.numpy()
    for f in range(n):
        lay = at_frame(layout, f)
        union = lay.union_mask(h, w).numpy()
        np.subtract(1.0, union, out=bg[f])
        if not instance:
            mk[f] = union
        elif lay.instances[instance - 1].enabled:
            raster.paste(mk[f], raster.instance_cells(lay.instances[instance - 1], lay.width, lay.height, h, w), 1.0)
    return masks, background
