"""ScaleU (spec §3): per-channel backbone scale and an FFT low-frequency skip scale at the 12 decoder joins.

Parameters ``scaleu_b_{i}`` (C_i,) and ``scaleu_s_{i}`` (1,), names equal to the official UNet keys. The plain
(non-SE) variant is the one the official model uses. Suited to ComfyUI's ``output_block_patch``
``(h, hsp, transformer_options) -> (h, hsp)`` with ``block_id = transformer_options["block"][1]``.
"""

from __future__ import annotations

import torch
from torch import nn

# Channels of the backbone feature entering output block i (SD1.5).
SCALEU_CHANNELS: tuple[int, ...] = (1280, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320)


def fourier_filter(x: torch.Tensor, threshold: int, scale: torch.Tensor | float) -> torch.Tensor:
    """Scale the centred low-frequency block of x's 2-D spectrum.

    x: [B, C, H, W]. FFT over (H, W) in fp32 (the official run is under fp16 autocast, where FFTs are fp32),
    fftshift, multiply bins ``[H//2-t : H//2+t, W//2-t : W//2+t]`` (Python slicing, as official) by ``scale``,
    inverse shift, inverse FFT, keep ``.real``, cast back to x's dtype. Returns a new tensor.
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
