"""RMS normalisations used by IFAdapter (Gemma convention).

Both the resampler and the per-layer processor normalise per attention head with a Gemma-style RMSNorm: the
learned weight starts at 0 and the effective scale is ``1 + w``. The statistics are taken in float32 and the result
is cast back to the input dtype, so fp16/bf16 activations do not overflow in ``x**2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

RMS_EPS = 1e-6


def rms_normalize(x: Tensor, eps: float = RMS_EPS) -> Tensor:
    """``x / sqrt(mean(x**2, -1) + eps)`` over the last axis, computed in float32. Returns float32."""
    x32 = x.float()
    return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)


class GemmaRMSNorm(nn.Module):
    """RMSNorm over the last axis with effective scale ``1 + weight`` (weight initialised to 0).

    Shapes: ``[..., dim] -> [..., dim]`` (same dtype as the input).
    """

    def __init__(self, dim: int, eps: float = RMS_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (rms_normalize(x, self.eps) * (1.0 + self.weight.float())).to(x.dtype)


class UnscaledRMSNorm(nn.Module):
    """RMSNorm over the last axis without any learned parameter (used inside the resampler's gated MLP)."""

    def __init__(self, eps: float = RMS_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return rms_normalize(x, self.eps).to(x.dtype)
