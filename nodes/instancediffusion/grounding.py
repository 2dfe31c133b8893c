"""The patch objects Apply InstanceDiffusion puts on a MODEL clone, and the state they share.

- ``middle_patch`` (between attn1 and attn2 of each of the 16 transformer blocks, ``transformer_index`` 0..15):
  the UniFusion fuser of that block. Rows are routed with ``cond_or_uncond``: positive rows get the layout's
  grounding tokens, negative rows the all-null grounding tokens (as the official sampler does: the uncond pass is
  *not* plain SD). The position net runs once per (device, dtype) and the tokens are cached on the patch state, and
  so are the tokens' keys and values in each fuser (:class:`GroundingKV`): a step projects only the visual tokens.
- ``output_block_patch``: ScaleU at the 12 decoder joins (all rows, every step).
- alpha: the fusers are on for the first ``int(alpha·steps)`` steps, counted exactly on every ComfyUI version by
  :class:`..steps.StepWindow` (the schedule from this pack's samplers, ComfyUI's ``sample_sigmas``, or captured on
  the 2024 build).
"""
from __future__ import annotations

import math

import torch

from ...core.instancediffusion import null_inputs, single_instance_inputs
from ...core.instancediffusion.grounding_kv import GroundingKV
from ..frames import FrameTable, chunk_frames
from ..patches import rows_by_cond
from ..steps import SCHEDULE_KEY, StepWindow
from .adapter import Adapter

MIS_KEY = "ifa_id_mis"  # transformer_options: {"branches": [...], "per": B} while the MIS sampler runs branches
SIGMAS_KEY = SCHEDULE_KEY  # transformer_options: the full schedule of the run (set by the MIS sampler)


