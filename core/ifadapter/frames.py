"""IFAdapter over the frames of a video batch: per-frame appearance tokens and semantic maps, built lazily.

A layout over time (core.layout.timeline) is grouped into U distinct frames (up to 1,024). The resampler's tokens depend on
the descriptions only and the box embedding is added after it, so :class:`FrameTokens` holds each description's
tokens once (``[n, 13, C]``, cond and uncond) plus every distinct frame's boxes, never ``U x n`` tokens.

:class:`FramesRuntime` is what the patched layers (16 on SDXL) share. A UNet call needs the frames of its rows only (the batch,
or a context window): the first layer to see a set of frames builds their tokens (description tokens + the frames'
box embeddings) and each layer projects their K/V once; both are kept in a least-recently-used cache bounded by
``cache_bytes`` (default :data:`FRAMES_CACHE_BYTES`), keyed by the set of frames, so a context window's frames are
built once and reused at every step. A set of frames whose K/V exceed the budget is built for the call and dropped
(recomputed at the next step: slower, never more memory). The box cells and the per-row index tensors are built once
per (grid, rows). An absent instance is an empty slot on that frame (as a slot beyond the instance count).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from .adapter import IFAdapter
from .runtime import IFAdapterRuntime, InstanceTokens
from .semantic_map import InstanceGeometry, InstanceKV

# Cached per-frame tokens and K/V of one applied layout: 1 GiB holds a 16-frame window with 10 instances (K/V of the
# 16 layers: ~4.3 MB per instance per frame in fp32, ~680 MB) with room for the tokens.
FRAMES_CACHE_BYTES = 1 << 30


@dataclass(frozen=True, eq=False)
class FrameTokens:
    """Appearance tokens of a layout over time, without the per-frame box embedding (added when a frame is used).

    Attributes:
        cond: ``[n, 13, C]`` the description tokens (resampler + EoT, no box).
        uncond: ``[n, 13, C]`` the unconditional branch's tokens (zero descriptions, no box).
        boxes: ``[U, n, 4]`` normalised boxes of every distinct frame.
        index: ``[n_frames]`` long, frame -> distinct frame (frames past the end hold the last one).
        visible: ``[U, n]`` bool, which instances are present on each distinct frame.
        covered: the frame count the layout declares.
        descriptions: the n descriptions, for messages.
    """

    cond: Tensor
    uncond: Tensor
    boxes: Tensor
    index: Tensor
    visible: Tensor
    covered: int
    descriptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.cond.shape[0]
        if (self.cond.dim() != 3 or self.uncond.shape != self.cond.shape or self.boxes.dim() != 3
                or tuple(self.boxes.shape[1:]) != (n, 4) or tuple(self.visible.shape) != tuple(self.boxes.shape[:2])):
            raise ValueError(f"frame tokens need cond/uncond [n, T, C], boxes [U, n, 4] and visible [U, n]; got "
                             f"{tuple(self.cond.shape)}, {tuple(self.uncond.shape)}, {tuple(self.boxes.shape)}, "
                             f"{tuple(self.visible.shape)}")

    def __len__(self) -> int:
        return int(self.cond.shape[0])

    @property
    def distinct(self) -> int:
        """U, the number of distinct frames."""
        return int(self.boxes.shape[0])

    def frame(self, adapter: IFAdapter, u: int) -> InstanceTokens:
        """Distinct frame ``u``'s tokens as a static layout's (box embedding added), e.g. for a one-frame reference."""
        cond, uncond = self.build(adapter, (u,))
        return InstanceTokens(cond[0], uncond[0], self.boxes[u], self.descriptions)

    def build(self, adapter: IFAdapter, frames: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """``(cond, uncond)`` tokens ``[k, n, 13, C]`` of distinct frames ``frames``, on the adapter's device."""
        ref = adapter.text_proj_model.proj_in.weight
        idx = torch.tensor(frames, dtype=torch.long)
        boxes = self.boxes.index_select(0, idx).to(ref.device)
        with torch.no_grad():
            cond = adapter.add_boxes(self.cond.to(ref.device, ref.dtype)[None], boxes)
            uncond = adapter.add_boxes(self.uncond.to(ref.device, ref.dtype)[None], boxes)
        return cond, uncond

    def __deepcopy__(self, memo):
        return self


