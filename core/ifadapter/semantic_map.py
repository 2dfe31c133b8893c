"""Instance Semantic Map (ISM), gated size-aware fusion and the per-layer IFAdapter processor (spec §3).

One :class:`IFAttnProcessor` sits on each of the 16 patched SDXL cross-attention layers. Given the layer's own
(frozen) query projection ``to_q(Z)`` it returns the residual that IFAdapter adds to the layer's attention output
*before* ``to_out``::

    delta = tanh(alpha) * (1 - M_bg) * D,   D(x) = sum_i softmax_i(g_i(x) * sigmoid(A_fg / a_i)) * s_i(x)

where ``s_i = box_i * Attn(RMS_q(q), RMS_k(W_k C_i), W_v C_i)`` is instance i's semantic map, ``g_i = conv1x1(CBAM(s_i))``
its importance logit, and the softmax runs over ``max_obj = 10`` slots, empty slots included (released-code form).
The caller multiplies by the user scale gamma and adds the result to the base attention output.

Two implementations live here:

- the optimised path (default) works on the union of all boxes only, runs every instance in one batched
  matmul, derives the CAM average pool from the attention weights, fuses CBAM's channel gate and the 1x1 conv
  into one matvec, and adds the empty slots as one constant term instead of running CBAM on zero maps;
- ``reference=True`` is a literal transcription (pad to 10 slots, full maps, full CBAM per slot) used by the
  tests and the benchmark to check the optimised path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norms import GemmaRMSNorm

MAX_OBJ = 10


# --------------------------------------------------------------------------------------------------------------
# Geometry: box rasterisation per layer
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceGeometry:
    """Per-layer rasterised layout, shared by every patched layer with the same token grid.

    Attributes (B rows, S instance slots, grid h x w, N = h*w, row-major: token n = y*w + x):
        cells: ``[B, S, h, w]`` bool, the cells each instance covers (all False for an empty slot).
        valid: ``[B, S]`` bool, which slots hold a real instance.
        foreground: ``[B, h, w]`` bool, cells covered by at least one instance (``1 - M_bg``).
        size_gate: ``[B, S]`` float32, ``sigmoid(A_fg / a_i)`` for real instances (1.0 if ``a_i == 0``, the
            released code's ``sigmoid(inf)``), ``sigmoid(0) = 0.5`` for empty slots.
        fg_index: ``[F]`` long, flat indices of the cells in the foreground of any row (union over the batch).

    The per-instance crops the optimised processor works on (:meth:`crops`) are built on first use and kept with
    the geometry, so a geometry cached per grid builds them once per run.
    """

    cells: Tensor
    valid: Tensor
    foreground: Tensor
    size_gate: Tensor
    fg_index: Tensor
    crop_cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def crops(self) -> InstanceCrops:
        """The cells of every (row, instance) as index lists (see :class:`InstanceCrops`); built once."""
        key = str(self.cells.device)
        crops = self.crop_cache.get(key)
        if crops is None:
            crops = InstanceCrops.from_cells(self.cells)
            self.crop_cache[key] = crops
        return crops

    @property
    def h(self) -> int:
        return self.cells.shape[2]

    @property
    def w(self) -> int:
        return self.cells.shape[3]

    @classmethod
    def from_cells(cls, cells: Tensor, valid: Tensor | None = None) -> InstanceGeometry:
        """Build from a cell mask ``[B, S, h, w]`` (bool or 0/1) and optional ``valid`` ``[B, S]``."""
        if cells.dim() != 4:
            raise ValueError(f"cell masks must be [B, S, h, w]; got shape {tuple(cells.shape)}")
        b, s = cells.shape[:2]
        valid = torch.ones(b, s, dtype=torch.bool, device=cells.device) if valid is None else valid.bool()
        if tuple(valid.shape) != (b, s):
            raise ValueError(f"valid must be [{b}, {s}] to match the cell masks; got {tuple(valid.shape)}")
        cells = cells.bool() & valid[:, :, None, None]
        foreground = cells.any(dim=1)
        areas = cells.sum(dim=(2, 3)).float()  # a_i
        fg_area = foreground.sum(dim=(1, 2)).float()[:, None]  # A_fg
        rho_gate = torch.where(areas > 0, torch.sigmoid(fg_area / areas.clamp_min(1.0)), torch.ones_like(areas))
        size_gate = torch.where(valid, rho_gate, torch.full_like(areas, 0.5))
        fg_index = foreground.any(dim=0).flatten().nonzero().flatten()
        return cls(cells, valid, foreground, size_gate, fg_index)

    @classmethod
    def from_boxes(cls, boxes: Tensor, h: int, w: int, valid: Tensor | None = None) -> InstanceGeometry:
        """Rasterise normalised xyxy boxes ``[B, S, 4]`` onto an ``h x w`` grid.

        Cell ranges are ``[floor(x0*w), ceil(x1*w))`` x ``[floor(y0*h), ceil(y1*h))`` as in the released code
        (computed in float32 like it), with h and w explicit so non-square grids work.
        """
        return cls.from_cells(rasterize_boxes(boxes, h, w), valid)


@dataclass(frozen=True)
class InstanceCrops:
    """Each (row, instance) pair's cells as a padded index list: what the crop path gathers and scatters.

    Attributes (R = B*S segments, one per row and slot, row-major; A = the largest instance area, at least 1):
        order: ``[R, A]`` long, cell indices (``y*w + x``) of the segment's instance in row-major order first, then
            cells outside it (padding). The first A columns of a stable sort, so every row is a set of distinct cells.
        gather: ``[R*A]`` long, ``order`` offset by the row (``b*N + cell``): rows of a ``[B*N, C]`` tensor.
        q_gather: ``[R*A]`` long, as ``gather`` but padding repeats the segment's first cell, so padding rows of the
            semantic map duplicate a real one (a max over the segment needs no mask).
        inside: ``[R, A]`` bool, True on the instance's own cells (``a < area``).
        full: ``[R]`` bool, the instance covers the whole grid (its CBAM max pool sees no zero outside the box).
        area: the largest instance area ``A`` (0 when no slot covers a cell).
    """

    order: Tensor
    gather: Tensor
    q_gather: Tensor
    inside: Tensor
    full: Tensor
    area: int

    @classmethod
    def from_cells(cls, cells: Tensor) -> InstanceCrops:
        b, s, h, w = cells.shape
        n = h * w
        flat = cells.reshape(b * s, n)
        areas = flat.sum(dim=1)
        a = int(areas.max()) if flat.numel() else 0
        width = max(a, 1)
        order = torch.sort((~flat).to(torch.uint8), dim=1, stable=True).indices[:, :width].contiguous()
        offset = (torch.arange(b, device=cells.device) * n).repeat_interleave(s)
        inside = torch.arange(width, device=cells.device)[None, :] < areas[:, None]
        gather = order + offset[:, None]
        q_gather = torch.where(inside, gather, gather[:, :1])
        return cls(order, gather.flatten(), q_gather.flatten(), inside, areas == n, a)


def rasterize_boxes(boxes: Tensor, h: int, w: int) -> Tensor:
    """Normalised xyxy boxes ``[..., 4]`` -> bool cell masks ``[..., h, w]`` (see :meth:`InstanceGeometry.from_boxes`)."""
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 (x0, y0, x1, y1); got shape {tuple(boxes.shape)}")
    b = boxes.float()
    x0 = torch.floor(b[..., 0] * w).clamp(0, w)
    y0 = torch.floor(b[..., 1] * h).clamp(0, h)
    x1 = torch.ceil(b[..., 2] * w).clamp(0, w)
    y1 = torch.ceil(b[..., 3] * h).clamp(0, h)
    xs = torch.arange(w, device=boxes.device, dtype=torch.float32)
    ys = torch.arange(h, device=boxes.device, dtype=torch.float32)
    in_x = (xs >= x0[..., None]) & (xs < x1[..., None])
    in_y = (ys >= y0[..., None]) & (ys < y1[..., None])
    return in_y[..., :, None] & in_x[..., None, :]


# --------------------------------------------------------------------------------------------------------------
# CBAM
# --------------------------------------------------------------------------------------------------------------


class ChannelGate(nn.Module):
    """CBAM channel attention: ``x * sigmoid(mlp(maxpool x) + mlp(avgpool x))``; ``[M, C, h, w]`` -> same."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.linear = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(), nn.Linear(channels // reduction, channels)
        )

    def gate(self, max_pooled: Tensor, avg_pooled: Tensor) -> Tensor:
        """Channel gate ``sigmoid(mlp(max) + mlp(avg))`` from pooled features ``[..., C]`` -> ``[..., C]``."""
        return torch.sigmoid(self.linear(max_pooled) + self.linear(avg_pooled))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x.amax(dim=(2, 3)), x.mean(dim=(2, 3)))[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``x * sigmoid(conv7x7([max_c x, mean_c x]))`` (no bias); ``[M, C, h, w]`` -> same."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        maps = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


class CBAM(nn.Module):
    """Channel gate then spatial gate (Woo et al. 2018), ``C=1280, r=16`` in IFAdapter."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.sam = SpatialGate()
        self.cam = ChannelGate(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.sam(self.cam(x))


# --------------------------------------------------------------------------------------------------------------
# Per-layer processor
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceKV:
    """Projected instance tokens for one layer: ``k`` (RMS-normalised) and ``v``, both ``[B, S, H, T, d]``.

    They depend only on the tokens, not on the timestep, so a caller can build them once per generation
    (:meth:`IFAttnProcessor.project_tokens`) and reuse them at every step.
    """

    k: Tensor
    v: Tensor


class IFAttnProcessor(nn.Module):
    """IFAdapter's addition to one SDXL cross-attention layer (``hidden=1280``, 20 heads x 64).

    Parameters (checkpoint names): ``to_k_ap``/``to_v_ap`` Linear 2048->1280 no bias, ``q_norm``/``k_norm``
    Gemma RMSNorm(64), ``cbam`` (``cam.linear.{0,2}``, ``sam.conv``), ``conv`` 1x1 1280->1 with bias, ``alpha``
    (the zero-initialised gate lambda).
    """

    def __init__(self, hidden_size: int = 1280, context_dim: int = 2048, heads: int = 20, max_obj: int = MAX_OBJ):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by heads {heads}")
        self.hidden_size, self.heads, self.max_obj = hidden_size, heads, max_obj
        self.dim_head = hidden_size // heads
        self.to_k_ap = nn.Linear(context_dim, hidden_size, bias=False)
        self.to_v_ap = nn.Linear(context_dim, hidden_size, bias=False)
        self.q_norm = GemmaRMSNorm(self.dim_head)
        self.k_norm = GemmaRMSNorm(self.dim_head)
        self.cbam = CBAM(hidden_size, 16)
        self.conv = nn.Conv2d(hidden_size, 1, 1)
        self.alpha = nn.Parameter(torch.zeros(()))

    # ---------------------------------------------------------------------------------------------- tokens

    def project_tokens(self, tokens: Tensor) -> InstanceKV:
        """Instance tokens ``[B, S, T, 2048]`` -> :class:`InstanceKV` (``[B, S, H, T, d]`` each); one matmul each."""
        if tokens.dim() != 4:
            raise ValueError(f"instance tokens must be [B, S, T, C]; got shape {tuple(tokens.shape)}")
        b, s, t, _ = tokens.shape
        tokens = tokens.to(self.to_k_ap.weight.dtype)
        k = self.to_k_ap(tokens).view(b, s, t, self.heads, self.dim_head).transpose(2, 3)
        v = self.to_v_ap(tokens).view(b, s, t, self.heads, self.dim_head).transpose(2, 3)
        return InstanceKV(self.k_norm(k), v)

    def _check(self, q: Tensor, kv: InstanceKV, geometry: InstanceGeometry) -> tuple[int, int, int]:
        if q.dim() != 3 or q.shape[-1] != self.hidden_size:
            raise ValueError(
                f"q must be [B, N, {self.hidden_size}] (to_q output, heads not split); got {tuple(q.shape)}"
            )
        b, n, _ = q.shape
        s = kv.k.shape[1]
        if s > self.max_obj:
            raise ValueError(
                f"{s} instances given but IFAdapter supports at most {self.max_obj} per image; remove "
                f"{s - self.max_obj} instance(s)"
            )
        if kv.k.shape[0] != b or geometry.cells.shape[0] != b:
            raise ValueError(
                f"batch mismatch: q has {b} rows, instance tokens {kv.k.shape[0]}, layout {geometry.cells.shape[0]}"
            )
        if geometry.cells.shape[1] != s:
            raise ValueError(f"layout has {geometry.cells.shape[1]} slots but the tokens have {s}")
        if geometry.h * geometry.w != n:
            raise ValueError(f"layout grid {geometry.h}x{geometry.w} does not match the {n} query tokens of this layer")
        return b, n, s

    # ---------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        q: Tensor,
        instances: Tensor | InstanceKV,
        geometry: InstanceGeometry,
        reference: bool = False,
        impl: str = "crop",
    ) -> Tensor:
        """The gated ISM residual for one layer.

        Args:
            q: ``[B, N, 1280]`` the base layer's ``to_q`` output (heads not split), N = h*w row-major.
            instances: tokens ``[B, S, 13, 2048]`` (S <= 10 slots) or their projection (:meth:`project_tokens`).
            geometry: the rasterised layout for this grid (:meth:`InstanceGeometry.from_boxes`).
            reference: use the literal (slow) transcription instead of the optimised path.
            impl: the optimised path to run: ``"crop"`` (default: each instance on its own cells only) or
                ``"union"`` (the previous path, every instance on the union of all rows' boxes; kept for the
                benchmarks' side-by-side comparison).
        Returns:
            ``[B, N, 1280]`` = ``tanh(alpha) * (1 - M_bg) * D`` in q's dtype. Multiply by the user scale and add it
            to the base attention output before ``to_out``.
        """
        kv = instances if isinstance(instances, InstanceKV) else self.project_tokens(instances)
        self._check(q, kv, geometry)
        if reference:
            return self._forward_reference(q, kv, geometry)
        if impl == "crop":
            return self._forward_crop(q, kv, geometry)
        if impl == "union":
            return self._forward_fast(q, kv, geometry)
        raise ValueError(f"impl must be 'crop' or 'union'; got {impl!r}")

    def _q_norm(self, x: Tensor) -> Tensor:
        """``q_norm`` (Gemma RMS norm per head, float32 statistics) as one fused kernel where torch has it."""
        if hasattr(F, "rms_norm"):
            norm = self.q_norm
            return F.rms_norm(x.float(), (x.shape[-1],), 1.0 + norm.weight.float(), norm.eps).to(x.dtype)
        return self.q_norm(x)

    def _forward_crop(self, q: Tensor, kv: InstanceKV, geo: InstanceGeometry) -> Tensor:
        """Each instance on its own cells: work grows with the sum of the box areas, not slots x canvas.

        The (row, instance) segments are padded to the largest box (:class:`InstanceCrops`); one
        ``scaled_dot_product_attention`` over all segments gives every ``s_i`` on its box; the CBAM pools, channel
        max/mean and 1x1 conv are reductions over a segment; the 7x7 spatial conv runs on the full grid (its maps are
        scattered back, zero outside the box); the slot softmax runs on the full grid, and the fused map is one
        accumulating ``index_put_`` of every segment's weighted map into the output rows.
        """
        b, n, c = q.shape
        s, heads, d = kv.k.shape[1], self.heads, self.dim_head
        dtype = q.dtype
        crops = geo.crops()
        if crops.order.device != q.device:
            crops = InstanceCrops.from_cells(geo.cells.to(q.device))
        if s == 0 or crops.area == 0:
            return q.new_zeros(b, n, c)
        a = crops.order.shape[1]
        r = b * s
        gate = torch.tanh(self.alpha.float())  # no .item() short-cut for 0: it would sync the GPU every layer

        # s_i on instance i's cells: q gathered per segment, attention to the segment's own 13 tokens. The RMS norm
        # is per row, so it runs on whichever is smaller: the layer's rows or the gathered ones.
        if r * a > b * n:
            q_c = self._q_norm(q.reshape(b * n, heads, d)).index_select(0, crops.q_gather).view(r, a, heads, d)
        else:
            q_c = self._q_norm(q.reshape(b * n, c).index_select(0, crops.q_gather).view(r, a, heads, d))
        t = kv.k.shape[3]
        k = kv.k.to(dtype).reshape(r, heads, t, d)
        v = kv.v.to(dtype).reshape(r, heads, t, d)
        sem = F.scaled_dot_product_attention(q_c.transpose(1, 2), k, v).transpose(1, 2)  # [R, A, H, d]
        # padding rows repeat the segment's first cell: harmless for a max, masked (small tensors) everywhere else
        sem = sem.reshape(r, a, c)  # free when SDPA writes [R, A, H, d] rows (CPU and CUDA kernels do)
        inside = crops.inside.to(dtype)  # [R, A]

        # CBAM channel gate: max pool over the full map (zeros outside the box count unless the box covers it all);
        # average pool = sum over the box / N.
        max_pool = sem.amax(dim=1)
        max_pool = torch.where(crops.full.to(q.device)[:, None], max_pool, max_pool.clamp_min(0))
        avg_pool = torch.matmul(inside[:, None, :], sem).view(r, c) / n
        cam = self.cbam.cam
        ch_gate = cam.gate(max_pool.to(cam.linear[0].weight.dtype), avg_pool.to(cam.linear[0].weight.dtype))

        # The channel-gated map gives the SAM inputs (channel max, channel mean) and, by one matvec, the 1x1 conv.
        gated = sem * ch_gate.to(dtype)[:, None, :]
        ch_max = gated.amax(dim=2).float()  # [R, A]
        mean_w = torch.stack([torch.full_like(self.conv.weight.view(c), 1.0 / c), self.conv.weight.view(c)], dim=1)
        mean_and_logit = torch.matmul(gated, mean_w.to(dtype)).float() * crops.inside[..., None]  # [R, A, 2]
        del gated
        ch_max = ch_max * crops.inside

        # Spatial gate: the 2-channel maps on the full grid (7x7 conv), zero outside the box. ``order`` is a set of
        # distinct cells per segment and its padding lies outside the box, where the maps are 0 anyway.
        order = crops.order
        maps = torch.stack([ch_max, mean_and_logit[..., 0]], dim=1)  # [R, 2, A]
        maps = maps.new_zeros(r, 2, n).scatter_(2, order[:, None, :].expand(r, 2, a), maps)
        sam_w = self.cbam.sam.conv.weight.float()
        spatial = F.conv2d(maps.view(r, 2, geo.h, geo.w), sam_w, padding=sam_w.shape[-1] // 2).view(r, n)
        spatial = spatial.gather(1, order)  # [R, A]
        bias = self.conv.bias.float()
        size_gate = geo.size_gate.to(q.device).reshape(r, 1)
        # g_i * size gate; on padding (outside box i) this is bias * size gate, the value outside the box
        logits = (torch.sigmoid(spatial) * mean_and_logit[..., 1] + bias) * size_gate

        # Softmax over max_obj slots on the full grid: the max_obj - S empty slots all have logit 0.5 * bias.
        dense = (bias * size_gate).expand(r, n).scatter(1, order, logits).view(b, s, n)
        n_null = self.max_obj - s
        if n_null > 0:
            null = (0.5 * bias + math.log(n_null)).expand(b, 1, n)
            weights = torch.cat([dense, null], dim=1).softmax(dim=1)[:, :s]
        else:
            weights = dense.softmax(dim=1)
        weights = weights.reshape(r, n).gather(1, order) * (inside * gate)  # [R, A], 0 on padding
        w = weights.to(dtype)[:, :, None]
        # in place at sampling time (sem is not needed after this); out of place when training needs its gradient
        fused = (sem * w if torch.is_grad_enabled() and sem.requires_grad else sem.mul_(w)).view(r * a, c)
        # sum over the instances covering each cell (accumulate: index_add_ is several times slower on CPU)
        return q.new_zeros(b * n, c).index_put_((crops.gather,), fused, accumulate=True).view(b, n, c)

    def _forward_fast(self, q: Tensor, kv: InstanceKV, geo: InstanceGeometry) -> Tensor:
        b, n, c = q.shape
        s, heads, d = kv.k.shape[1], self.heads, self.dim_head
        dtype = q.dtype
        out = q.new_zeros(b, n, c)
        fg_index = geo.fg_index.to(q.device)
        f = fg_index.numel()
        if s == 0 or f == 0:
            return out
        gate = torch.tanh(self.alpha.float())  # no .item() short-cut for 0: it would sync the GPU every layer

        # Only foreground cells (union over rows) matter: s_i = 0 outside box i and (1 - M_bg) = 0 on background.
        q_f = q.index_select(1, fg_index) if f < n else q
        q_f = self.q_norm(q_f.view(b, f, heads, d)).transpose(1, 2)  # [B, H, F, d]
        cells = geo.cells.flatten(2).to(q.device)  # [B, S, N]
        cells_f = (cells.index_select(2, fg_index) if f < n else cells).to(dtype)  # [B, S, F]

        # Attention of every cell to every instance's 13 tokens in one matmul; softmax per instance.
        k = kv.k.to(dtype).permute(0, 2, 1, 3, 4).reshape(b, heads, -1, d)  # [B, H, S*T, d]
        v = kv.v.to(dtype)  # [B, S, H, T, d]
        t = v.shape[3]
        scores = torch.matmul(q_f, k.transpose(-1, -2)).mul_(1.0 / math.sqrt(d))  # [B, H, F, S*T]
        probs = scores.view(b, heads, f, s, t).softmax(dim=-1)
        probs = probs * cells_f.transpose(1, 2)[:, None, :, :, None]  # zero outside each box (s_i = m_i * attn)
        probs = probs.permute(0, 3, 1, 2, 4)  # [B, S, H, F, T] (small copy: T = 13 wide)
        # s_i at the foreground cells, kept in [B, S, H, F, d] layout (channel c = head * d + j) to avoid a
        # full-size permute: every later reduction works on that layout directly.
        sem = torch.matmul(probs, v)

        # CBAM channel gate: max pool over the full map (zeros outside the box count unless the box covers it all),
        # average pool over the full map = (sum_f probs) @ v / N (no pass over the big tensor needed).
        full = geo.cells.flatten(2).all(dim=2).to(q.device)  # [B, S]
        max_pool = sem.amax(dim=3).reshape(b, s, c)
        max_pool = torch.where(full[..., None], max_pool, max_pool.clamp_min(0))
        avg_pool = torch.matmul(probs.sum(dim=3, keepdim=True), v).reshape(b, s, c) / n
        cam = self.cbam.cam
        ch_gate = cam.gate(max_pool.to(cam.linear[0].weight.dtype), avg_pool.to(cam.linear[0].weight.dtype))

        # One matvec gives both the channel mean (SAM input) and the 1x1 conv of the channel-gated map.
        conv_w = self.conv.weight.view(c).to(ch_gate.dtype)
        proj = torch.stack([ch_gate / c, ch_gate * conv_w], dim=-1).to(dtype).view(b, s, heads, d, 2)
        mean_and_logit = torch.matmul(sem, proj).float().sum(dim=2)  # [B, S, F, 2]
        ch_max = (sem * ch_gate.view(b, s, heads, 1, d).to(dtype)).amax(dim=(2, 4)).float()  # [B, S, F]

        # Spatial gate needs the 2-channel maps on the full grid (7x7 conv); they are zero off the foreground.
        maps = torch.stack([ch_max, mean_and_logit[..., 0]], dim=2)  # [B, S, 2, F]
        if f < n:
            maps = maps.new_zeros(b, s, 2, n).index_copy_(3, fg_index, maps)
        sam_w = self.cbam.sam.conv.weight.float()
        spatial = F.conv2d(maps.view(b * s, 2, geo.h, geo.w), sam_w, padding=sam_w.shape[-1] // 2).view(b, s, n)
        if f < n:
            spatial = spatial.index_select(2, fg_index)
        bias = self.conv.bias.float()
        logits = torch.sigmoid(spatial) * mean_and_logit[..., 1] + bias  # g_i, [B, S, F]; = bias outside box i
        logits = logits * geo.size_gate.to(q.device)[:, :, None]

        # Softmax over max_obj slots: the max_obj - S empty slots all have logit 0.5 * bias.
        n_null = self.max_obj - s
        if n_null > 0:
            null = (0.5 * bias + math.log(n_null)).expand(b, 1, f)
            weights = torch.cat([logits, null], dim=1).softmax(dim=1)[:, :s]
        else:
            weights = logits.softmax(dim=1)
        fg = geo.foreground.flatten(1).to(q.device)
        fg_f = (fg.index_select(1, fg_index) if f < n else fg).float()  # [B, F]
        weights = weights * (fg_f * gate)[:, None, :]
        fused = (sem * weights.to(dtype)[:, :, None, :, None]).sum(dim=1)  # [B, H, F, d]
        fused = fused.permute(0, 2, 1, 3).reshape(b, f, c)
        if f < n:
            return out.index_copy_(1, fg_index, fused)
        return fused

    def _forward_reference(self, q: Tensor, kv: InstanceKV, geo: InstanceGeometry) -> Tensor:
        """Literal transcription of spec §3 on padded max_obj slots; slow, for tests and benchmarks."""
        b, n, c = q.shape
        s, heads, d, m = kv.k.shape[1], self.heads, self.dim_head, self.max_obj
        dtype = q.dtype
        qn = self.q_norm(q.view(b, n, heads, d)).transpose(1, 2)  # [B, H, N, d]
        # pad to max_obj slots; empty slots: zero keys, zero values, zero mask, rho = 0
        k = q.new_zeros(b, m, heads, kv.k.shape[3], d)
        v = torch.zeros_like(k)
        cells = q.new_zeros(b, m, n)
        rho = torch.zeros(b, m, device=q.device)
        k[:, :s], v[:, :s] = kv.k.to(dtype), kv.v.to(dtype)
        cells[:, :s] = geo.cells.flatten(2).to(dtype)
        areas = geo.cells.flatten(2).sum(-1).float()
        fg_area = geo.foreground.flatten(1).sum(-1).float()[:, None]
        rho[:, :s] = torch.where(geo.valid, fg_area / areas, torch.zeros_like(areas))
        sem = []
        for slot in range(m):
            attn = torch.softmax(qn @ k[:, slot].transpose(-1, -2) / math.sqrt(d), dim=-1) @ v[:, slot]
            attn = attn.transpose(1, 2).reshape(b, n, c)
            sem.append(attn * cells[:, slot, :, None])
        sem = torch.stack(sem, dim=1)  # [B, M, N, C]
        maps = sem.permute(0, 1, 3, 2).reshape(b * m, c, geo.h, geo.w)
        logits = self.conv(self.cbam(maps)).view(b, m, n).float()
        logits = logits * torch.sigmoid(rho)[:, :, None]
        weights = logits.softmax(dim=1)
        fused = (sem * weights[..., None].to(dtype)).sum(dim=1)
        foreground = geo.foreground.flatten(1).to(dtype)[:, :, None]
        return (torch.tanh(self.alpha.float()).to(dtype) * foreground * fused).to(dtype)
