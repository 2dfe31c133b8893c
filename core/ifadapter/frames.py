"""IFAdapter over the frames of a video batch: per-frame appearance tokens and semantic maps, built once.

A layout over time (core.layout.timeline) is grouped into U distinct frames. :class:`FrameTokens` holds one
:class:`~.runtime.InstanceTokens` per distinct frame (the box embedding makes the tokens depend on the boxes) and which
instances are present on it. :class:`FramesRuntime` is what the 16 patched layers share: the K/V of all frames'
``[cond; uncond]`` tokens are projected once per (layer, device, dtype) and the per-frame box cells once per grid;
each UNet call then only gathers the rows of its frames (``frames`` per batch row, from the batch position or the
context window). An absent instance is an empty slot on that frame (as a slot beyond the instance count).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from .adapter import IFAdapter
from .runtime import IFAdapterRuntime, InstanceTokens
from .semantic_map import InstanceGeometry, InstanceKV


@dataclass(frozen=True, eq=False)
class FrameTokens:
    """Appearance tokens of a layout over time.

    Attributes:
        frames: one InstanceTokens per distinct frame (the same n instances in the same slots).
        index: ``[n_frames]`` long, frame -> distinct frame (frames past the end hold the last one).
        visible: ``[U, n]`` bool, which instances are present on each distinct frame.
        covered: the frame count the layout declares.
    """

    frames: tuple[InstanceTokens, ...]
    index: Tensor
    visible: Tensor
    covered: int

    def __post_init__(self) -> None:
        n = {len(t) for t in self.frames}
        if len(n) != 1 or tuple(self.visible.shape) != (len(self.frames), n.pop()):
            raise ValueError("every distinct frame needs tokens for the same instances, and visible must be [U, n]")

    def __len__(self) -> int:
        return len(self.frames[0])

    @property
    def boxes(self) -> Tensor:
        """``[U, n, 4]`` normalised boxes of every distinct frame."""
        return torch.stack([t.boxes for t in self.frames])

    def __deepcopy__(self, memo):
        return self


class FramesRuntime:
    """The state behind the 16 patched layers for a layout over time (see the module docstring)."""

    def __init__(self, adapter: IFAdapter, tokens: FrameTokens, scale: float = 1.0) -> None:
        self.per_frame = [IFAdapterRuntime(adapter, t, scale) for t in tokens.frames]  # checks every frame's tokens
        self.adapter, self.tokens, self.scale = adapter, tokens, float(scale)
        self._kv: dict = {}
        self._cells: dict = {}
        self._geometry: dict = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):
        return self

    def kv(self, key: tuple, device: torch.device, dtype: torch.dtype) -> InstanceKV:
        """``[2U, S, H, T, d]``: row 2u = frame u's cond tokens, 2u + 1 its uncond tokens; projected once."""
        ck = (tuple(key), str(device), dtype)
        with self._lock:
            cached = self._kv.get(ck)
            if cached is None:
                proc = self.adapter.processor(key)
                wdev = proc.to_k_ap.weight.device
                tokens = torch.stack([x for t in self.tokens.frames for x in (t.cond, t.uncond)]).to(wdev)
                with torch.no_grad():
                    kv = proc.project_tokens(tokens)
                cached = InstanceKV(kv.k.to(device=device, dtype=dtype), kv.v.to(device=device, dtype=dtype))
                self._kv[ck] = cached
        return cached

    def geometry(self, h: int, w: int, rows: tuple[int, ...], device: torch.device) -> InstanceGeometry:
        """The layout of each row's distinct frame on an ``h x w`` grid; cells rasterised once per grid."""
        gk = (h, w, rows, str(device))
        with self._lock:
            geo = self._geometry.get(gk)
            if geo is None:
                ck = (h, w, str(device))
                cells = self._cells.get(ck)
                if cells is None:
                    one = InstanceGeometry.from_boxes(self.tokens.boxes.float(), h, w, self.tokens.visible)
                    cells = (one.cells.to(device), one.valid.to(device))
                    self._cells[ck] = cells
                idx = torch.tensor(rows, dtype=torch.long, device=device)
                geo = InstanceGeometry.from_cells(cells[0].index_select(0, idx), cells[1].index_select(0, idx))
                if len(self._geometry) > 64:  # one entry per (grid, window); windows repeat every step
                    self._geometry.clear()
                self._geometry[gk] = geo
        return geo

    def layer_delta(self, key: tuple, q: Tensor, positive: Tensor, grid: tuple[int, int],
                    frames: list[int]) -> Tensor:
        """The residual for attn2 layer ``key`` ``[B, N, hidden]``; ``frames[r]`` = distinct frame of row r."""
        b = q.shape[0]
        proc = self.adapter.processor(key)
        if q.shape[2] != proc.hidden_size:
            raise ValueError(f"IFAdapter layer {key} is {proc.hidden_size} wide but the model's attention there is "
                             f"{q.shape[2]} wide: this adapter does not belong to this model")
        if len(frames) != b:
            raise ValueError(f"{len(frames)} frame indices for {b} rows")
        device, dtype = q.device, q.dtype
        kv2 = self.kv(key, device, dtype)
        sel = torch.tensor([2 * f for f in frames], dtype=torch.long, device=device)
        sel = sel + (~positive.to(device=device, dtype=torch.bool)).long()
        kv = InstanceKV(kv2.k.index_select(0, sel), kv2.v.index_select(0, sel))
        geo = self.geometry(grid[0], grid[1], tuple(frames), device)
        with torch.no_grad():
            delta = self.per_frame[0].processor(key, device)(q, kv, geo)
        if self.scale != 1.0:
            delta = delta * self.scale
        return delta
