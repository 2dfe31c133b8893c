"""Builders for InstanceDiffusion checkpoint fixtures with the official key set (all 513 keys, same names and
nesting) at the small widths of :data:`FIXTURE_CONFIG` (the loader reads widths back from the shapes).

Every tensor has its own storage, as ``torch.save`` of a real state dict writes it: the loader refuses tensors that
view bytes their storage does not hold or that share bytes with another tensor (see :func:`pool_views_state` for
that hostile layout). The training snapshot mimics ``utils/checkpoint.save_ckpt_and_result``:
``model``, ``ema``, ``opt``, ``scheduler``, ``iters``, ``config_dict`` (an object of a class outside any allow-list,
pickled under OmegaConf's module name, plus an optional payload whose ``__reduce__`` would create a directory),
``text_encoder``, ``autoencoder``, ``diffusion``.
"""

from __future__ import annotations

import math
import os
import sys
import types
from collections import OrderedDict

import torch

from core.instancediffusion import AdapterConfig
from core.instancediffusion.fuser import FUSER_BLOCKS
from core.instancediffusion.loading import expected_shapes

B = 16  # base width: fusers 16/32/64, ScaleU 64/32/16 (SD1.5's layout at 1/20 of its widths)
FIXTURE_CONFIG = AdapterConfig(
    fuser_channels=(B, B, 2 * B, 2 * B, 4 * B, 4 * B, 4 * B, 4 * B, 4 * B, 4 * B, 2 * B, 2 * B, 2 * B, B, B, B),
    scaleu_channels=(4 * B,) * 7 + (2 * B,) * 3 + (B,) * 2,
    mid_dim=48,
    convnext_dims=(8, 16, 24, 32),
    convnext_depths=(1, 1, 2, 1),
)

# A few base-UNet keys with their SD1.5 shapes: present in the real file, must be ignored by the loader.
BASE_UNET_KEYS = {
    "input_blocks.0.0.weight": (320, 4, 3, 3),
    "input_blocks.0.0.bias": (320,),
    "time_embed.0.weight": (1280, 320),
    "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
    "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
    "middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
    "out.2.weight": (4, 320, 3, 3),
}


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    small = (13, 7, 5, 3)
    return tuple(1 if i == len(shape) - 1 else small[(len(shape) - 2 - i) % 4] for i in range(len(shape)))


