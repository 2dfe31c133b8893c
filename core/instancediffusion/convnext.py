"""ConvNeXt-Tiny mask encoder of the InstanceDiffusion position net (spec §1.4, mask branch).

Depths (3, 3, 9, 3), dims (96, 192, 384, 768), stem 4×4/4, three 2×2/2 downsamples, no final norm, no head.
Key names equal the official ``position_net.convnext_tiny_backbone.*`` keys (178 tensors, 27,818,592 params).
No pretrained download: the weights always come from the InstanceDiffusion checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of [B, C, H, W] (ConvNeXt "channels_first", eps 1e-6)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    """dwconv 7×7 -> LayerNorm (channels last) -> Linear(d, 4d) -> GELU -> Linear(4d, d) -> ·gamma -> + residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """Feature extractor: [B, in_chans, H, W] -> [B, dims[-1], H/32, W/32] (no pooling, no head)."""

    def __init__(
        self,
        in_chans: int = 3,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        dims: tuple[int, ...] = (96, 192, 384, 768),
    ) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0]))]
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*(Block(d) for _ in range(n))) for d, n in zip(dims, depths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return x


def features_to_tokens(feat: torch.Tensor, n_tokens: int = 64) -> torch.Tensor:
    """The official raw reshape: [B, C, h, w] -> reshape(B, -1, n_tokens) -> permute -> [B, n_tokens, C·h·w/n_tokens].

    Memory order is kept literally: token j collects, for each channel c and each quarter q of the 256 pixels,
    pixel q·64 + j (for 16×16 maps); it is *not* a spatial pooling.
    """
    b = feat.shape[0]
    return feat.reshape(b, -1, n_tokens).permute(0, 2, 1)
