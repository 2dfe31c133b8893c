"""InstanceDiffusion grounding inputs for a layout over time: one input row per distinct frame.

A :class:`core.layout.timeline.Timeline` groups the frames into distinct static layouts. Each becomes one row of the
position-net input (the same slot per instance on every frame); an instance absent on a frame gets a null slot there
(``masks`` 0 and every field zero, as the official code pads unused slots). The drop flags (the preset) are chosen
once for the whole clip, so that every frame is read the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..layout.timeline import Timeline
from .inputs import PRESETS, from_layout


def frame_inputs(
    timeline: Timeline, embeddings: Sequence[torch.Tensor] | torch.Tensor, preset: str = "auto", seed: int = 0,
    **kw,
) -> dict[str, torch.Tensor]:
    """Position-net inputs ``[len(timeline), 30, ...]`` (``drop`` ``[4]``): row u = distinct frame u.

    ``embeddings``: ``[n_active, 768]`` pooled CLIP embeddings, one per active instance of the source layout.
    ``preset`` "auto" is resolved on the first distinct frame and used for all of them; ``kw`` go to from_layout.
    """
    rows = []
    for u, lay in enumerate(timeline.layouts):
        inp = from_layout(lay, embeddings, preset=preset, seed=seed, **kw)
        if preset == "auto":
            preset = next(name for name, flags in PRESETS.items() if torch.equal(flags.as_tensor(), inp["drop"]))
        for i in torch.nonzero(~timeline.visible[u]).flatten().tolist():
            for k, v in inp.items():
                if k != "drop":
                    v[0, i] = 0
        rows.append(inp)
    out = {k: torch.cat([r[k] for r in rows], 0) for k in rows[0] if k != "drop"}
    out["drop"] = rows[0]["drop"]
    return out
