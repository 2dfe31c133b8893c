"""IFAdapter on a batch of different layouts, with gradients: what training needs (pure torch).

At sampling time every row of a batch shares one layout (:class:`~.runtime.IFAdapterRuntime`, K/V cached, no
gradients). Training batches carry one layout per row, with a different number of instances per row, and the
adapter's weights must receive gradients. This module provides:

- :func:`encode_instance_batch`: appearance tokens for every instance of every row in one resampler call, with
  per-row dropout of the descriptions (boxes kept: the unconditional branch at inference);
- :class:`BatchedRuntime`: the same ``layer_delta(key, q, positive, grid)`` interface as ``IFAdapterRuntime``, so
  the pack's attn2 patch (``IFAdapterLayer`` inside ``ChainedAttn2``) drives it exactly as it drives inference, and
  the same :class:`~.semantic_map.IFAttnProcessor` forward computes the residual. Rows with fewer instances are
  padded with empty slots, which the processor treats exactly as the absent slots of a smaller layout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .adapter import TOKENS_PER_INSTANCE, IFAdapter
from .semantic_map import InstanceGeometry


def encode_instance_batch(
    adapter: IFAdapter,
    text_hidden: Tensor,
    word_mask: Tensor,
    eot: Tensor,
    boxes: Tensor,
    valid: Tensor,
    keep_text: Tensor | None = None,
) -> Tensor:
    """Appearance tokens of a padded batch of layouts (differentiable).

    Args:
        text_hidden: ``[B, S, 3, L, C]`` per-instance CLIP features (depths -2, -4, -6; C = 2048 SDXL, 768 SD1.5).
        word_mask: ``[B, S, L]`` bool, the description words (positions 1..EoT-1).
        eot: ``[B, S, C]`` the EoT feature.
        boxes: ``[B, S, 4]`` normalised xyxy.
        valid: ``[B, S]`` bool, which slots hold an instance (at least one per row).
        keep_text: ``[B]`` bool, False drops that row's descriptions (zero features, zero EoT, empty word mask;
            boxes kept), as the unconditional branch at inference. None keeps every row's text.
    Returns:
        ``[B, S, 13, C]`` tokens; empty slots are zero.
    """
    b, s = valid.shape
    if keep_text is not None:
        keep = keep_text.to(text_hidden.device).bool()
        text_hidden = text_hidden * keep[:, None, None, None, None].to(text_hidden.dtype)
        eot = eot * keep[:, None, None].to(eot.dtype)
        word_mask = word_mask.bool() & keep[:, None, None]
    flat = valid.flatten().nonzero().flatten()
    tokens = adapter.encode_instances(
        text_hidden.flatten(0, 1).index_select(0, flat),
        word_mask.flatten(0, 1).index_select(0, flat),
        eot.flatten(0, 1).index_select(0, flat),
        boxes.flatten(0, 1).index_select(0, flat),
    )
    out = tokens.new_zeros(b * s, TOKENS_PER_INSTANCE, tokens.shape[-1])
    return out.index_copy(0, flat, tokens).view(b, s, TOKENS_PER_INSTANCE, -1)


class BatchedRuntime:
    """The IFAdapter residual for a batch with one layout per row (gradients flow into the adapter).

    ``tokens`` ``[B, S, 13, C]``, ``boxes`` ``[B, S, 4]`` normalised xyxy, ``valid`` ``[B, S]``. Every row is a
    conditional row: description dropout is already in the tokens (:func:`encode_instance_batch`), so ``positive``
    must be all True. The rasterised layout is kept per grid (it has no gradient); the K/V projection runs on every
    call because the tokens change at every step.
    """

    def __init__(self, adapter: IFAdapter, tokens: Tensor, boxes: Tensor, valid: Tensor, scale: float = 1.0):
        max_obj = adapter.max_obj
        if tokens.dim() != 4 or tokens.shape[:2] != valid.shape or boxes.shape[:2] != valid.shape:
            raise ValueError(f"tokens [B, S, 13, C], boxes [B, S, 4] and valid [B, S] must agree; got "
                             f"{tuple(tokens.shape)}, {tuple(boxes.shape)}, {tuple(valid.shape)}")
        if valid.shape[1] > max_obj:
            raise ValueError(f"{valid.shape[1]} instance slots given but IFAdapter supports at most {max_obj}")
        self.adapter, self.tokens, self.boxes, self.valid = adapter, tokens, boxes, valid.bool()
        self.scale = float(scale)
        self._geometry: dict = {}

    def __deepcopy__(self, memo):  # holds the adapter: never duplicated by a model clone
        return self

    def geometry(self, h: int, w: int, device: torch.device) -> InstanceGeometry:
        """The batch's layouts rasterised on an ``h x w`` grid (IFAdapter cell rule)."""
        key = (h, w, str(device))
        geo = self._geometry.get(key)
        if geo is None:
            geo = InstanceGeometry.from_boxes(self.boxes.float().to(device), h, w, self.valid.to(device))
            self._geometry[key] = geo
        return geo

    def layer_delta(self, key: tuple, q: Tensor, positive: Tensor, grid: tuple[int, int]) -> Tensor:
        """``gamma * tanh(lambda) * (1 - M_bg) * D`` ``[B, N, hidden]`` for attn2 layer ``key`` (with gradients)."""
        if q.shape[0] != self.tokens.shape[0]:
            raise ValueError(f"the UNet batch has {q.shape[0]} rows but the instance batch {self.tokens.shape[0]}; "
                             "one layout per row is needed")
        if not bool(positive.all()):
            raise ValueError("BatchedRuntime rows are all conditional; put description dropout in the tokens")
        proc = self.adapter.processor(key)
        kv = proc.project_tokens(self.tokens)
        delta = proc(q, kv, self.geometry(grid[0], grid[1], q.device))
        return delta * self.scale if self.scale != 1.0 else delta
