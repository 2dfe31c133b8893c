"""``InstanceDiffusion``: the trained adapter parts (position net, 16 fusers, ScaleU) in one nn.Module.

State-dict names map one-to-one to the official checkpoint keys (spec §5) through :func:`to_official_key` /
:func:`from_official_key`:

- ``position_net.X``          <-> ``position_net.X``
- ``fusers.{i}.X``            <-> ``{FUSER_PREFIXES[i]}X`` (i = ComfyUI transformer_index 0..15)
- ``scaleu.scaleu_{b,s}_{j}`` <-> ``scaleu_{b,s}_{j}``
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .fuser import FUSER_CHANNELS, FUSER_PREFIXES, GatedSelfAttentionDense, build_fusers
from .position_net import DropFlags, PositionNet
from .scaleu import SCALEU_CHANNELS, ScaleU


def to_official_key(name: str) -> str:
    """Module state-dict name -> official UNet key."""
    if name.startswith("position_net."):
        return name
    if name.startswith("scaleu."):
        return name[len("scaleu.") :]
    if name.startswith("fusers."):
        idx, rest = name[len("fusers.") :].split(".", 1)
        return FUSER_PREFIXES[int(idx)] + rest
    raise KeyError(f"not an InstanceDiffusion adapter parameter: {name!r}")


def from_official_key(key: str) -> str | None:
    """Official UNet key -> module state-dict name, or None if the key is not an adapter key (base UNet etc.)."""
    if key.startswith("position_net."):
        return key
    if key.startswith("scaleu_b_") or key.startswith("scaleu_s_"):
        return "scaleu." + key
    if ".fuser." in key:
        for i, prefix in enumerate(FUSER_PREFIXES):
            if key.startswith(prefix):
                return f"fusers.{i}.{key[len(prefix) :]}"
        return None
    return None


def is_adapter_key(key: str) -> bool:
    """True for official keys the adapter owns: ``position_net.*``, ``*.fuser.*``, ``scaleu_*``."""
    return key.startswith("position_net.") or key.startswith("scaleu_") or ".fuser." in key


@dataclass(frozen=True)
class AdapterConfig:
    """Widths of an InstanceDiffusion adapter. The defaults are the released SD1.5 model; every field is read back
    from a checkpoint's tensor shapes by :func:`.loading.infer_config` (so a small test model with SD1.5's block
    layout but 32/64/128 transformer widths loads through the same strict code path).

    fuser_channels: visual width of each of the 16 fusers (ComfyUI transformer_index order).
    scaleu_channels: backbone channels entering each of the 12 output blocks.
    mid_dim: hidden width of the position net MLPs; convnext_dims / convnext_depths: the mask encoder.
    """

    fuser_channels: tuple[int, ...] = FUSER_CHANNELS
    scaleu_channels: tuple[int, ...] = SCALEU_CHANNELS
    mid_dim: int = 3072
    convnext_dims: tuple[int, ...] = (96, 192, 384, 768)
    convnext_depths: tuple[int, ...] = (3, 3, 9, 3)

    @property
    def is_official(self) -> bool:
        return self == AdapterConfig()


class InstanceDiffusion(nn.Module):
    """Position net + fusers + ScaleU.

    - ``encode(inputs) -> objs [B, 184, 768]``: run once per sampling run (and once for :func:`.inputs.null_inputs`
      for the unconditional rows), cache, never per block.
    - ``fuse(x [B, N, C], objs, transformer_index, scale) -> x``: for ComfyUI's ``middle_patch``.
    - ``scale_u(h, hsp, block_id) -> (h, hsp)``: for ComfyUI's ``output_block_patch``.

    In eval mode (as loaded for sampling) these run without autograd. In train mode (the trainer) they record
    gradients: the same methods, called by the same patch objects, are the training forward.
    """

    def __init__(
        self,
        position_net: PositionNet | None = None,
        fuser_channels: tuple[int, ...] = FUSER_CHANNELS,
        scaleu_channels: tuple[int, ...] = SCALEU_CHANNELS,
        context_dim: int = 768,
        config: AdapterConfig | None = None,
    ) -> None:
        super().__init__()
        if config is not None:
            fuser_channels, scaleu_channels = config.fuser_channels, config.scaleu_channels
            if position_net is None:
                position_net = PositionNet(
                    mid_dim=config.mid_dim, convnext_dims=config.convnext_dims, convnext_depths=config.convnext_depths
                )
        self.config = config or AdapterConfig(tuple(fuser_channels), tuple(scaleu_channels))
        self.position_net = position_net if position_net is not None else PositionNet()
        self.fusers = build_fusers(fuser_channels, context_dim)
        self.scaleu = ScaleU(scaleu_channels)
        self.eval()

    def grad_context(self) -> contextlib.AbstractContextManager:
        """No autograd in eval mode; the caller's grad mode in train mode."""
        return contextlib.nullcontext() if self.training else torch.no_grad()

    def encode(self, inputs: dict[str, torch.Tensor], drop: DropFlags | torch.Tensor | None = None) -> torch.Tensor:
        """Grounding tokens objs [B, 184, 768]; ``drop``: see :meth:`.position_net.PositionNet.forward`."""
        with self.grad_context():
            return self.position_net(inputs, drop)

    def fuse(self, x: torch.Tensor, objs: torch.Tensor, transformer_index: int, scale: float = 1.0) -> torch.Tensor:
        """Apply fuser ``transformer_index`` (0..15) to visual tokens x [B, N, C]; objs [B or 1, 184, 768]."""
        fuser = self.fuser_for(x, transformer_index)
        with self.grad_context():
            return fuser(x, objs, scale)

    def fuser_for(self, x: torch.Tensor, transformer_index: int) -> GatedSelfAttentionDense:
        """Fuser ``transformer_index`` (0..15), checked against the visual tokens x [B, N, C] it will fuse."""
        if not 0 <= transformer_index < len(self.fusers):
            raise ValueError(
                f"InstanceDiffusion: transformer_index {transformer_index} is outside 0..{len(self.fusers) - 1} "
                "(SD1.5 has 16 transformer blocks; is this an SD1.5 model?)"
            )
        fuser = self.fusers[transformer_index]
        if x.shape[-1] != fuser.linear.out_features:
            raise ValueError(
                f"InstanceDiffusion: fuser {transformer_index} expects {fuser.linear.out_features} channels, "
                f"got x of shape {tuple(x.shape)} (is this an SD1.5 model?)"
            )
        return fuser

    def scale_u(self, h: torch.Tensor, hsp: torch.Tensor, block_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ScaleU at output block ``block_id`` (0..11); h [B, C_i, H, W], hsp [B, C_skip, H, W]."""
        with self.grad_context():
            return self.scaleu(h, hsp, block_id)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict under the official key names (for saving / conversion)."""
        return {to_official_key(k): v for k, v in self.state_dict().items()}