class GroundingState:
    """Everything one Apply node prepared: the grounding inputs (cpu), the per-instance caption contexts for MIS,
    and the settings. Shared by the patch objects of every clone (never deep-copied); the only mutable part is the
    token cache, which depends only on (device, dtype).
    """

    def __init__(self, adapter: Adapter, inputs: dict, captions: list, strength: float, alpha: float,
                 window: StepWindow, scaleu: bool, names: list[str], frames: FrameTable | None = None):
        self.adapter = adapter
        self.inputs = inputs
        self.captions = captions  # per instance: CLIP hidden states [1, 77·k, 768] of its description
        self.strength = float(strength)
        self.alpha = float(alpha)
        self.window = window  # fusers on while step < int(alpha·steps)
        self.scaleu = bool(scaleu)
        self.names = names
        self.n = len(names)
        # a layout over time: self.inputs holds one row per distinct frame, token row 1 + frames.rows(...)
        self.frames = frames
        self._tokens: dict = {}
        self._rows: dict = {}
        self.kv = GroundingKV(adapter.module)  # the fusers' grounding keys/values of the token table, per run
        self.position_net_runs = 0  # how many times the position net ran (once per device/dtype)

    def __deepcopy__(self, memo):
        return self

    def tokens(self, device: torch.device, dtype: torch.dtype, instances: bool = False) -> torch.Tensor:
        """Table [2 (+ n), 184, 768]: 0 = null grounding, 1 = the full layout, 2 + i = instance i alone (MIS only,
        ``instances=True``). For a layout over time: [1 + U, 184, 768], row 1 + u = distinct frame u.

        Computed once per (device, dtype) and cached: the position net never runs per block or per step."""
        key = (str(device), dtype)
        t = self._tokens.get(key)
        if t is not None and (not instances or t.shape[0] == 2 + self.n):
            return t
        module = self.adapter.module
        self.adapter.to_device(device)
        drop = self.inputs["drop"]

        def encode(inp: dict, flags: torch.Tensor) -> torch.Tensor:
            batch = {k: v.to(device) for k, v in inp.items() if k != "drop"}
            self.position_net_runs += 1
            with torch.no_grad():
                return module.encode({**batch, "drop": flags})

        if t is None:
            rows = self.inputs["masks"].shape[0]  # 1, or the distinct frames: all at once, 4 frames per pass
            parts = [self.inputs] if rows == 1 else [
                {k: (v if k == "drop" else v[s:s + 4]) for k, v in self.inputs.items()} for s in range(0, rows, 4)]
            t = torch.cat([encode(null_inputs(), torch.zeros(4, dtype=torch.bool))]
                          + [encode(p, drop) for p in parts], 0)
        else:
            t = t.float()
        if instances:  # one instance at a time: 30 mask stacks of 30x512x512 at once would be ~1 GB
            t = torch.cat([t[:2]] + [encode(single_instance_inputs(self.inputs, i), drop) for i in range(self.n)])
        t = t.to(dtype)
        self._tokens = {key: t}  # one device/dtype at a time
        return t

    def row_index(self, extra_options: dict, batch: int) -> torch.Tensor:
        """Per-row index into :meth:`tokens`: null for negative rows, full (or the MIS branch) for positive rows;
        for a layout over time, positive row p of each chunk gets its frame's row (frame p, or the context window's
        p-th frame)."""
        cou = tuple(extra_options.get("cond_or_uncond") or [0])
        mis = extra_options.get(MIS_KEY)
        branches = tuple(mis["branches"]) if mis else (0,)
        if mis and self.frames is not None:
            raise ValueError("the InstanceDiffusion MIS sampler works on single images, not on a layout over time; "
                             "use KSampler with the time-aware layout, or Layout at Frame for one frame")
        frames = None if self.frames is None else chunk_frames(extra_options, batch // len(cou))
        key = (cou, batch, branches, frames)
        idx = self._rows.get(key)
        if idx is None:
            positive, chunk = rows_by_cond(extra_options, batch)
            per_chunk = batch // len(cou)
            per_branch = max(1, per_chunk // len(branches))
            rows = []
            frame_rows = None if frames is None else self.frames.rows(frames)
            for r in range(batch):
                if not bool(positive[r]):
                    rows.append(0)
                elif frame_rows is not None:
                    rows.append(1 + frame_rows[r - chunk[r] * per_chunk])
                else:
                    b = branches[min((r - chunk[r] * per_chunk) // per_branch, len(branches) - 1)]
                    rows.append(1 + b)  # branch 0 = full -> 1; branch i+1 = instance i -> 2 + i
            idx = torch.tensor(rows, dtype=torch.long)
            self._rows[key] = idx
        return idx

    def fuser_scale(self, extra_options: dict) -> float:
        """strength × (1 while the step index < int(alpha·steps), else 0): :class:`..steps.StepWindow`."""
        if self.strength == 0.0:
            return 0.0
        return self.strength if self.window.active(extra_options) else 0.0


class FuserPatch:
    """``middle_patch``: the UniFusion fuser of transformer block ``transformer_index``."""

    def __init__(self, state: GroundingState):
        self.state = state

    def __deepcopy__(self, memo):
        return self

    def to(self, arg):  # ModelPatcher.model_patches_to(device) then (dtype)
        if isinstance(arg, torch.dtype):
            self.state.adapter.to_dtype(arg)
        elif isinstance(arg, (torch.device, str)):
            self.state.adapter.to_device(torch.device(arg))
        return self

    def __call__(self, x: torch.Tensor, extra_options: dict) -> torch.Tensor:
        st = self.state
        scale = st.fuser_scale(extra_options)
        if scale == 0.0:
            return x
        st.adapter.to_device(x.device)
        idx = st.row_index(extra_options, x.shape[0])
        table = st.tokens(x.device, torch.float32, instances=st.frames is None and bool((idx >= 2).any()))
        # the grounding tokens' keys/values in this fuser are projected once per run, not in every step
        return st.kv.fuse(x, table, idx, int(extra_options["transformer_index"]), scale)


class ScaleUPatch:
    """``output_block_patch``: ScaleU before each decoder concat (all rows, every step)."""

    def __init__(self, state: GroundingState):
        self.state = state

    def __deepcopy__(self, memo):
        return self

    def to(self, arg):
        return self

    def __call__(self, h: torch.Tensor, hsp: torch.Tensor, transformer_options: dict):
        block = transformer_options.get("block")
        if block is None or block[0] != "output":
            return h, hsp
        self.state.adapter.to_device(h.device)
        return self.state.adapter.module.scale_u(h, hsp, int(block[1]))


class MISContextPatch:
    """``attn2_patch`` used only by the MIS sampler: positive rows of instance branch i attend to instance i's own
    caption instead of the global prompt (the official per-instance branch input)."""

    def __init__(self, state: GroundingState):
        self.state = state
        self._last: tuple | None = None  # (context, row index, the context built from them)

    def __deepcopy__(self, memo):
        return self

    def __call__(self, n, context, value, extra_options):
        mis = extra_options.get(MIS_KEY)
        if not mis or context is None:
            return n, context, value
        idx = self.state.row_index(extra_options, context.shape[0])
        last = self._last
        if last is not None and last[0] is context and last[1] is idx:  # the other 15 blocks of this UNet call
            return (n, context, value) if last[2] is None else (n, last[2], last[2])
        ctx = self._context(context, idx)
        self._last = (context, idx, ctx)
        return (n, context, value) if ctx is None else (n, ctx, ctx)

    def _context(self, context: torch.Tensor, idx: torch.Tensor) -> torch.Tensor | None:
        rows_idx = idx.tolist()
        if not any(i >= 2 for i in rows_idx):
            return None
        caps = [self.state.captions[i - 2] if i >= 2 else None for i in rows_idx]
        length = context.shape[1]
        for c in caps:
            if c is not None:
                length = length * c.shape[1] // math.gcd(length, c.shape[1])
        rows = []
        for r, c in enumerate(caps):
            src = context[r:r + 1] if c is None else c.to(device=context.device, dtype=context.dtype)
            rows.append(src.repeat(1, length // src.shape[1], 1))  # repeating tokens leaves attention unchanged
        return torch.cat(rows, 0)


def find_state(model) -> GroundingState | None:
    for p in model.model_options.get("transformer_options", {}).get("patches", {}).get("middle_patch", []):
        if isinstance(p, FuserPatch):
            return p.state
    return None
