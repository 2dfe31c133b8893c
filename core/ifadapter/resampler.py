"""Perceiver-style resampler: per-instance CLIP features -> 4 appearance tokens per depth (spec §2.2).

Module and parameter names follow the released ``spd_adapter.bin`` (``text_proj_model.*``):

- ``latents`` ``[1, 4, 2560]``, ``proj_in`` 2048->2560, ``attention_norm`` LN(2560), ``proj_out`` 2560->2048,
  ``norm_out`` LN(2048);
- ``layers.<b>.0``: attention (``norm1``, ``norm2``, ``to_q``, ``to_kv``, ``to_out``, ``q_norm``, ``k_norm``);
- ``layers.<b>.1``: gated MLP (``gate_proj``, ``up_proj``, ``down_proj``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norms import GemmaRMSNorm, UnscaledRMSNorm


def block_word_masks(word_mask: Tensor, depth: int, official_mask_quirk: bool = True) -> Tensor:
    """Which text positions each resampler block may attend to.

    ``word_mask`` ``[n, L]`` (bool or 0/1) marks the word tokens of each instance description: the tokenizer's
    attention mask without SOT (position 0) and EoT (position E). Returns ``[depth, n, L]`` bool.

    Without the quirk every block sees exactly ``word_mask``. With ``official_mask_quirk`` the behaviour of the
    released code is reproduced (the released weights were trained with it): before every block after the first,
    the official code zeroes position 0 and position ``sum(mask) - 1`` of the *same* mask tensor in place, which it
    believed to be the EoT. For a contiguous word mask ``1..E-1`` that drops position E-2 in block 1, E-2 and E-3 in
    block 2, E-2..E-4 in block 3. An all-zero mask (the unconditional branch) stays all-zero: ``sum - 1 = -1``
    wraps to the last (padding) position, which is already 0.
    """
    if word_mask.dim() != 2:
        raise ValueError(f"word_mask must be [n, L]; got shape {tuple(word_mask.shape)}")
    current = word_mask.bool().clone()
    masks = [current.clone()]
    n, length = current.shape
    rows = torch.arange(n, device=current.device)
    for _ in range(1, depth):
        if official_mask_quirk:
            # Python-style index: sum-1 == -1 means the last position, as in the official in-place write.
            last = (current.sum(-1) - 1) % length
            current[:, 0] = False
            current[rows, last] = False
        masks.append(current.clone())
    return torch.stack(masks)


class PerceiverAttention(nn.Module):
    """Latents attend to ``[text; latents]``; q and k are Gemma-RMS-normalised per head; no biases.

    Shapes: text ``[R, L, D]``, latents ``[R, Q, D]``, text_mask ``[R, L]`` bool -> ``[R, Q, D]``.
    Latents always attend to all latents, so an all-False text mask is well defined.
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.q_norm = GemmaRMSNorm(dim_head)
        self.k_norm = GemmaRMSNorm(dim_head)

    def _heads(self, x: Tensor) -> Tensor:
        r, t, _ = x.shape
        return x.view(r, t, self.heads, self.dim_head).transpose(1, 2)

    def forward(self, text: Tensor, latents: Tensor, text_mask: Tensor) -> Tensor:
        text = self.norm1(text)
        latents = self.norm2(latents)
        q = self.q_norm(self._heads(self.to_q(latents)))
        k, v = self.to_kv(torch.cat([text, latents], dim=1)).chunk(2, dim=-1)
        k, v = self.k_norm(self._heads(k)), self._heads(v)
        r, q_len = latents.shape[:2]
        key_mask = torch.cat([text_mask, text_mask.new_ones(r, q_len)], dim=1)  # [R, L+Q]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.to_out(out.transpose(1, 2).reshape(r, q_len, -1))


class GatedMLP(nn.Module):
    """``down(RMSNorm_noscale(GELU_tanh(gate x) * up x))``, no biases, no pre-norm. ``[..., D] -> [..., D]``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.norm = UnscaledRMSNorm()
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.up_proj = nn.Linear(dim, inner, bias=False)
        self.down_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.norm(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x)))


class Resampler(nn.Module):
    """Compress each instance's per-depth text features into ``num_queries`` tokens (spec §2.2).

    The learned queries are shared across depths; every depth is resampled independently with the same weights.
    Official sizes: dim 2560, 4 blocks, 20 heads x 128, 4 queries, in/out width 2048, MLP x4.
    """

    def __init__(
        self,
        dim: int = 2560,
        depth: int = 4,
        heads: int = 20,
        dim_head: int = 128,
        num_queries: int = 4,
        in_dim: int = 2048,
        out_dim: int = 2048,
        ff_mult: int = 4,
        official_mask_quirk: bool = True,
    ) -> None:
        super().__init__()
        self.official_mask_quirk = official_mask_quirk
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, heads, dim_head), GatedMLP(dim, ff_mult)]) for _ in range(depth)
        )
        self.attention_norm = nn.LayerNorm(dim)
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)

    def forward(self, text: Tensor, word_mask: Tensor) -> Tensor:
        """text ``[n, k, L, in_dim]`` (k depths), word_mask ``[n, L]`` -> tokens ``[n, k, num_queries, out_dim]``."""
        if text.dim() != 4:
            raise ValueError(f"resampler text features must be [n, depths, L, C]; got {tuple(text.shape)}")
        n, k, length, _ = text.shape
        if tuple(word_mask.shape) != (n, length):
            raise ValueError(
                f"word_mask must be [{n}, {length}] to match the text features; got {tuple(word_mask.shape)}"
            )
        masks = block_word_masks(word_mask.to(text.device), len(self.layers), self.official_mask_quirk)
        x = self.proj_in(text).reshape(n * k, length, -1)
        latents = self.latents.to(x.dtype).expand(n * k, -1, -1)
        for (attn, mlp), mask in zip(self.layers, masks):
            mask_rows = mask.repeat_interleave(k, dim=0)  # row r = instance r // k, depth r % k
            latents = latents + attn(x, latents, mask_rows)
            latents = latents + mlp(latents)
        out = self.norm_out(self.proj_out(self.attention_norm(latents)))
        return out.view(n, k, -1, out.shape[-1])
