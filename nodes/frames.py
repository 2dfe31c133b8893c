"""Which frame each batch row of a UNet call is: batch position, or the frames of a video context window.

Batch row i of the latent is frame i. Inside one UNet call the rows come chunk by chunk (``cond_or_uncond``), each
chunk holding the same frames in the same order. When a context-window sampler passes a subset of the frames, the
chunk's rows are those frames:

- AnimateDiff-Evolved: ``transformer_options["ad_params"]["sub_idxs"]`` (its exposed parameters; None without
  context windows);
- ComfyUI's own context windows (v0.3.4x+): ``transformer_options["context_window"].index_list`` (batch dim 0).
"""
from __future__ import annotations

import logging

log = logging.getLogger("comfyui-ifadapter")


def window_frames(extra_options: dict, per_chunk: int) -> tuple[int, ...] | None:
    """The frame index of each row of a chunk of ``per_chunk`` rows when a context window is active, else None."""
    ad = extra_options.get("ad_params")
    sub = ad.get("sub_idxs") if isinstance(ad, dict) else None
    if sub is None:
        win = extra_options.get("context_window")
        if win is not None and getattr(win, "dim", 0) == 0:
            sub = getattr(win, "index_list", None)
    if sub is not None and len(sub) == per_chunk:
        return tuple(int(i) for i in sub)
    return None


def chunk_frames(extra_options: dict, per_chunk: int) -> tuple[int, ...]:
    """Frame index of each row of one ``cond_or_uncond`` chunk: the context window's frames, else 0..per_chunk-1."""
    win = window_frames(extra_options, per_chunk)
    return win if win is not None else tuple(range(per_chunk))


class FrameWarning:
    """Says once per applied layout that the batch has more frames than the layout covers."""

    def __init__(self, node: str, covered: int):
        self.node, self.covered, self.said = node, int(covered), False

    def __deepcopy__(self, memo):
        return self

    def check(self, frames: tuple[int, ...]) -> None:
        last = max(frames) if frames else 0
        if last >= self.covered and not self.said:
            self.said = True
            log.warning("[comfyui-ifadapter] %s: the layout covers %d frame(s) but the batch has at least %d; the "
                        "extra frames hold the layout's last frame", self.node, self.covered, last + 1)


class FrameTable:
    """Frame -> row of a per-frame table (distinct frames only), for a layout over time.

    ``index`` ``[n]`` long: frame f's row (``core.layout.timeline.Timeline.index``); frames >= n hold row ``index[n-1]``.
    ``covered``: the frame count the layout declares (the warning fires past it).
    """

    def __init__(self, index, covered: int, node: str):
        self.index = [int(i) for i in index]
        self.warning = FrameWarning(node, max(int(covered), len(self.index)))

    def __deepcopy__(self, memo):
        return self

    def rows(self, frames: tuple[int, ...]) -> list[int]:
        """The table row of each frame in ``frames`` (warns once when a frame lies past the layout)."""
        self.warning.check(frames)
        last = len(self.index) - 1
        return [self.index[min(f, last)] for f in frames]
