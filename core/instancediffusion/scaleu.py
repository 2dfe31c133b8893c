"""ScaleU (spec §3): per-channel backbone scale and an FFT low-frequency skip scale at the 12 decoder joins.

Parameters ``scaleu_b_{i}`` (C_i,) and ``scaleu_s_{i}`` (1,), names equal to the official UNet keys. The plain
(non-SE) variant is the one the official model uses. Suited to ComfyUI's ``output_block_patch``
``(h, hsp, transformer_options) -> (h, hsp)`` with ``block_id = transformer_options["block"][1]``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

# Channels of the backbone feature entering output block i (SD1.5).
SCALEU_CHANNELS: tuple[int, ...] = (1280, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320)


def fourier_filter_fft(x: torch.Tensor, threshold: int, scale: torch.Tensor | float) -> torch.Tensor:
    """Scale the centred low-frequency block of x's 2-D spectrum: the official computation, through full FFTs.

    x: [B, C, H, W]. FFT over (H, W) in fp32 (the official run is under fp16 autocast, where FFTs are fp32),
    fftshift, multiply bins ``[H//2-t : H//2+t, W//2-t : W//2+t]`` (Python slicing, as official) by ``scale``,
    inverse shift, inverse FFT, keep ``.real``, cast back to x's dtype. Returns a new tensor.
    :func:`fourier_filter` computes the same result without the full transforms.
    """
    dtype = x.dtype
    xf = torch.fft.fftn(x.float(), dim=(-2, -1))
    xf = torch.fft.fftshift(xf, dim=(-2, -1))
    h, w = xf.shape[-2:]
    mask = torch.ones((h, w), dtype=torch.float32, device=x.device)
    crow, ccol = h // 2, w // 2
    scale_t = torch.as_tensor(scale, dtype=torch.float32, device=x.device).reshape(())
    mask[crow - threshold : crow + threshold, ccol - threshold : ccol + threshold] = scale_t
    xf = torch.fft.ifftshift(xf * mask, dim=(-2, -1))
    return torch.fft.ifftn(xf, dim=(-2, -1)).real.to(dtype)


@functools.lru_cache(maxsize=64)
def _band(n: int, threshold: int, device: torch.device) -> torch.Tensor:
    """[k, n] complex64 DFT rows ``exp(-2πi·f·j/n)`` for the frequencies f the official mask slice
    ``[n//2 - t : n//2 + t]`` of the fftshifted spectrum selects (fftshift puts frequency i - n//2 at index i;
    Python slicing, so a negative start wraps as in the official code)."""
    kept = torch.arange(n)[n // 2 - threshold : n // 2 + threshold]
    f = (kept - n // 2).to(torch.float64)
    angle = -2 * math.pi * torch.outer(f, torch.arange(n, dtype=torch.float64)) / n
    return torch.polar(torch.ones_like(angle), angle).to(device=device, dtype=torch.complex64)


def fourier_filter(x: torch.Tensor, threshold: int, scale: torch.Tensor | float) -> torch.Tensor:
    """The official Fourier filter (:func:`fourier_filter_fft`: the centred ``2t × 2t`` block of the shifted
    spectrum scaled by ``scale``, real part, x's dtype), computed from the scaled bins only.

    The DFT is linear, so ``ifft(mask · fft(x)) = x + (scale - 1) · ifft(1_S · fft(x))`` with S the (2t)² bins the
    mask scales; those bins and their inverse transform are a few rank-2t matrix products along H and W
    (O(t·H·W) per channel instead of two full FFTs of complex copies). The same values up to float rounding
    (fp32 throughout, like the official FFT). Returns a new tensor; x is not modified.
    """
    dtype = x.dtype
    xf = x.float()
    h, w = x.shape[-2:]
    rows, cols = _band(h, threshold, x.device), _band(w, threshold, x.device)  # [kh, H], [kw, W]
    kw = cols.shape[0]
    if rows.shape[0] == 0 or kw == 0:
        return xf.to(dtype) if xf is not x else x.clone()
    m = xf.numel() // (h * w)
    x2 = xf.reshape(m * h, w)
    cw = torch.cat([cols.real, cols.imag], 0)  # [2kw, W]
    # the scaled bins: X[r, c] = Σ_y Σ_x x[y, x] · rows[r, y] · cols[c, x]
    t = (x2 @ cw.T).view(m, h, 2, kw)
    t = torch.complex(t[:, :, 0], t[:, :, 1]).permute(1, 0, 2).reshape(h, m * kw)  # x · colsᵀ, [H, m·kw]
    s = torch.as_tensor(scale, dtype=torch.float32, device=x.device).reshape(())
    bins = (rows @ t) * ((s - 1) / (h * w))  # [kh, m·kw]
    # their inverse transform, real part: Re(conj(rows)ᵀ · bins · conj(cols)), added to x in one pass
    u = (rows.conj().T @ bins).view(h, m, kw).permute(1, 0, 2)  # [m, H, kw]
    u = torch.cat([u.real, u.imag], -1).reshape(m * h, 2 * kw)
    return torch.addmm(x2, u, cw).view(x.shape).to(dtype)


class ScaleU(nn.Module):
    """The 12 ScaleU parameter pairs; ``forward(h, hsp, block_id) -> (h, hsp)``."""

    def __init__(self, channels: tuple[int, ...] = SCALEU_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        for i, c in enumerate(self.channels):
            self.register_parameter(f"scaleu_b_{i}", nn.Parameter(torch.zeros(c)))
            self.register_parameter(f"scaleu_s_{i}", nn.Parameter(torch.zeros(1)))

    def forward(self, h: torch.Tensor, hsp: torch.Tensor, block_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """h: [B, C_i, H, W] backbone feature; hsp: [B, C_skip, H, W] skip; block_id: output block 0..11.

        Returns (h·(tanh(b)+1) per channel, fourier_filter(hsp, 1, tanh(s)+1)); inputs are not modified.
        """
        if not 0 <= block_id < len(self.channels):
            raise ValueError(f"ScaleU: output block id {block_id} is outside 0..{len(self.channels) - 1}")
        b = getattr(self, f"scaleu_b_{block_id}")
        s = getattr(self, f"scaleu_s_{block_id}")
        if h.shape[1] != b.shape[0]:
            raise ValueError(
                f"ScaleU: output block {block_id} expects {b.shape[0]} backbone channels, got h of shape {tuple(h.shape)}"
            )
        bf = (torch.tanh(b.float()) + 1).to(device=h.device, dtype=h.dtype)
        h = h * bf[None, :, None, None]
        hsp = fourier_filter(hsp, 1, torch.tanh(s.float()) + 1)
        return h, hsp
