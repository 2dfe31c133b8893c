"""UniFusion fusers: GLIGEN-style gated self-attention, one per SD1.5 transformer block.

Official placement (spec §2): inside every ``BasicTransformerBlock`` between the attn1 residual and attn2, which is
ComfyUI's ``middle_patch`` slot. ComfyUI's running ``transformer_index`` (0..15) indexes :data:`FUSER_BLOCKS`.

Parameter names equal the official checkpoint keys below ``<block>.1.transformer_blocks.0.fuser.``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Official key prefixes of the 16 fusers, in ComfyUI transformer_index order (comfyui.md §2).
FUSER_BLOCKS: tuple[str, ...] = (
    *(f"input_blocks.{i}" for i in (1, 2, 4, 5, 7, 8)),
    "middle_block",
    *(f"output_blocks.{i}" for i in range(3, 12)),
)
FUSER_PREFIXES: tuple[str, ...] = tuple(f"{b}.1.transformer_blocks.0.fuser." for b in FUSER_BLOCKS)
# Channel width at each transformer_index for SD1.5 (model_channels 320, channel_mult 1,2,4,4).
FUSER_CHANNELS: tuple[int, ...] = (320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320)


class SelfAttention(nn.Module):
    """Plain multi-head self-attention; q/k/v without bias, ``to_out.0`` with bias (official key names)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; softmax(q kᵀ / sqrt(d_head)) v per head."""
        b, t, _ = x.shape
        h = self.heads
        q, k, v = (p(x).view(b, t, h, -1).transpose(1, 2) for p in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, t, -1))

    def forward_queries(self, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """The rows of ``forward(cat[x, extra])[:, :N]`` only: x [B, N, C], extra [B, M, C] -> [B, N, C].

        Attention rows are independent, so the M extra tokens are needed as keys and values but not as queries.
        Skipping their query rows (and their output projection) is exact and saves most of the work in the
        low-resolution blocks, where M = 184 grounding tokens outnumber the N visual ones (8x8 = 64 in the middle).
        """
        b, n, _ = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, -1).transpose(1, 2)
        kv_in = torch.cat([x, extra], dim=1)
        k, v = (p(kv_in).view(b, kv_in.shape[1], h, -1).transpose(1, 2) for p in (self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    def forward_with_kv(self, x: torch.Tensor, k_extra: torch.Tensor, v_extra: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_queries` with the extra tokens already projected: ``k_extra = to_k(extra)``,
        ``v_extra = to_v(extra)``, each [B, M, inner] (or [1, M, inner], broadcast over B). -> [B, N, C].

        The keys and values of tokens that do not change during a run are projected once per run instead of in every
        call; the attention is the same (one batched scaled_dot_product_attention over all heads and rows).
        """
        b, n, _ = x.shape
        h = self.heads
        m = k_extra.shape[1]
        if k_extra.shape[0] != b:
            k_extra, v_extra = k_extra.expand(b, -1, -1), v_extra.expand(b, -1, -1)
        q = self.to_q(x).view(b, n, h, -1).transpose(1, 2)
        k = torch.cat([self.to_k(x), k_extra], dim=1).view(b, n + m, h, -1).transpose(1, 2)
        v = torch.cat([self.to_v(x), v_extra], dim=1).view(b, n + m, h, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    """Linear C -> 2·inner, split into (value, gate), value · gelu(gate) (key ``proj``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU(C -> 4C) -> Dropout -> Linear(4C -> C); keys ``net.0.proj``, ``net.2``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedSelfAttentionDense(nn.Module):
    """One UniFusion fuser (official ``fuser``), for visual width ``query_dim`` and 768-d grounding tokens.

    Parameters: ``linear`` (objs -> C), ``attn``, ``ff``, ``norm1``, ``norm2``, scalar gates ``alpha_attn`` and
    ``alpha_dense`` (zero-initialised as in the official code, so a fresh fuser is the identity).
    """

    def __init__(self, query_dim: int, context_dim: int = 768, n_heads: int = 8, d_head: int | None = None) -> None:
        super().__init__()
        d_head = d_head if d_head is not None else query_dim // n_heads
        self.linear = nn.Linear(context_dim, query_dim)
        self.attn = SelfAttention(query_dim, n_heads, d_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.register_parameter("alpha_attn", nn.Parameter(torch.tensor(0.0)))
        self.register_parameter("alpha_dense", nn.Parameter(torch.tensor(0.0)))

    def forward(self, x: torch.Tensor, objs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Fuse grounding tokens into visual tokens.

        x: [B, N, C] visual tokens (N = h·w of this block); objs: [B, 184, 768] from the position net (or [1, ...],
        broadcast over B); scale: the alpha-schedule factor (1 during the first ``int(alpha·steps)`` steps, else 0).
        Returns a new [B, N, C] tensor in x's dtype; x is not modified.

        Official maths: x += scale·tanh(alpha_attn)·SA(norm1(cat[x, linear(objs)]))[:, :N];
        x += scale·tanh(alpha_dense)·FF(norm2(x)).
        """
        if scale == 0.0:
            return x  # both gates are multiplied by 0; skip the compute
        dtype = self.linear.weight.dtype
        h = x.to(dtype)
        o = self.linear(objs.to(device=h.device, dtype=dtype))
        if o.shape[0] != h.shape[0]:
            o = o.expand(h.shape[0], -1, -1)
        # LayerNorm is per token, so norm1(cat[h, o]) == cat[norm1(h), norm1(o)]; only the visual rows are kept.
        a = self.attn.forward_queries(self.norm1(h), self.norm1(o))
        h = h + scale * torch.tanh(self.alpha_attn) * a
        h = h + scale * torch.tanh(self.alpha_dense) * self.ff(self.norm2(h))
        return h.to(x.dtype)

    def grounding_kv(self, objs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grounding tokens' keys and values in this fuser's attention: objs [R, M, 768] -> (K, V), each
        [R, M, heads·d_head] in the fuser's dtype: ``attn.to_k / to_v(norm1(linear(objs)))``.

        They depend only on the layout and the weights, so a sampling run computes them once (see
        :mod:`.grounding_kv`) and :meth:`forward_kv` uses them in every step.
        """
        w = self.linear.weight
        o = self.norm1(self.linear(objs.to(device=w.device, dtype=w.dtype)))
        return self.attn.to_k(o), self.attn.to_v(o)

    def forward_kv(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """:meth:`forward` with the grounding tokens given as their keys and values from :meth:`grounding_kv`
        (k, v: [B or 1, M, inner]); the same maths, up to float rounding. x is not modified."""
        if scale == 0.0:
            return x
        h = x.to(self.linear.weight.dtype)
        a = self.attn.forward_with_kv(self.norm1(h), k, v)
        h = h + scale * torch.tanh(self.alpha_attn) * a
        h = h + scale * torch.tanh(self.alpha_dense) * self.ff(self.norm2(h))
        return h.to(x.dtype)


def build_fusers(channels: tuple[int, ...] = FUSER_CHANNELS, context_dim: int = 768, n_heads: int = 8) -> nn.ModuleList:
    """The 16 fusers of SD1.5, indexed by ComfyUI's running transformer_index."""
    return nn.ModuleList(GatedSelfAttentionDense(c, context_dim, n_heads, c // n_heads) for c in channels)
