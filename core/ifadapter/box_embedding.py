"""GLIGEN-style box embedding ``p_i = MLP(Fourier(b_i))`` (spec §2.3); checkpoint prefix ``pos_net.``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..fourier import fourier_features


def fourier_embed(boxes: Tensor, num_freqs: int = 64, temperature: float = 100.0) -> Tensor:
    """Fourier features of normalised xyxy boxes.

    ``boxes`` ``[n, 4]`` -> ``[n, 4 * 2 * num_freqs]``. Frequencies ``f_k = temperature**(k / num_freqs)`` for
    ``k = 0..num_freqs-1`` (no pi factor). Feature layout is (frequency, sin|cos, coordinate): index
    ``k * 8 + j * 4 + c`` holds ``sin`` (j=0) or ``cos`` (j=1) of ``f_k * boxes[:, c]``.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [n, 4] normalised xyxy; got shape {tuple(boxes.shape)}")
    feats = fourier_features(boxes, num_freqs, temperature)
    return feats.to(boxes.dtype if boxes.is_floating_point() else torch.float32)


class BoxEmbedding(nn.Module):
    """``[n, 4]`` normalised xyxy boxes -> ``[n, out_dim]``: Fourier(64) -> 768 -> SiLU -> 768 -> SiLU -> out_dim."""

    def __init__(self, out_dim: int = 2048, num_freqs: int = 64, hidden: int = 768) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.linears_position = nn.Sequential(
            nn.Linear(num_freqs * 2 * 4, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, boxes: Tensor) -> Tensor:
        weight = self.linears_position[0].weight
        return self.linears_position(fourier_embed(boxes, self.num_freqs).to(weight.dtype))
