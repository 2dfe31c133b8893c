"""The module DDP trains: a trainable IFAdapter driving a frozen SDXL UNet through the pack's own attn2 patch.

``forward(batch)`` returns the diffusion loss of one micro-batch (spec §5, Eq. 9):

1. appearance tokens of every instance (:func:`core.ifadapter.batched.encode_instance_batch`, local dropout
   already applied: zero descriptions, boxes kept);
2. the 16 attn2 layers patched exactly as the Apply IFAdapter node patches them: a ``ChainedAttn2`` per layer
   holding an ``IFAdapterLayer`` whose runtime is a :class:`~core.ifadapter.batched.BatchedRuntime`;
3. the frozen UNet (ComfyUI's module) on ``x_t = (x_0 + sigma * eps) / sqrt(sigma² + 1)`` at the sampled
   timestep, with SDXL's micro-conditioning vector;
4. MSE against the model's target: ``eps`` for eps-prediction checkpoints, ``v`` for v-prediction ones.

Only the adapter is a registered sub-module, so DDP synchronises only its gradients; the UNet is held by
reference and never receives gradients.
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.ifadapter import IFAdapter
from core.ifadapter.batched import BatchedRuntime, encode_instance_batch


def _on_copy(fn, x: torch.Tensor, *args, **kwargs):
    return fn(x.clone(), *args, **kwargs)


def enable_gradient_checkpointing(diffusion_model: nn.Module) -> int:
    """Recompute each ResBlock and transformer block of a ComfyUI UNet in the backward pass; returns how many.

    The unit is one ``BasicTransformerBlock`` (not the 10-block ``SpatialTransformer``), so the recomputation peak
    is one block's activations.

    ComfyUI's own ``use_checkpoint`` only tracks the blocks' own parameters, so gradients towards the adapter
    (reached through ``transformer_options``) would be lost; PyTorch's non-reentrant checkpoint tracks everything.
    """
    from comfy.ldm.modules.attention import BasicTransformerBlock
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    n = 0
    for mod in diffusion_model.modules():
        if isinstance(mod, (ResBlock, BasicTransformerBlock)) and not getattr(mod, "_ifa_checkpointed", False):
            inner = mod.forward

            copy_input = isinstance(mod, BasicTransformerBlock)

            @functools.wraps(inner)
            def wrapped(*args, _inner=inner, _copy=copy_input, **kwargs):
                if not torch.is_grad_enabled():
                    return _inner(*args, **kwargs)
                # The UNet rewrites transformer_options["block"] as it goes; the recomputation in the backward pass
                # must see the values of this call, so it gets a snapshot of every options dict. A transformer
                # block adds its residuals into its input in place, so it works on a copy of the input that the
                # checkpoint keeps.
                args = tuple(dict(a) if isinstance(a, dict) else a for a in args)
                kwargs = {k: dict(v) if isinstance(v, dict) else v for k, v in kwargs.items()}
                fn = functools.partial(_on_copy, _inner) if _copy else _inner
                return checkpoint(fn, *args, use_reentrant=False, **kwargs)

            mod.forward = wrapped
            mod._ifa_checkpointed = True
            n += 1
    return n


def _clone_input(module: nn.Module, args: tuple):
    x = args[0]
    if torch.is_grad_enabled() and x.requires_grad:
        return (x.clone(),) + tuple(args[1:])
    return None


def protect_inplace_residuals(diffusion_model: nn.Module) -> int:
    """Make ComfyUI's transformer blocks safe for backward passes; returns how many blocks were hooked.

    ComfyUI builds before 2025 add the attention residuals in place (``x += n``) after ``norm1(x)`` / ``norm2(x)``
    saved ``x`` for their backward, which autograd rejects as soon as ``x`` carries a gradient (after the first
    patched layer). Each norm of a transformer block therefore normalises a copy of its input when a gradient is
    being recorded; the forward values are unchanged and newer ComfyUI builds (``x = x + n``) just copy a little.
    """
    from comfy.ldm.modules.attention import BasicTransformerBlock

    n = 0
    for mod in diffusion_model.modules():
        if isinstance(mod, BasicTransformerBlock) and not getattr(mod, "_ifa_protected", False):
            for name in ("norm1", "norm2", "norm3"):
                norm = getattr(mod, name, None)
                if isinstance(norm, nn.Module):
                    norm.register_forward_pre_hook(_clone_input)
            mod._ifa_protected = True
            n += 1
    return n


class AdapterTrainingModel(nn.Module):
    """Trainable ``adapter`` + frozen ComfyUI UNet (``model_patcher.model``); ``forward(batch) -> loss``.

    ``batch`` (all on the training device):
        latent ``[B, 4, h, w]`` x_0 in the UNet's latent space; noise ``[B, 4, h, w]``; timestep ``[B]`` long;
        context ``[B, 77, 2048]``; y ``[B, 2816]`` (micro-conditioning, global dropout applied);
        desc_hidden ``[B, S, 3, L, 2048]``, desc_eot ``[B, S, 2048]``, desc_mask ``[B, S, L]``, boxes
        ``[B, S, 4]``, valid ``[B, S]``, keep_text ``[B]``.
    """

    def __init__(self, adapter: IFAdapter, model_patcher, ifa_nodes: types.ModuleType, patches: types.ModuleType,
                 steps: types.ModuleType, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.adapter = adapter
        self._frozen = (model_patcher,)  # a tuple: not registered, so DDP and state_dict ignore the UNet
        self._ifa_nodes, self._patches = ifa_nodes, patches
        # the whole schedule: a direct UNet call (no sampler) is always inside the window
        self._window = steps.StepWindow(0.0, 1.0, "ratio", float("inf"), 0.0)
        self.autocast_dtype = autocast_dtype
        import comfy.model_base

        mtype = model_patcher.model.model_type
        if mtype == comfy.model_base.ModelType.EPS:
            self.prediction = "eps"
        elif mtype == comfy.model_base.ModelType.V_PREDICTION:
            self.prediction = "v"
        else:
            raise ValueError(f"the base model is a {mtype.name} model; the trainer supports eps- and v-prediction "
                             "SDXL checkpoints (the adapter is trained with the DDPM objective)")
        self.sigmas = model_patcher.model.model_sampling.sigmas.detach().float().cpu()
        protect_inplace_residuals(model_patcher.model.diffusion_model)

    @property
    def unet(self) -> nn.Module:
        return self._frozen[0].model.diffusion_model

    def transformer_options(self, runtime, aspect: float) -> dict:
        """``transformer_options`` with the 16 IFAdapter layers patched as Apply IFAdapter patches them."""
        holder = types.SimpleNamespace(model_options={"transformer_options": {}})
        for key in self._ifa_nodes.IFADAPTER_KEYS:
            layer = self._ifa_nodes.IFAdapterLayer(runtime, key, self._window, aspect)
            self._patches.add_attn2_contribution(holder, key, layer)
        opts = holder.model_options["transformer_options"]
        opts["cond_or_uncond"] = [0]  # every row conditional: dropout lives in the tokens and embeddings
        return opts

    def forward(self, batch: dict) -> torch.Tensor:
        x0, noise, t = batch["latent"], batch["noise"], batch["timestep"]
        sigma = self.sigmas.to(x0.device)[t].view(-1, 1, 1, 1)
        x_in = (x0 + sigma * noise) / torch.sqrt(sigma**2 + 1)
        target = noise if self.prediction == "eps" else (noise - sigma * x0) / torch.sqrt(sigma**2 + 1)
        device_type = x0.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            tokens = encode_instance_batch(self.adapter, batch["desc_hidden"], batch["desc_mask"], batch["desc_eot"],
                                           batch["boxes"], batch["valid"], batch["keep_text"])
            runtime = BatchedRuntime(self.adapter, tokens, batch["boxes"], batch["valid"])
            h, w = x0.shape[-2:]
            opts = self.transformer_options(runtime, w / h)
            unet_dtype = next(self.unet.parameters()).dtype
            out = self.unet(x_in.to(unet_dtype), t.float(), context=batch["context"].to(unet_dtype),
                            y=batch["y"].to(unet_dtype), transformer_options=opts)
        return F.mse_loss(out.float(), target.float())
