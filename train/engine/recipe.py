"""The recipe interface: everything a training recipe says. Everything else is the engine's.

A recipe trains some modules on top of a frozen ComfyUI UNet (IFAdapter on SDXL, InstanceDiffusion on SD1.5, ...).
It is one subclass of :class:`Recipe` in ``train/recipes/<name>.py``, listed in ``train/recipes/__init__.py``, and
run with ``python -m train <name> --config my.toml``. The engine (``train/engine/``) does the rest, identically for
every recipe: distributed set-up, the dataset folder and its aspect buckets, the cache of latents and recipe
features, the batch plan and every random draw (a function of seed, step and position, so any number of processes
trains the same model and a resumed run continues bit for bit), AdamW / warm-up / accumulation / clipping / EMA /
autocast, checkpoints and exact resume, the held-out eval loss and the ``[eval]`` metrics, progress (metrics.jsonl,
TensorBoard), preview images through ComfyUI's sampler, and the final export call.

What a recipe says, in the order the engine calls it
-----------------------------------------------------

Class attributes:

- ``name``: the command-line name and the name of its config table ``[<name>]``.
- ``title``: a human name for logs and the progress bar.
- ``Options``: a dataclass of the recipe's own keys (the ``[<name>]`` table); every field has a default.
- ``defaults``: engine keys whose default differs for this recipe, ``{"train": {"lr": 5e-5}, "data": {...}}``.
- ``legacy_keys``: ``{("model", "old_key"): "new_key"}``: keys an older config file may still hold in an engine
  table, moved into ``[<name>]`` when the file is read.
- ``max_instances_limit``: the largest ``[data] max_instances`` the method supports.
- ``cache_fields``: ``{field: kind}`` of what :meth:`encode_sample` returns, kind ``"feature"`` (stored in
  ``[cache] dtype``, read back as float32), ``"exact"`` (stored and read as given, e.g. float32 boxes) or ``"mask"``
  (stored as uint8, read back as bool). The engine adds ``latent`` (VAE latent in the UNet's space) itself.
- ``cache_version``: bump it when :meth:`encode_sample` changes, so old caches are not reused.

Methods (``self.cfg`` is the whole :class:`~train.engine.config.Config`, ``self.opts`` the ``[<name>]`` table,
``self.patcher`` the frozen base model's ComfyUI ``ModelPatcher``, ``self.base_path`` its file; all set before
:meth:`setup`):

1. :meth:`validate` (config time, no model loaded): raise :class:`~train.engine.config.ConfigError` naming the key.
2. :meth:`setup`: check the base model (raise ``ValueError`` with a clear message for a family the recipe cannot
   train) and import what the recipe needs (e.g. the pack's node modules through ``comfy_bridge.pack_module``).
3. :meth:`text_encoders` ``(clip)``: the object :meth:`encode_sample` and :meth:`prepare_preview` receive; the
   engine drops it (and ComfyUI unloads CLIP) once the cache and previews are ready.
4. :meth:`cache_settings`: settings that change what :meth:`encode_sample` writes (part of the cache key).
5. :meth:`encode_sample` ``(sample, encoders)``: the cached tensors of one :class:`~train.engine.data.PreparedSample`
   (all CPU), keyed as ``cache_fields``.
6. :meth:`build_trainable` ``(seed)``: the ``nn.Module`` that trains (float32, CPU; its parameters with
   ``requires_grad`` are optimised, DDP synchronises them). Fine-tuning from ``[model] init`` happens here.
7. :meth:`draw` ``(g, sample, train)``: per-sample random choices beyond the noise and timestep (condition dropout,
   instance subsets), drawn only from the generator ``g``; ``train`` is False for the eval loss (no dropout; the
   engine also puts ``trainable`` in eval mode then).
8. :meth:`collate` ``(samples, draws)``: one micro-batch (CPU tensors) from cached samples (``reader.get`` dicts:
   the cache fields, ``latent`` and the manifest ``entry``) and their draws. The engine adds ``latent``, ``noise``
   and ``timestep`` itself after this call.
9. :meth:`unet_inputs` ``(trainable, batch)``: the keyword arguments of the frozen UNet's forward for this batch
   (``context``, ``y``, ``transformer_options`` with the recipe's patches); runs under autocast, gradients flow into
   ``trainable``. The engine noises the latent, calls the UNet and computes the target (ε or v).
10. :meth:`loss` ``(pred, target, batch)``: the per-sample loss ``[B]`` (default: mean squared error per sample).
11. :meth:`checkpoint_info` ``(trainable)``: plain data saved with every checkpoint that :meth:`export` needs
    (e.g. the module's configuration).
12. :meth:`export_metadata`: recipe facts for the exported file's metadata (the engine adds base model, its SHA-256,
    steps, data summary, batch size, lr, precision).
13. :meth:`export` ``(weights, info, path, metadata)``: write the result for the pack's loader; must work without a
    base model (``python -m train.export`` calls it on a checkpoint).
14. Previews (only with ``[samples] every``): :meth:`prepare_preview` ``(layout, encoders)`` once per preview
    layout, then :meth:`preview_model` ``(trainable, item, width, height)`` returning ``(model, positive,
    negative)`` for ComfyUI's sampler: the model patched exactly as the recipe's Apply node patches it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn


@dataclasses.dataclass
class NoOptions:
    """A recipe without keys of its own."""


class Recipe:
    """Base class of a training recipe (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    legacy_keys: ClassVar[dict[tuple[str, str], str]] = {}
    max_instances_limit: ClassVar[int] = 10
    cache_fields: ClassVar[dict[str, str]] = {}
    cache_version: ClassVar[int] = 1

    def __init__(self, cfg=None):
        self.cfg = cfg
        self.opts = getattr(cfg, "options", None)
        self.patcher = None
        self.base_path = ""

    def bind(self, patcher, base_path: str) -> None:
        """Engine: hand over the frozen base model (called before :meth:`setup`)."""
        self.patcher, self.base_path = patcher, base_path

    # ----------------------------------------------------------------------------------------- configuration
    @classmethod
    def validate(cls, cfg) -> None:
        """Check the recipe's keys (and engine keys it constrains); raise ``ConfigError`` naming the key."""

    # ----------------------------------------------------------------------------------------- base model, cache
    def setup(self) -> None:
        """Check the base model and import what the recipe needs."""

    def text_encoders(self, clip) -> Any:
        raise NotImplementedError

    def cache_settings(self) -> dict:
        return {}

    def encode_sample(self, sample, encoders) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- training step
    def build_trainable(self, seed: int) -> nn.Module:
        raise NotImplementedError

    def draw(self, g: torch.Generator, sample: dict, train: bool) -> Any:
        return None

    def collate(self, samples: list[dict], draws: list[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def unet_inputs(self, trainable: nn.Module, batch: dict) -> dict:
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, target: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per-sample loss ``[B]``: the mean squared error over each sample's latent (float32)."""
        return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)

    # ----------------------------------------------------------------------------------------- export
    def checkpoint_info(self, trainable: nn.Module) -> dict:
        return {}

    def export_metadata(self, trainable: nn.Module) -> dict:
        return {}

    def export(self, weights: dict[str, torch.Tensor], info: dict, path: str, metadata: dict) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- previews
    def prepare_preview(self, layout, encoders) -> Any:
        raise NotImplementedError

    def preview_model(self, trainable: nn.Module, item: Any, width: int, height: int):
        raise NotImplementedError
