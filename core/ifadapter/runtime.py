"""Everything IFAdapter needs at sampling time, independent of the host application (pure torch).

- :func:`eot_and_word_mask`: where the EoT token and the description words sit in a CLIP-L token chunk;
- :class:`InstanceTokens`: the per-instance appearance tokens of one layout, for the conditional branch and the
  unconditional one (boxes kept, descriptions zeroed, as the official pipeline does);
- :func:`token_grid`: the ``h x w`` token grid of an attention layer from the latent size (non-square safe);
- :class:`IFAdapterRuntime`: the shared state behind the patched layers (16 on SDXL) of one model patch. It routes
  conditional / unconditional rows to their tokens, caches each layer's K/V projection per (device, dtype) and the
  rasterised layout per grid, and returns the residual ``gamma * tanh(lambda) * (1 - M_bg) * D`` for a layer.

Weight-holding objects here return themselves from ``__deepcopy__``: the host (ComfyUI) deep-copies patch
dictionaries on every model clone, and the adapter weights must exist once in memory.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .adapter import TOKENS_PER_INSTANCE, IFAdapter
from .semantic_map import IFAttnProcessor, InstanceGeometry, InstanceKV

BOS_TOKEN = 49406
EOT_TOKEN = 49407


def eot_and_word_mask(token_ids: Sequence[int], length: int | None = None) -> tuple[int, Tensor]:
    """EoT position and word mask of one CLIP-L token chunk ``[BOS, w1 .. wk, EoT, pad ...]``.

    The EoT is the first ``49407`` after position 0 (CLIP-L pads with 49407 too, so later ones are padding).
    Returns ``(eot, mask)`` with ``mask`` ``[length]`` bool, True at positions ``1 .. eot-1`` (the words).
    """
    ids = [int(t) for t in token_ids]
    length = len(ids) if length is None else length
    try:
        eot = ids.index(EOT_TOKEN, 1)
    except ValueError:
        raise ValueError(f"token chunk has no EoT token ({EOT_TOKEN}) after position 0: {ids[:8]}...") from None
    mask = torch.zeros(length, dtype=torch.bool)
    mask[1:eot] = True
    return eot, mask


@dataclass(frozen=True, eq=False)
class InstanceTokens:
    """Appearance tokens of one layout's enabled instances.

    Attributes:
        cond: ``[n, 13, C]`` tokens from the descriptions (C = 2048 for SDXL).
        uncond: ``[n, 13, C]`` tokens for the unconditional branch (zero descriptions, boxes kept).
        boxes: ``[n, 4]`` normalised xyxy boxes the tokens were built with.
        descriptions: the n descriptions, for messages.
    """

    cond: Tensor
    uncond: Tensor
    boxes: Tensor
    descriptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        for name, t in (("cond", self.cond), ("uncond", self.uncond)):
            if t.dim() != 3 or t.shape[0] != n:
                raise ValueError(f"{name} tokens must be [{n}, T, C] for {n} boxes; got {tuple(t.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __deepcopy__(self, memo):  # immutable by convention
        return self


def token_grid(
    n_tokens: int,
    latent_hw: Sequence[int] | None,
    activations_hw: Sequence[int] | None = None,
    aspect: float | None = None,
    max_levels: int = 4,
) -> tuple[int, int]:
    """The ``(h, w)`` token grid of an attention layer with ``n_tokens`` query tokens.

    ``activations_hw`` (ComfyUI >= 0.3.28 passes it) wins when it matches. Otherwise the latent size is halved with
    ``ceil`` once per UNet level (stride-2 convolutions with padding 1) until ``h * w == n_tokens``; for an SDXL
    latent of 97 x 130, IFAdapter's layers are at ``ceil(ceil(97/2)/2) = 25`` x ``33``. As a last resort (no
    usable latent size), the grid is solved from the aspect ratio ``w / h`` of the layout.
    """
    if activations_hw is not None:
        h, w = int(activations_hw[0]), int(activations_hw[1])
        if h * w == n_tokens:
            return h, w
    if latent_hw is not None:
        h, w = int(latent_hw[0]), int(latent_hw[1])
        for _ in range(max_levels + 1):
            if h * w == n_tokens:
                return h, w
            h, w = math.ceil(h / 2), math.ceil(w / 2)
    if aspect is not None and aspect > 0:
        h = max(1, round(math.sqrt(n_tokens / aspect)))
        for cand in (h, h - 1, h + 1, h - 2, h + 2):
            if cand > 0 and n_tokens % cand == 0:
                return cand, n_tokens // cand
    raise ValueError(
        f"cannot tell the token grid of a layer with {n_tokens} tokens from latent size {latent_hw} "
        f"(activations {activations_hw})"
    )


@dataclass(eq=False)
class _Caches:
    kv: dict = field(default_factory=dict)
    processors: dict = field(default_factory=dict)
    geometry: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class IFAdapterRuntime:
    """IFAdapter applied with one set of instance tokens: what the patched layers (16 on SDXL) share.

    ``layer_delta(key, q, positive, grid)`` returns ``gamma * tanh(lambda) * (1 - M_bg) * D`` ``[B, N, hidden]``
    for query rows ``q`` ``[B, N, hidden]``; ``positive`` ``[B]`` bool says which rows are conditional (they get the
    description tokens) and which are unconditional (box-only tokens).

    Caches (filled lazily, kept for the life of this object, which lives as long as the patched model):

    - K/V of the instance tokens per (layer, device, dtype): projected once, reused at every step;
    - a device copy of a layer's small fusion weights (norms, CBAM, 1x1 conv, gate; float32) when the adapter
      weights live elsewhere (e.g. adapter on CPU, UNet on GPU) - the large K/V projection weights never move;
    - the rasterised layout per (grid, batch, device).
    """

    def __init__(self, adapter: IFAdapter, tokens: InstanceTokens, scale: float = 1.0) -> None:
        if len(tokens) > adapter.max_obj:
            raise ValueError(f"{len(tokens)} instances given but IFAdapter supports at most 10 per image")
        t = tokens.cond.shape[1]
        if not 1 <= t <= TOKENS_PER_INSTANCE or tokens.cond.shape[2:] != (adapter.context_dim,):
            # fewer than 13 tokens: a token-set ablation (token_sets.py) kept only some of them
            raise ValueError(
                f"instance tokens are {tuple(tokens.cond.shape[1:])} per instance; this adapter needs "
                f"({TOKENS_PER_INSTANCE}, {adapter.context_dim}) or a subset of the {TOKENS_PER_INSTANCE}"
            )
        self.adapter = adapter
        self.tokens = tokens
        self.scale = float(scale)
        self.impl = "crop"  # the processor path; "union" (the previous one) is kept for the benchmarks
        self._caches = _Caches()

    def __deepcopy__(self, memo):
        return self

    # ---------------------------------------------------------------------------------------------- caches

    def processor(self, key: tuple, device: torch.device) -> IFAttnProcessor:
        """The layer's processor with its fusion weights on ``device`` (the adapter's own module if already there)."""
        proc = self.adapter.processor(key)
        if proc.alpha.device == device:
            return proc
        ck = (tuple(key), str(device))
        with self._caches.lock:
            cached = self._caches.processors.get(ck)
            if cached is None:
                with torch.device("meta"):
                    cached = IFAttnProcessor(proc.hidden_size, proc.to_k_ap.in_features, proc.heads, proc.max_obj)
                small = {
                    k: v.to(device=device, dtype=torch.float32)
                    for k, v in proc.state_dict().items()
                    if not k.startswith(("to_k_ap.", "to_v_ap."))
                }
                cached.load_state_dict(small, strict=False, assign=True)
                cached.requires_grad_(False)
                self._caches.processors[ck] = cached
        return cached

    def kv(self, key: tuple, device: torch.device, dtype: torch.dtype) -> InstanceKV:
        """K/V of ``[cond; uncond]`` tokens for layer ``key``: ``[2, S, H, T, d]`` each, on ``device`` in ``dtype``."""
        ck = (tuple(key), str(device), dtype)
        with self._caches.lock:
            cached = self._caches.kv.get(ck)
            if cached is None:
                proc = self.adapter.processor(key)
                wdev = proc.to_k_ap.weight.device
                tokens = torch.stack([self.tokens.cond, self.tokens.uncond]).to(wdev)
                with torch.no_grad():
                    kv = proc.project_tokens(tokens)
                cached = InstanceKV(kv.k.to(device=device, dtype=dtype), kv.v.to(device=device, dtype=dtype))
                self._caches.kv[ck] = cached
        return cached

    def geometry(self, h: int, w: int, batch: int, device: torch.device) -> InstanceGeometry:
        """The layout rasterised on an ``h x w`` grid (IFAdapter cell rule), repeated for ``batch`` rows."""
        ck = (h, w, batch, str(device))
        with self._caches.lock:
            geo = self._caches.geometry.get(ck)
            if geo is None:
                one = InstanceGeometry.from_boxes(self.tokens.boxes[None].float(), h, w)
                geo = replace(
                    one,
                    cells=one.cells.expand(batch, -1, -1, -1).to(device),
                    valid=one.valid.expand(batch, -1).to(device),
                    foreground=one.foreground.expand(batch, -1, -1).to(device),
                    size_gate=one.size_gate.expand(batch, -1).to(device),
                    fg_index=one.fg_index.to(device),
                )
                self._caches.geometry[ck] = geo
        return geo

    def cache_sizes(self) -> dict[str, int]:
        """How many entries each cache holds (for tests and diagnostics)."""
        return {"kv": len(self._caches.kv), "processors": len(self._caches.processors),
                "geometry": len(self._caches.geometry)}  # fmt: skip

    # ---------------------------------------------------------------------------------------------- forward

    def layer_delta(self, key: tuple, q: Tensor, positive: Tensor, grid: tuple[int, int]) -> Tensor:
        """The residual for attn2 layer ``key``: ``[B, N, hidden]`` in ``q.dtype``, to add before ``to_out``."""
        b, n, c = q.shape
        proc = self.adapter.processor(key)
        if c != proc.hidden_size:
            raise ValueError(
                f"IFAdapter layer {key} is {proc.hidden_size} wide ({proc.heads} heads) but the model's attention "
                f"there is {c} wide: this adapter does not belong to this model"
            )
        h, w = grid
        device, dtype = q.device, q.dtype
        kv2 = self.kv(key, device, dtype)
        rows = (~positive.to(device=device, dtype=torch.bool)).long()  # 0: cond tokens, 1: uncond tokens
        kv = InstanceKV(kv2.k.index_select(0, rows), kv2.v.index_select(0, rows))
        geo = self.geometry(h, w, b, device)
        with torch.no_grad():
            delta = self.processor(key, device)(q, kv, geo, impl=self.impl)
        if self.scale != 1.0:
            delta = delta * self.scale
        return delta
