"""GLIGEN-style Fourier features, shared by IFAdapter's box embedding and InstanceDiffusion's position net."""
from __future__ import annotations

import torch
from torch import Tensor


def fourier_features(x: Tensor, num_freqs: int, temperature: float = 100.0) -> Tensor:
    """``[..., D]`` -> ``[..., 2 * num_freqs * D]`` in float32.

    Frequencies ``f_k = temperature**(k / num_freqs)`` (float32, no pi factor), ``k = 0..num_freqs-1``. Layout
    (frequency, sin|cos, coordinate): index ``k * 2D + j * D + c`` holds ``sin`` (j=0) or ``cos`` (j=1) of
    ``f_k * x[..., c]`` — the official ``cat([sin(f_0 x), cos(f_0 x), sin(f_1 x), ...], -1)``.
    """
    freqs = temperature ** (torch.arange(num_freqs, dtype=torch.float32) / num_freqs)
    angles = freqs.to(x.device)[:, None] * x.float()[..., None, :]  # [..., F, D]
    return torch.stack([angles.sin(), angles.cos()], dim=-2).flatten(-3)
