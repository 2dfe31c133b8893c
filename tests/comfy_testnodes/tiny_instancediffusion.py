"""Random-weight InstanceDiffusion adapters matching the tiny SD1.5-layout UNet of :mod:`.tiny_models`.

The tiny UNet has the real SD1.5 block structure with 32 base channels, so its 16 transformer blocks are 32/64/128
wide instead of 320/640/1280. The adapter written here has every official key (same names, same nesting), with the
widths that follow from that UNet: fusers 32/64/128, ScaleU 128/64/32, and a small position-net MLP and mask
encoder. The pack's loader reads the widths back from the shapes, so these files go through exactly the code that
loads the real 13.6 GB checkpoint. Writers for the three on-disk layouts: converted ``.safetensors``, the official
training snapshot (``ema`` / ``model`` / ...) and logtd's split ``position_net.ckpt`` / ``fusers.ckpt`` /
``scaleu.ckpt``.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch

from core.instancediffusion import AdapterConfig, InstanceDiffusion
from core.instancediffusion.fuser import FUSER_BLOCKS, FUSER_PREFIXES

B = 32  # tiny_models.BASE_CHANNELS
TINY_CONFIG = AdapterConfig(
    fuser_channels=(B, B, 2 * B, 2 * B, 4 * B, 4 * B, 4 * B, 4 * B, 4 * B, 4 * B, 2 * B, 2 * B, 2 * B, B, B, B),
    scaleu_channels=(4 * B,) * 7 + (2 * B,) * 3 + (B,) * 2,
    mid_dim=64,
    convnext_dims=(8, 16, 32, 64),
    convnext_depths=(1, 1, 1, 1),
)


def tiny_adapter_state(seed: int = 0, config: AdapterConfig = TINY_CONFIG) -> OrderedDict:
    """Official-named adapter state dict with random weights strong enough to change the image visibly.

    Linear/conv weights N(0, 0.05²), norms 1/0, biases and null embeddings small random, gates alpha_attn /
    alpha_dense 0.5 (tanh ≈ 0.46; zero would make the fusers the identity), ScaleU b ~ N(0, 0.3²), s = 0.3,
    ConvNeXt layer scale 0.1.
    """
    with torch.device("meta"):
        model = InstanceDiffusion(config=config)
    g = torch.Generator().manual_seed(1000 + seed)
    out = OrderedDict()
    for k, v in model.official_state_dict().items():
        shape = tuple(v.shape)
        name = k.rsplit(".", 1)[-1]
        if name in ("alpha_attn", "alpha_dense"):
            t = torch.full(shape, 0.5)
        elif k.startswith("scaleu_b_"):
            t = torch.randn(shape, generator=g) * 0.3
        elif k.startswith("scaleu_s_"):
            t = torch.full(shape, 0.3)
        elif name == "gamma":
            t = torch.full(shape, 0.1)
        elif "norm" in k and name == "weight":
            t = torch.ones(shape)
        elif "norm" in k and name == "bias":
            t = torch.zeros(shape)
        else:
            t = torch.randn(shape, generator=g) * 0.05
        out[k] = t
    return out


def write_safetensors(path: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> OrderedDict:
    from safetensors.torch import save_file

    state = tiny_adapter_state(seed)
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, path,
              metadata={"format": "instancediffusion-sd15-adapter", "origin": "test"})
    return state


def write_training_snapshot(path: str, seed: int = 0) -> OrderedDict:
    """Like ``instancediffusion_sd15.pth``: ``ema`` (used) and ``model`` (different weights), plus other entries."""
    ema = tiny_adapter_state(seed)
    model = tiny_adapter_state(seed + 1)
    base = {"input_blocks.0.0.weight": torch.zeros(B, 4, 3, 3), "input_blocks.0.0.bias": torch.zeros(B)}
    torch.save({"model": OrderedDict({**base, **model}), "ema": OrderedDict({**base, **ema}),
                "iters": 1, "scheduler": {"last_epoch": 1}}, path)
    return ema


def write_logtd_split(folder: str, seed: int = 0) -> tuple[str, str, str, OrderedDict]:
    """logtd's three files (see the spec §6) in ``folder``; returns their paths and the official-named state."""
    state = tiny_adapter_state(seed)
    pn = OrderedDict((k[len("position_net."):], v) for k, v in state.items() if k.startswith("position_net."))
    fusers: dict = {"input_blocks": {}, "middle_block": {}, "output_blocks": {}}
    for block, prefix in zip(FUSER_BLOCKS, FUSER_PREFIXES):
        group, _, idx = block.partition(".")
        sd = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        c = sd["linear.bias"].shape[0]
        fusers[group][idx or "1"] = {"params": {"query_dim": c, "context_dim": 768, "n_heads": 8, "d_head": c // 8},
                                     "state": sd}
    scaleu = {str(i): {"scaleu_b": state[f"scaleu_b_{i}"], "scaleu_s": state[f"scaleu_s_{i}"]} for i in range(12)}
    os.makedirs(folder, exist_ok=True)
    paths = tuple(os.path.join(folder, n) for n in ("position_net.ckpt", "fusers.ckpt", "scaleu.ckpt"))
    for p, obj in zip(paths, (pn, fusers, scaleu)):
        torch.save(obj, p)
    return (*paths, state)
