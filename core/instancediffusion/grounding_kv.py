"""The grounding tokens' keys and values in each of the 16 fusers, computed once per sampling run.

A fuser attends from the visual tokens to ``cat[visual, grounding]``; the grounding half of its keys and values,
``to_k / to_v(norm1(linear(objs)))``, depends only on the layout (the token table of the position net) and the
adapter's weights, never on the step or the latent. :class:`GroundingKV` computes it once per (token table, fuser,
weight dtype and device) for every row of the table (null grounding, the full layout, MIS instances, frames) and
then gathers each batch row's keys and values by its table row.

Memory: 2 × 184 × (Σ fuser widths = 12480) values per table row, 18.4 MB in fp32 for the official adapter (36.7 MB
for the usual two rows, null + layout). Tables above :data:`MAX_CACHE_BYTES` (many frames of a layout over time) are
not cached: each call then projects only the distinct rows its batch uses.
"""

from __future__ import annotations

import torch

from .model import InstanceDiffusion

MAX_CACHE_BYTES = 640 * 2**20  # 34 table rows of the official adapter in fp32: MIS with 30 instances fits


class GroundingKV:
    """Per-run cache of the 16 fusers' grounding keys and values for one token table.

    ``fuse(x, table, rows, transformer_index, scale)`` equals ``model.fuse(x, table[rows], transformer_index,
    scale)`` up to float rounding. The cache is rebuilt when the table object, or the fusers' dtype or device,
    changes; it never holds more than one table. A model in train mode (with autograd on) is never cached: each call
    projects its rows' keys and values with gradients.
    """

    def __init__(self, model: InstanceDiffusion, max_bytes: int = MAX_CACHE_BYTES):
        self.model = model
        self.max_bytes = int(max_bytes)
        self._table: torch.Tensor | None = None
        self._key: tuple | None = None
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.projections = 0  # how many times grounding keys/values were projected (tests, benchmarks)

    def cached_bytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self._kv.values())

    def table_bytes(self, table: torch.Tensor) -> int:
        """What caching every fuser's keys and values for ``table`` would take."""
        width = sum(f.attn.to_k.out_features for f in self.model.fusers)
        itemsize = self.model.fusers[0].linear.weight.element_size()
        return 2 * table.shape[0] * table.shape[1] * width * itemsize

    def fuse(self, x: torch.Tensor, table: torch.Tensor, rows: torch.Tensor, transformer_index: int,
             scale: float = 1.0) -> torch.Tensor:
        """Fuser ``transformer_index`` on x [B, N, C] with batch row b grounded on ``table[rows[b]]``
        (table [R, 184, 768], rows [B] long). Returns a new tensor; x is not modified."""
        fuser = self.model.fuser_for(x, transformer_index)
        if scale == 0.0:
            return x
        rows = rows.cpu()
        if self.model.training and torch.is_grad_enabled():
            # training: the grounding keys and values change with every step's tokens and weights; projected per
            # call, with autograd, through the same two methods
            k, v = fuser.grounding_kv(table[rows.to(table.device)])
            return fuser.forward_kv(x, k, v, scale)
        with torch.no_grad():
            if self.table_bytes(table) > self.max_bytes:  # project only the distinct rows this batch uses
                uniq, inv = torch.unique(rows, return_inverse=True)
                k, v = fuser.grounding_kv(table[uniq.to(table.device)])
                self.projections += 1
                inv = inv.to(k.device)
                return fuser.forward_kv(x, k[inv], v[inv], scale)
            w = fuser.linear.weight
            key = (w.dtype, w.device)
            if table is not self._table or key != self._key:
                self._table, self._key, self._kv = table, key, {}
            kv = self._kv.get(transformer_index)
            if kv is None:
                kv = fuser.grounding_kv(table)
                self._kv[transformer_index] = kv
                self.projections += 1
            k, v = kv
            if k.shape[0] > 1:
                # one table row for the whole batch: a [1, M, inner] slice, broadcast by forward_kv
                rows = rows[:1] if bool((rows == rows[0]).all()) else rows
                rows = rows.to(k.device)
                k, v = k[rows], v[rows]
            return fuser.forward_kv(x, k, v, scale)

    def clear(self) -> None:
        self._table, self._key, self._kv = None, None, {}
