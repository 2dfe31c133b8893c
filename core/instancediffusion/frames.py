"""InstanceDiffusion grounding inputs for a layout over time: one input row per distinct frame, built on demand.

A :class:`core.layout.timeline.Timeline` groups the frames into distinct static layouts. Each becomes one row of the
position-net input (the same slot per instance on every frame); an instance absent on a frame gets a null slot there
(``masks`` 0 and every field zero, as the official code pads unused slots). The drop flags (the preset) are chosen
once for the whole clip, so that every frame is read the same way.

One row is about 32 MB (30 slots of 512 x 512 instance masks), so :class:`FrameInputs` builds only the rows asked
for (the frames a batch or a context window holds): a 1,024-frame layout sampled on a short batch never builds the
other frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ..layout.timeline import Timeline
from .inputs import PRESETS, from_layout


class FrameInputs:
    """The position-net input row of each distinct frame of ``timeline``, built when asked for (nothing cached: the
    caller keeps what it encodes). ``preset`` "auto" is resolved on distinct frame 0 and used for every frame;
    ``kw`` go to from_layout."""

    def __init__(self, timeline: Timeline, embeddings: Sequence[torch.Tensor] | torch.Tensor, preset: str = "auto",
                 seed: int = 0, **kw):
        self.timeline = timeline
        self.embeddings = embeddings
        self.seed = seed
        self.kw = kw
        first = from_layout(timeline.layouts[0], embeddings, preset=preset, seed=seed, **kw)
        if preset == "auto":
            preset = next(name for name, flags in PRESETS.items() if torch.equal(flags.as_tensor(), first["drop"]))
        self.preset = preset
        self.drop = first["drop"]

    def __len__(self) -> int:
        return len(self.timeline)

    def row(self, u: int) -> dict[str, torch.Tensor]:
        """Distinct frame ``u``'s input (``[1, 30, ...]`` each, ``drop`` ``[4]``), absent instances nulled."""
        inp = from_layout(self.timeline.layouts[u], self.embeddings, preset=self.preset, seed=self.seed, **self.kw)
        for i in torch.nonzero(~self.timeline.visible[u]).flatten().tolist():
            for k, v in inp.items():
                if k != "drop":
                    v[0, i] = 0
        return inp

    def rows(self, us: Iterable[int]) -> dict[str, torch.Tensor]:
        """Distinct frames ``us`` stacked: ``[len(us), 30, ...]`` (``drop`` ``[4]``), row j = distinct frame us[j]."""
        rows = [self.row(int(u)) for u in us]
        if not rows:
            raise ValueError("FrameInputs.rows: no frame asked for")
        out = {k: torch.cat([r[k] for r in rows], 0) for k in rows[0] if k != "drop"}
        out["drop"] = self.drop
        return out


def frame_inputs(
    timeline: Timeline, embeddings: Sequence[torch.Tensor] | torch.Tensor, preset: str = "auto", seed: int = 0,
    **kw,
) -> dict[str, torch.Tensor]:
    """Position-net inputs ``[len(timeline), 30, ...]`` (``drop`` ``[4]``) of every distinct frame: row u = distinct
    frame u. ``embeddings``: ``[n_active, 768]`` pooled CLIP embeddings, one per active instance of the source
    layout. Builds them all at once; the Apply node uses :class:`FrameInputs` to build only the frames it samples."""
    return FrameInputs(timeline, embeddings, preset, seed, **kw).rows(range(len(timeline)))