def _extent(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    return sum((n - 1) * s for n, s in zip(shape, stride)) + 1


class Pool:
    """One random storage; ``view(shape, salt)`` gives a deterministic exact-shape view into it."""

    def __init__(self, seed: int, size: int = 200_000, std: float = 0.02) -> None:
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randn(size, generator=g) * std

    def view(self, shape: tuple[int, ...], salt: int) -> torch.Tensor:
        """A strided view into the pool (shares its storage: the hostile layout, see :func:`pool_views_state`)."""
        stride = _strides(shape)
        ext = _extent(shape, stride) if shape else 1
        room = self.data.numel() - ext
        assert room >= 0, f"pool too small for {shape}"
        offset = (salt * 7919) % (room + 1)
        return self.data.as_strided(shape, stride, offset)

    def tensor(self, shape: tuple[int, ...], salt: int) -> torch.Tensor:
        """Deterministic pseudo-random values of ``shape`` in a storage of their own."""
        return self.view(shape, salt).clone(memory_format=torch.contiguous_format)


def pool_views_state(pool: Pool, config: AdapterConfig | None = None) -> OrderedDict:
    """Every adapter key at its shape as a view into the one small pool: a tiny file that claims the whole model
    (with the official widths: 368.8 M values from a few hundred KB). The loader must refuse it unallocated."""
    return OrderedDict((k, pool.view(s, i)) for i, (k, s) in enumerate(expected_shapes(config).items()))


def adapter_state(pool: Pool, salt: int = 0, drop: int = 0, reshape: str | None = None,
                  config: AdapterConfig = FIXTURE_CONFIG) -> OrderedDict:
    """Official-named adapter tensors at ``config``'s widths, each in its own storage. ``drop``: omit the last n
    keys; ``reshape``: give that key a wrong shape."""
    shapes = expected_shapes(config)
    out = OrderedDict()
    for i, (k, shape) in enumerate(shapes.items()):
        if reshape == k:
            shape = tuple(shape[:-1]) + (shape[-1] + 1,) if shape else (2,)
        out[k] = pool.tensor(shape, salt * 100_003 + i)
    if drop:
        for k in list(out)[-drop:]:
            del out[k]
    return out


class Payload:
    """Would create ``path`` (a directory) when unpickled by an unrestricted unpickler."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (self.path,))


def _fake_omegaconf():
    """A class pickled as ``omegaconf.dictconfig.DictConfig`` (registered only while saving)."""
    mod = types.ModuleType("omegaconf.dictconfig")

    class DictConfig:
        def __init__(self, content: dict) -> None:
            self._content = content

    DictConfig.__module__ = "omegaconf.dictconfig"
    DictConfig.__qualname__ = "DictConfig"
    mod.DictConfig = DictConfig
    return mod, DictConfig


def write_training_snapshot(
    path: str,
    seed: int = 0,
    payload_path: str | None = None,
    ema_drop: int = 0,
    extra: dict | None = None,
    **adapter_kw,
) -> dict:
    """Write a fixture shaped like ``instancediffusion_sd15.pth``; returns {"ema": state, "model": state} (views).

    ema_drop: leave the last n adapter keys out of ``ema`` only (the official loader then falls back to ``model``);
    extra: additional entries for both state dicts."""
    pool = Pool(seed)
    ema = adapter_state(pool, salt=1, drop=ema_drop or adapter_kw.get("drop", 0), reshape=adapter_kw.get("reshape"))
    model = adapter_state(pool, salt=2, **adapter_kw)
    base = OrderedDict((k, pool.tensor(s, 500 + i)) for i, (k, s) in enumerate(BASE_UNET_KEYS.items()))
    base.update(extra or {})
    mod, DictConfig = _fake_omegaconf()
    names = ("omegaconf", "omegaconf.dictconfig")
    had = {n: sys.modules.get(n) for n in names}
    parent = types.ModuleType("omegaconf")
    parent.dictconfig = mod
    sys.modules.update({"omegaconf": parent, "omegaconf.dictconfig": mod})
    try:
        cfg_items: dict = {"model": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel"}, "lr": 5e-5}
        if payload_path is not None:
            cfg_items["hook"] = Payload(payload_path)
        first = list(ema.values())[:3]
        ckpt = {
            "model": OrderedDict(list(base.items()) + list(model.items())),
            "ema": OrderedDict(list(base.items()) + list(ema.items())),
            "opt": {
                "state": {
                    i: {"step": torch.tensor(100.0), "exp_avg": t, "exp_avg_sq": t * t} for i, t in enumerate(first)
                },
                "param_groups": [
                    {"lr": 5e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0, 1, 2]}
                ],
            },
            "scheduler": {"last_epoch": 100, "_step_count": 101},
            "iters": 100,
            "config_dict": DictConfig(cfg_items),
            "text_encoder": {"transformer.text_model.final_layer_norm.weight": pool.tensor((768,), 900)},
            "autoencoder": {"decoder.conv_out.weight": pool.tensor((3, 128, 3, 3), 901)},
            "diffusion": {"alphas_cumprod": torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0)},
        }
        torch.save(ckpt, path)
    finally:
        for n, m in had.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    return {"ema": ema, "model": model}


def write_logtd_split(folder: str, seed: int = 0) -> tuple[str, str, str, OrderedDict]:
    """logtd's position_net.ckpt / fusers.ckpt / scaleu.ckpt; returns the paths and the official-named state."""
    pool = Pool(seed)
    state = adapter_state(pool, salt=3)
    pn = OrderedDict((k[len("position_net.") :], v) for k, v in state.items() if k.startswith("position_net."))
    fusers: dict = {"input_blocks": {}, "middle_block": {}, "output_blocks": {}}
    for block in FUSER_BLOCKS:
        group, _, idx = block.partition(".")
        prefix = f"{block}.1.transformer_blocks.0.fuser."
        sd = OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))
        c = sd["linear.bias"].shape[0]
        fusers[group][idx or "1"] = {
            "params": {"query_dim": c, "context_dim": 768, "n_heads": 8, "d_head": c // 8},
            "state": sd,
        }
    scaleu = {str(i): {"scaleu_b": state[f"scaleu_b_{i}"], "scaleu_s": state[f"scaleu_s_{i}"]} for i in range(12)}
    paths = tuple(os.path.join(folder, n) for n in ("position_net.ckpt", "fusers.ckpt", "scaleu.ckpt"))
    for p, obj in zip(paths, (pn, fusers, scaleu)):
        torch.save(obj, p)
    return (*paths, state)


def numel(state: dict) -> int:
    return sum(math.prod(v.shape) for v in state.values())
