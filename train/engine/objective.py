"""The module DDP trains (engine): a recipe's trainable modules driving a frozen ComfyUI UNet.

``forward(batch)`` returns the per-sample diffusion loss ``[B]`` of one micro-batch:

1. ``x_t = (x_0 + sigma * eps) / sqrt(sigma² + 1)`` at each sample's timestep (ComfyUI's discrete schedule);
2. the recipe's UNet inputs for the batch (``Recipe.unet_inputs``: context, micro-conditioning, the
   ``transformer_options`` carrying the recipe's patches), under autocast;
3. the frozen UNet (ComfyUI's module);
4. the recipe's loss (default: mean squared error per sample) against the model's target: ``eps`` for
   eps-prediction checkpoints, ``v`` for v-prediction ones.

Only the recipe's trainable module is a registered sub-module, so DDP synchronises only its gradients; the UNet is
held by reference and never receives gradients. Also here: gradient checkpointing of a ComfyUI UNet's blocks and the
guard that makes older ComfyUI builds' in-place residuals safe for a backward pass.
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


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


def prediction_target(model_patcher) -> str:
    """``"eps"`` or ``"v"``: what the base model predicts (ComfyUI's model type); other types are refused."""
    import comfy.model_base

    mtype = model_patcher.model.model_type
    if mtype == comfy.model_base.ModelType.EPS:
        return "eps"
    if mtype == comfy.model_base.ModelType.V_PREDICTION:
        return "v"
    raise ValueError(f"the base model is a {mtype.name} model; the trainer supports eps- and v-prediction "
                     "checkpoints (trained with the DDPM objective)")


def noisy_input_and_target(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, prediction: str):
    """``(x_t, target)`` of the DDPM objective at per-row ``sigma`` [B]: x_t = (x_0 + σ·ε) / √(σ² + 1)
    (= √ᾱ·x_0 + √(1 − ᾱ)·ε, what the UNet takes), target ε or v = (ε − σ·x_0) / √(σ² + 1)."""
    sigma = sigma.view(-1, *([1] * (x0.dim() - 1)))
    scale = torch.sqrt(sigma**2 + 1)
    target = noise if prediction == "eps" else (noise - sigma * x0) / scale
    return (x0 + sigma * noise) / scale, target


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


class DiffusionObjective(nn.Module):
    """Trainable ``trainable`` (the recipe's module) + frozen ComfyUI UNet; ``forward(batch) -> loss [B]``.

    ``batch`` (on the training device): ``latent`` ``[B, C, h, w]`` x_0 in the UNet's latent space, ``noise`` of the
    same shape, ``timestep`` ``[B]`` long, plus whatever the recipe's ``collate`` put there.
    """

    def __init__(self, recipe, trainable: nn.Module, model_patcher, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.trainable = trainable
        self._frozen = (model_patcher, recipe)  # a tuple: not registered, so DDP and state_dict ignore them
        self.autocast_dtype = autocast_dtype
        self.prediction = prediction_target(model_patcher)
        self.sigmas = model_patcher.model.model_sampling.sigmas.detach().float().cpu()
        protect_inplace_residuals(model_patcher.model.diffusion_model)

    @property
    def unet(self) -> nn.Module:
        return self._frozen[0].model.diffusion_model

    def forward(self, batch: dict) -> torch.Tensor:
        return self._frozen[1].loss(*self.predict(batch), batch)

    def predict(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(UNet output, target)`` of one micro-batch, float32: what :meth:`forward`'s loss compares (tests check
        the output against the recipe's Apply node on the same inputs)."""
        recipe = self._frozen[1]
        x0, noise, t = batch["latent"], batch["noise"], batch["timestep"]
        x_in, target = noisy_input_and_target(x0, noise, self.sigmas.to(x0.device)[t], self.prediction)
        with torch.autocast(x0.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            kwargs = recipe.unet_inputs(self.trainable, batch)
            unet_dtype = next(self.unet.parameters()).dtype
            kwargs = {k: v.to(unet_dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                      for k, v in kwargs.items()}
            out = self.unet(x_in.to(unet_dtype), t.float(), **kwargs)
        return out.float(), target.float()
