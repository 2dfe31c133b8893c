"""Grounding state of Apply InstanceDiffusion for a layout over time: tokens per distinct frame, built on demand.

Each distinct frame's position-net input is ~32 MB (30 slots of 512 x 512 masks) and its tokens 0.5 MB, so nothing
is built for frames that no UNet call holds: a call's rows name their frames (batch position, or the context
window's frames), the missing ones are encoded (4 frames per position-net pass) and cached per (device, dtype), and
the call reads a table of just its own frames. Memory grows with the frames sampled, not with the layout's length.
"""
from __future__ import annotations

import torch

from ...core.instancediffusion import null_inputs
from .grounding import GroundingState


class FrameGroundingState(GroundingState):
    """:class:`GroundingState` whose ``inputs`` is a :class:`core.instancediffusion.frames.FrameInputs`.

    :meth:`row_index` keeps the base class's numbering (0 = null, 1 + u = distinct frame u; cached in ``_rows``) but
    returns positions in the table of the call's own rows, which :meth:`tokens` then returns (the FuserPatch asks
    for the index first, then the table)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._frame_tokens: dict[int, torch.Tensor] = {}  # 0 = null, 1 + u = distinct frame u (at _frame_key)
        self._frame_key = None
        self._used: tuple[int, ...] | None = None  # the latest call's rows (0 / 1 + u), in table order
        self._compact: dict[tuple[int, ...], tuple[tuple[int, ...], torch.Tensor]] = {}
        self._table_rows: tuple[int, ...] | None = None  # the rows of the cached table in ``_tokens``

    def row_index(self, extra_options: dict, batch: int) -> torch.Tensor:
        idx = super().row_index(extra_options, batch)
        key = tuple(idx.tolist())
        hit = self._compact.get(key)
        if hit is None:
            used = tuple(sorted(set(key)))
            pos = {r: p for p, r in enumerate(used)}
            hit = (used, torch.tensor([pos[r] for r in key], dtype=torch.long))
            self._compact[key] = hit
        self._used = hit[0]
        return hit[1]

    def tokens(self, device: torch.device, dtype: torch.dtype, instances: bool = False) -> torch.Tensor:
        """``[len(used), 184, 768]``: row p = the p-th of the latest call's rows (null, or a distinct frame); every
        distinct frame (``[1 + U, ...]``, as the static table) when no call has asked yet."""
        if instances:
            raise ValueError("per-instance grounding (the MIS sampler) works on single images, not on a layout over "
                             "time")
        used = self._used if self._used is not None else tuple(range(1 + len(self.inputs)))
        key = (str(device), dtype)
        if key != self._frame_key:  # one device/dtype at a time
            self._frame_tokens, self._frame_key, self._tokens = {}, key, {}
        missing = [r for r in used if r not in self._frame_tokens]
        if missing:
            self.adapter.to_device(device)
            module = self.adapter.module

            def encode(inp: dict, flags: torch.Tensor) -> torch.Tensor:
                batch = {k: v.to(device) for k, v in inp.items() if k != "drop"}
                self.position_net_runs += 1
                with torch.no_grad():
                    return module.encode({**batch, "drop": flags}).to(dtype)

            if 0 in missing:
                self._frame_tokens[0] = encode(null_inputs(), torch.zeros(4, dtype=torch.bool))[0]
            frames = [r - 1 for r in missing if r > 0]
            for s in range(0, len(frames), 4):  # at most 4 frames' inputs (~130 MB) at a time
                part = frames[s:s + 4]
                t = encode(self.inputs.rows(part), self.inputs.drop)
                for j, u in enumerate(part):
                    self._frame_tokens[1 + u] = t[j]
        table = self._tokens.get(key)
        if table is None or self._table_rows != used:
            table = torch.stack([self._frame_tokens[r] for r in used])
            self._tokens, self._table_rows = {key: table}, used
        return table