class ByteBudgetCache:
    """A least-recently-used mapping whose values' tensor bytes never exceed ``budget`` (larger values are not kept)."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.bytes = 0
        self._items: OrderedDict = OrderedDict()

    @staticmethod
    def size_of(value) -> int:
        if isinstance(value, Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, InstanceKV):
            return ByteBudgetCache.size_of(value.k) + ByteBudgetCache.size_of(value.v)
        return sum(ByteBudgetCache.size_of(v) for v in value)

    def get(self, key):
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        size = self.size_of(value)
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= self.size_of(old)
        while self._items and self.bytes + size > self.budget:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= self.size_of(dropped)
        self._items[key] = value
        self.bytes += size

    def __len__(self) -> int:
        return len(self._items)

    def keys(self):
        return list(self._items)


class FramesRuntime:
    """The state behind the patched layers (16 on SDXL) for a layout over time (see the module docstring)."""

    def __init__(self, adapter: IFAdapter, tokens: FrameTokens, scale: float = 1.0,
                 cache_bytes: int = FRAMES_CACHE_BYTES) -> None:
        # checks the instance count and token shapes, and moves the processors' small weights when needed
        self._processors = IFAdapterRuntime(adapter, InstanceTokens(tokens.cond, tokens.uncond, tokens.boxes[0]),
                                            scale)
        self.adapter, self.tokens, self.scale = adapter, tokens, float(scale)
        self.impl = "crop"
        self.cache = ByteBudgetCache(cache_bytes)
        self._geometry: dict = {}
        self._select: dict = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):
        return self

    def frame_tokens(self, frames: tuple[int, ...]) -> Tensor:
        """``[2k, n, 13, C]`` tokens of distinct frames ``frames``: row 2j = frame j's cond, 2j + 1 its uncond."""
        ck = ("tokens", frames)
        with self._lock:
            cached = self.cache.get(ck)
        if cached is None:
            cond, uncond = self.tokens.build(self.adapter, frames)
            cached = torch.stack([cond, uncond], dim=1).flatten(0, 1)
            with self._lock:
                self.cache.put(ck, cached)
        return cached

    def kv(self, key: tuple, device: torch.device, dtype: torch.dtype, frames: tuple[int, ...]) -> InstanceKV:
        """``[2k, S, H, T, d]`` K/V of distinct frames ``frames`` (rows as :meth:`frame_tokens`) for layer ``key``."""
        ck = ("kv", tuple(key), str(device), dtype, frames)
        with self._lock:
            cached = self.cache.get(ck)
        if cached is None:
            proc = self.adapter.processor(key)
            tokens = self.frame_tokens(frames).to(proc.to_k_ap.weight.device)
            with torch.no_grad():
                kv = proc.project_tokens(tokens)
            cached = InstanceKV(kv.k.to(device=device, dtype=dtype), kv.v.to(device=device, dtype=dtype))
            with self._lock:
                self.cache.put(ck, cached)
        return cached

    def geometry(self, h: int, w: int, rows: tuple[int, ...], device: torch.device) -> InstanceGeometry:
        """The layout of each row's distinct frame on an ``h x w`` grid; rasterised once per (grid, rows)."""
        gk = (h, w, rows, str(device))
        with self._lock:
            geo = self._geometry.get(gk)
        if geo is None:
            idx = torch.tensor(rows, dtype=torch.long)
            boxes = self.tokens.boxes.index_select(0, idx).float().to(device)
            geo = InstanceGeometry.from_boxes(boxes, h, w, self.tokens.visible.index_select(0, idx).to(device))
            with self._lock:
                if len(self._geometry) > 64:  # one entry per (grid, window); windows repeat every step
                    self._geometry.clear()
                self._geometry[gk] = geo
        return geo

    def selection(self, frames: tuple[int, ...], positive: tuple[bool, ...], device: torch.device
                  ) -> tuple[tuple[int, ...], Tensor]:
        """The distinct frames of a call and, per row, its row in their ``[2k, ...]`` K/V; built once per pattern."""
        sk = (frames, positive, str(device))
        with self._lock:
            hit = self._select.get(sk)
        if hit is None:
            distinct = tuple(sorted(set(frames)))
            at = {f: j for j, f in enumerate(distinct)}
            sel = torch.tensor([2 * at[f] + (0 if p else 1) for f, p in zip(frames, positive, strict=True)],
                               dtype=torch.long, device=device)
            hit = (distinct, sel)
            with self._lock:
                if len(self._select) > 256:
                    self._select.clear()
                self._select[sk] = hit
        return hit

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
        frames = tuple(int(f) for f in frames)
        distinct, sel = self.selection(frames, tuple(bool(p) for p in positive.tolist()), device)
        kv2 = self.kv(key, device, dtype, distinct)
        kv = InstanceKV(kv2.k.index_select(0, sel), kv2.v.index_select(0, sel))
        geo = self.geometry(grid[0], grid[1], frames, device)
        with torch.no_grad():
            delta = self._processors.processor(key, device)(q, kv, geo, impl=self.impl)
        if self.scale != 1.0:
            delta = delta * self.scale
        return delta
