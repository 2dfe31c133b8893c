"""The module DDP trains for InstanceDiffusion: the adapter (position net, 16 fusers, ScaleU) driving a frozen SD1.5
UNet through the very patch objects Apply InstanceDiffusion installs.

``forward(batch)`` returns the official loss of one micro-batch (``trainer.py``: MSE between the UNet's output and
the noise, t uniform in 0..999, x_t = sqrt(ᾱ)·x_0 + sqrt(1 − ᾱ)·ε):

1. grounding tokens of every sample from the position net, with that sample's modality drop flags
   (:func:`core.instancediffusion.training_inputs.draw_modality_drop`; the guidance drop arrives as an all-null
   input);
2. a clone of the base ModelPatcher with Apply InstanceDiffusion's patch objects
   (``nodes/instancediffusion/grounding.py``: :class:`FuserPatch` as ``middle_patch``, :class:`ScaleUPatch` as
   ``output_block_patch``) over a grounding state whose token table is this step's tokens, one row per sample;
3. the frozen UNet (ComfyUI's module) called directly, as the IFAdapter trainer does.

The adapter module is in train mode, so its ``encode`` / ``fuse`` / ``scale_u`` record gradients; everything else is
the sampling code path. Only the adapter is a registered sub-module (DDP synchronises only its gradients).
"""
from __future__ import annotations

import os
import types

import torch
import torch.nn.functional as F
from torch import nn

from core.instancediffusion import AdapterConfig, InstanceDiffusion, build_model
from core.instancediffusion.loading import load_any

from .engine.objective import noisy_input_and_target, prediction_target, protect_inplace_residuals

GROUNDING_KEYS = ("boxes", "masks", "positive_embeddings", "points", "scribbles", "polygons", "segs")


def training_state_class(grounding: types.ModuleType) -> type:
    """A subclass of Apply InstanceDiffusion's ``GroundingState`` whose token table is the current step's tokens
    (row b for batch row b, every row conditional) instead of tokens cached per run."""

    class TrainingGroundingState(grounding.GroundingState):
        objs: torch.Tensor | None = None

        def tokens(self, device, dtype, instances=False):
            return self.objs

        def row_index(self, extra_options, batch):
            return torch.arange(batch)

    return TrainingGroundingState


def patch_for_training(adapter: InstanceDiffusion, model_patcher, adapter_nodes: types.ModuleType,
                       grounding: types.ModuleType, steps: types.ModuleType):
    """``(state, patched)``: a clone of ``model_patcher`` patched as Apply InstanceDiffusion patches its clone
    (:class:`FuserPatch` as ``middle_patch``, :class:`ScaleUPatch` as ``output_block_patch``) over a training grounding
    state for ``adapter``, which stays trainable (the loader's handle sets eval mode and freezes it; its train mode and
    ``requires_grad`` flags are restored). The one place the recipe and :class:`InstanceDiffusionTrainingModel` build
    it."""
    mode, grads = adapter.training, [p.requires_grad for p in adapter.parameters()]
    handle = adapter_nodes.Adapter(adapter, "training", "training")
    adapter.train(mode)
    for p, g in zip(adapter.parameters(), grads):
        p.requires_grad_(g)
    adapter_nodes.check_model(model_patcher, handle)
    window = steps.StepWindow(0.0, 1.0, "int", float("inf"), 0.0)  # a direct UNet call: always inside
    state = training_state_class(grounding)(handle, {}, [], 1.0, 1.0, window, True, [])
    patched = model_patcher.clone()
    patched.set_model_patch(grounding.FuserPatch(state), "middle_patch")
    patched.set_model_output_block_patch(grounding.ScaleUPatch(state))
    return state, patched


def adapter_config_for(model_patcher, adapter_nodes: types.ModuleType, mid_dim: int = 3072,
                       convnext_dims=(96, 192, 384, 768), convnext_depths=(3, 3, 9, 3)) -> AdapterConfig:
    """The adapter widths a UNet needs: fusers as wide as its 16 transformer blocks, ScaleU as its decoder inputs
    (the released SD1.5 adapter for an SD1.5 UNet). Raises the Apply node's message for a non-SD1.5 layout."""
    widths, depths, ctx, scaleu = adapter_nodes.transformer_layout(model_patcher)
    if len(widths) != 16 or any(d != 1 for d in depths) or ctx != 768 or len(scaleu) != 12:
        raise ValueError(f"InstanceDiffusion trains on SD1.5 UNets (16 transformer blocks of depth 1, a 768-wide text "
                         f"context, 12 decoder blocks); this base model has {len(widths)} blocks of depths {depths}, "
                         f"context {ctx}, {len(scaleu)} decoder blocks")
    return AdapterConfig(tuple(widths), tuple(scaleu), int(mid_dim), tuple(convnext_dims), tuple(convnext_depths))


def official_init(config: AdapterConfig, seed: int, convnext_weights: str = "") -> InstanceDiffusion:
    """A from-scratch adapter as the official trainer starts it: PyTorch's default initialisation of every Linear,
    LayerNorm and conv (``torch.manual_seed(seed)``), zero gates (``alpha_attn``, ``alpha_dense``: each fuser is the
    identity), zero ScaleU (``tanh(0) + 1 = 1``), zero null embeddings, ``pos_embedding`` ~ N(0, 0.02²), ConvNeXt
    layer scales 1e-6; then, if ``convnext_weights`` names ConvNeXt-T ImageNet-1k weights (the official
    ``convnext_tiny_1k_224_ema.pth``, which the official code downloads), those for the mask encoder (head and final
    norm ignored, as the official ``strict=False`` load)."""
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        module = InstanceDiffusion(config=config)
        with torch.no_grad():
            module.position_net.pos_embedding.normal_(0.0, 0.02)
    if convnext_weights:
        load_convnext_imagenet(module, convnext_weights)
    return module


def load_convnext_imagenet(module: InstanceDiffusion, path: str) -> None:
    """Copy ConvNeXt ImageNet weights (a torch file ``{"model": state}`` or a bare state dict, .safetensors too)
    into the mask encoder; every backbone key must be present with its shape (``head.*`` and ``norm.*`` are the
    classifier's and are skipped)."""
    from core.checkpoints import CheckpointError

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
    backbone = module.position_net.convnext_tiny_backbone
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise CheckpointError(f"{os.path.basename(path)}: not ConvNeXt-T weights for this mask encoder (missing "
                              f"{missing[:4]}, wrong shapes {bad[:4]})")
    backbone.load_state_dict({k: state[k].float() for k in own}, strict=True)


def load_for_finetuning(path: str) -> tuple[InstanceDiffusion, str]:
    """An adapter from any file Load InstanceDiffusion reads (the official ``instancediffusion_sd15.pth``: its EMA
    weights; a converted or exported .safetensors; logtd's set), in fp32, ready to train. Returns (module, origin)."""
    state, origin = load_any(path, torch.float32)
    module = build_model(state)
    return module, origin


class InstanceDiffusionTrainingModel(nn.Module):
    """Trainable ``adapter`` + frozen ComfyUI SD1.5 UNet; ``forward(batch) -> loss``.

    ``batch`` (on the training device): latent ``[B, 4, h, w]`` x_0 in the UNet's latent space; noise; timestep
    ``[B]`` long; context ``[B, 77·k, 768]`` (the caption, or the empty caption); the grounding tensors of
    :data:`GROUNDING_KEYS` (``[B, 30, ...]``, :class:`~core.instancediffusion.training_inputs.TrainingSample` rows;
    all zero for a guidance-dropped sample); drop ``[B, 4]`` bool modality flags (boxes, points, scribbles, masks).
    """

    def __init__(self, adapter: InstanceDiffusion, model_patcher, adapter_nodes: types.ModuleType,
                 grounding: types.ModuleType, steps: types.ModuleType, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.adapter = adapter.float().train().requires_grad_(True)
        self.state, patched = patch_for_training(adapter, model_patcher, adapter_nodes, grounding, steps)
        self._frozen = (model_patcher, patched)  # a tuple: not registered, so DDP and state_dict ignore the UNet
        self.autocast_dtype = autocast_dtype

        self.prediction = prediction_target(model_patcher)
        self.sigmas = model_patcher.model.model_sampling.sigmas.detach().float().cpu()

        model_patcher.model.diffusion_model.requires_grad_(False)  # SD1.5 frozen
        protect_inplace_residuals(model_patcher.model.diffusion_model)

    @property
    def unet(self) -> nn.Module:
        return self._frozen[0].model.diffusion_model

    def transformer_options(self) -> dict:
        """The patched clone's transformer_options (Apply InstanceDiffusion's patches), every row conditional."""
        opts = dict(self._frozen[1].model_options["transformer_options"])
        opts["cond_or_uncond"] = [0]
        return opts

    def epsilon(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor, grounding: dict,
                drop: torch.Tensor) -> torch.Tensor:
        """The UNet's output for x_in (already scaled as x_t) at integer timesteps t with this grounding."""
        self.state.objs = self.adapter.encode(grounding, drop)
        try:
            unet_dtype = next(self.unet.parameters()).dtype
            return self.unet(x_in.to(unet_dtype), t.float(), context=context.to(unet_dtype),
                             transformer_options=self.transformer_options())
        finally:
            self.state.objs = None  # the graph is not kept alive past the call

    def forward(self, batch: dict) -> torch.Tensor:
        x0, noise, t = batch["latent"], batch["noise"], batch["timestep"]
        x_in, target = noisy_input_and_target(x0, noise, self.sigmas.to(x0.device)[t], self.prediction)
        grounding = {k: batch[k] for k in GROUNDING_KEYS}
        with torch.autocast(x0.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            out = self.epsilon(x_in, t, batch["context"], grounding, batch["drop"])
        return F.mse_loss(out.float(), target.float())
