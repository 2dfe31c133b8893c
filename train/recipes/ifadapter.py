"""Recipe ``ifadapter``: train IFAdapter on a frozen SDXL, SD1.5 or SD2.x checkpoint (``python -m train ifadapter
--config my.toml``).

What differs from the engine's defaults (spec §5; docs/training.md):

- **Family** (``[ifadapter] family``, default ``"auto"``: detected from the base model, see
  :mod:`core.ifadapter.families`): SDXL (the released weights' layout: both text encoders, 16 layers, SDXL's
  micro-conditioning), SD1.5 (CLIP-L only, the middle block and output blocks 3-5, no class conditioning) or SD2.x
  (OpenCLIP-H, the same layers as SD1.5).
- **Trains** the IFAdapter (resampler, position net, the family's attn2 adapter modules), from scratch or from an
  IFAdapter file of the same family (``[model] init``); the UNet is frozen.
- **Cache**: the caption through the base model's CLIP (prompt embedding ``[77, C]``; SDXL also the pooled vector
  ``[1280]``) and every description as the Encode Appearance Tokens node encodes it for the family (hidden states
  -2, -4, -6, EoT feature, word mask; trimmed after the last EoT: later positions never reach the resampler, so
  padding them back with zeros is exact).
- **Draws**: descriptions dropped with ``drop_local`` per sample (boxes kept: the unconditional branch at inference),
  the caption with ``drop_global`` independently (zero prompt embedding and pooled vector: the official zero
  uncond, for every family), a random subset of ``[data] max_instances`` instances when an image has more.
- **Model inputs**: appearance tokens of every instance (:func:`core.ifadapter.batched.encode_instance_batch`), the
  family's attn2 layers patched exactly as the Apply IFAdapter node patches them (a ``ChainedAttn2`` per layer
  holding an ``IFAdapterLayer`` with a differentiable :class:`~core.ifadapter.batched.BatchedRuntime`); SDXL's
  micro-conditioning vector (SDXL only).
- **Export**: ``<name>.safetensors`` in the official key layout for the IFAdapter Loader, with the configuration
  (family, text encoders, layer list, widths), the resampler mask mode and ``ifadapter_train_*`` provenance.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import types
from dataclasses import dataclass, field

import torch

from ..engine import comfy_bridge
from ..engine.config import ConfigError
from ..engine.recipe import Recipe

log = logging.getLogger("train")
META_PREFIX = "ifadapter_train_"
RESAMPLER_KEYS = {"dim", "depth", "heads", "dim_head", "ff_mult"}
FAMILY_CHOICES = ("auto", "sdxl", "sd15", "sd2")


@dataclass
class IFAdapterOptions:
    family: str = "auto"  # "auto" (from the base model), "sdxl", "sd15" or "sd2": which IFAdapter layout to train
    zero_descriptions: bool = False  # ablation: every description zeroed (boxes kept), in training and eval
    resampler_mask: str = "auto"  # "auto" (from the init file, else all-words), "official-quirk" or "all-words"
    resampler: dict = field(default_factory=dict)  # Resampler sizes for from-scratch runs (default: official)
    drop_local: float = 0.15  # probability of dropping a sample's descriptions (boxes kept)
    drop_global: float = 0.30  # probability of dropping a sample's caption (zero prompt and pooled embeddings)


@dataclass
class Draw:
    keep_text: bool
    keep_prompt: bool
    instances: torch.Tensor  # kept instance indices


class TextEncoder:
    """The caption and description encoders, through ComfyUI's CLIP and the pack's Encode Appearance Tokens code."""

    def __init__(self, clip, encode_descriptions, family: str = "sdxl"):
        self.clip = clip
        self._encode_descriptions = encode_descriptions
        self.family = family

    def prompt(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``([77, C], pooled)``: the prompt embedding of the first 75 tokens (SDXL ``[77, 2048]``, SD1.5
        ``[77, 768]``) and the pooled vector (SDXL ``[1280]``; empty when the CLIP gives none)."""
        tok = self.clip.tokenize(text)
        tok = {k: v[:1] for k, v in tok.items()}
        cond, pooled = self.clip.encode_from_tokens(tok, return_pooled=True)
        pooled = torch.zeros(0) if pooled is None else pooled[0].float().cpu()
        return cond[0].float().cpu(), pooled

    def descriptions(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``hidden [n, 3, 77, C], eot [n, C], word_mask [n, 77]`` as the Encode Appearance Tokens node encodes
        them for the family's text encoders."""
        return self._encode_descriptions(self.clip, texts, family=self.family)


def trim_words(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep positions up to the last word + EoT of any instance: later positions never reach the resampler."""
    words = mask.any(dim=0).nonzero()
    length = int(words.max()) + 2 if words.numel() else 2
    return hidden[:, :, :length].contiguous(), mask[:, :length].contiguous()


def adapter_shape(model_patcher, family: str = "sdxl") -> dict:
    """``IFAdapter(...)`` kwargs for this UNet: the family, and the width and heads of its layers (SDXL 1280 / 20,
    SD1.5 1280 / 8, SD2.x 1280 / 20)."""
    from core.ifadapter.families import FAMILIES, layer_widths

    cfg = model_patcher.model.model_config.unet_config
    fam = FAMILIES[family]
    widths = set(layer_widths(cfg, fam.layers).values())
    if len(widths) != 1:
        raise ValueError(f"this UNet's {fam.label} IFAdapter layers differ in width / heads: {sorted(widths)}")
    width, heads = widths.pop()
    return {"hidden_size": int(width), "heads": int(heads), "context_dim": fam.context_dim, "family": fam.name}


def build_adapter(config: dict, official_mask_quirk: bool, state_dict: dict | None = None):
    """An ``IFAdapter`` of ``config`` (``IFAdapter(**config)`` kwargs) on the meta device, optionally filled from a
    state dict."""
    from core.ifadapter import IFAdapter

    with torch.device("meta"):
        model = IFAdapter(official_mask_quirk=official_mask_quirk, **config)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def export_adapter(state_dict: dict, config: dict, official_mask_quirk: bool, path: str, info: dict) -> int:
    """Write ``state_dict`` (an IFAdapter's) to ``path`` atomically with ``info`` as ``ifadapter_train_*`` metadata."""
    from core.ifadapter import save_ifadapter

    model = build_adapter(config, official_mask_quirk, {k: v.detach().float().cpu() for k, v in state_dict.items()})
    meta = {META_PREFIX + k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in info.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.safetensors"
    n = save_ifadapter(model, tmp, metadata=meta)
    os.replace(tmp, path)
    return n


class IFAdapterRecipe(Recipe):
    name = "ifadapter"
    title = "IFAdapter"
    Options = IFAdapterOptions
    legacy_keys = {("model", "resampler_mask"): "resampler_mask", ("model", "resampler"): "resampler",
                   ("train", "drop_local"): "drop_local", ("train", "drop_global"): "drop_global"}
    max_instances_limit = 10
    cache_fields = {"prompt": "feature", "pooled": "feature", "desc_hidden": "feature", "desc_eot": "feature",
                    "desc_mask": "mask", "boxes": "exact"}
    family = None  # the core.ifadapter.families.Family trained, set by setup(); None (no model yet) acts as SDXL

    @property
    def micro_conditioning(self) -> bool:
        """Whether the UNet takes SDXL's micro-conditioning vector ``y`` (SD1.x / SD2.x take none)."""
        return self.family is None or self.family.adm_in_channels is not None

    @classmethod
    def validate(cls, cfg) -> None:
        o = cfg.options
        if o.resampler_mask not in ("auto", "official-quirk", "all-words"):
            raise ConfigError(f"[ifadapter] resampler_mask must be 'auto', 'official-quirk' or 'all-words', got "
                              f"{o.resampler_mask!r}")
        if not (set(o.resampler) <= RESAMPLER_KEYS and all(isinstance(v, int) and v > 0
                                                           for v in o.resampler.values())):
            raise ConfigError(f"[ifadapter] resampler takes positive integers for {sorted(RESAMPLER_KEYS)}, got "
                              f"{o.resampler!r}")
        if not (0.0 <= o.drop_local <= 1.0 and 0.0 <= o.drop_global <= 1.0):
            raise ConfigError("[ifadapter] drop_local and drop_global are probabilities in [0, 1]")
        if o.family not in FAMILY_CHOICES:
            raise ConfigError(f"[ifadapter] family must be one of {list(FAMILY_CHOICES)}, got {o.family!r}")

    # ------------------------------------------------------------------------------------------------ base, cache
    def setup(self) -> None:
        self.nodes = comfy_bridge.pack_module("ifadapter")
        self.patches = comfy_bridge.pack_module("patches")
        steps = comfy_bridge.pack_module("steps")
        from core.ifadapter.families import FAMILIES, describe_model, detect_family

        unet_config = self.patcher.model.model_config.unet_config
        if self.opts.family == "auto":
            fam = detect_family(unet_config)
            if fam is None:
                raise ValueError(f"{self.base_path}: IFAdapter trains on SDXL, SD1.5 and SD2.x models; this model is "
                                 f"{describe_model(unet_config)}")
        else:
            fam = FAMILIES[self.opts.family]
        self.family = fam
        refusal = self.nodes.model_refusal(self.patcher, family=fam.name)
        if refusal:
            raise ValueError(f"{self.base_path}: [ifadapter] family = {self.opts.family!r}: {refusal}")
        # the whole schedule: a direct UNet call (no sampler) is always inside the window
        self.window = steps.StepWindow(0.0, 1.0, "ratio", float("inf"), 0.0)

    def text_encoders(self, clip) -> TextEncoder:
        return TextEncoder(clip, self.nodes.encode_descriptions, self.family.name)

    def encode_sample(self, sample, encoders: TextEncoder) -> dict:
        prompt, pooled = encoders.prompt(sample.prompt)
        hidden, eot, mask = encoders.descriptions(sample.descriptions)
        hidden, mask = trim_words(hidden, mask)
        return {"prompt": prompt, "pooled": pooled, "desc_hidden": hidden, "desc_eot": eot, "desc_mask": mask,
                "boxes": sample.boxes.float()}

    # ------------------------------------------------------------------------------------------------ training
    def build_trainable(self, seed: int):
        from core.ifadapter import IFAdapter, load_ifadapter, read_metadata
        from core.ifadapter.loading import resampler_mask_quirk

        init, o = self.cfg.model.init, self.opts
        shape = adapter_shape(self.patcher, self.family.name)
        if init != "scratch":
            quirk = (resampler_mask_quirk(read_metadata(init)) if o.resampler_mask == "auto"
                     else o.resampler_mask == "official-quirk")
            adapter = copy.deepcopy(load_ifadapter(init, dtype=torch.float32, official_mask_quirk=quirk))
            if adapter.family.name != self.family.name:
                raise ValueError(f"{init} is an IFAdapter for {adapter.family.label}; the base model "
                                 f"{os.path.basename(self.base_path)} is {self.family.label}")
            if (adapter.hidden_size, adapter.heads) != (shape["hidden_size"], shape["heads"]):
                raise ValueError(f"{init} was built for {adapter.hidden_size}-wide layers with {adapter.heads} "
                                 f"heads; this base model's IFAdapter layers are {shape['hidden_size']} / "
                                 f"{shape['heads']}")
            if o.resampler:
                log.warning("[ifadapter] resampler is ignored when starting from %s", init)
        else:
            adapter = IFAdapter(official_mask_quirk=o.resampler_mask == "official-quirk",
                                resampler_kwargs=o.resampler, **shape)
        return adapter.float().train().requires_grad_(True)

    def draw(self, g: torch.Generator, sample: dict, train: bool) -> Draw:
        n, cap = sample["boxes"].shape[0], self.cfg.data.max_instances
        u = torch.rand(2, generator=g)
        keep = torch.arange(n)
        if n > cap:
            keep = torch.randperm(n, generator=g)[:cap].sort().values
        drop_local, drop_global = (self.opts.drop_local, self.opts.drop_global) if train else (0.0, 0.0)
        return Draw(bool(u[0] >= drop_local) and not self.opts.zero_descriptions, bool(u[1] >= drop_global), keep)

    def _encode_adm(self, pooled: torch.Tensor, entry: dict) -> torch.Tensor:
        (oh, ow), (top, left), (bw, bh) = entry["original_size"], entry["crop"], entry["bucket"]
        return self.patcher.model.encode_adm(pooled_output=pooled, width=ow, height=oh, crop_w=left, crop_h=top,
                                             target_width=bw, target_height=bh, device="cpu")

    def collate(self, samples: list[dict], draws: list[Draw]) -> dict:
        """Descriptions padded to the batch's most instances / longest words; global dropout applied."""
        b = len(samples)
        s_max = max(len(d.instances) for d in draws)
        l_max = max(s["desc_hidden"].shape[2] for s in samples)
        ctx = samples[0]["desc_hidden"].shape[-1]
        hidden = torch.zeros(b, s_max, 3, l_max, ctx)
        eot = torch.zeros(b, s_max, ctx)
        mask = torch.zeros(b, s_max, l_max, dtype=torch.bool)
        boxes = torch.zeros(b, s_max, 4)
        valid = torch.zeros(b, s_max, dtype=torch.bool)
        context, ys = [], []
        for i, (s, d) in enumerate(zip(samples, draws)):
            idx, n, length = d.instances, len(d.instances), s["desc_hidden"].shape[2]
            hidden[i, :n, :, :length] = s["desc_hidden"][idx]
            eot[i, :n] = s["desc_eot"][idx]
            mask[i, :n, :length] = s["desc_mask"][idx]
            boxes[i, :n] = s["boxes"][idx]
            valid[i, :n] = True
            keep = 1.0 if d.keep_prompt else 0.0  # global dropout: zero prompt and pooled (SDXL's zero uncond)
            context.append(s["prompt"] * keep)
            if self.micro_conditioning:
                ys.append(self._encode_adm(s["pooled"][None] * keep, s["entry"]))
        out = {"context": torch.stack(context), "desc_hidden": hidden, "desc_eot": eot, "desc_mask": mask,
               "boxes": boxes, "valid": valid, "keep_text": torch.tensor([d.keep_text for d in draws], dtype=torch.bool)}
        if ys:
            out["y"] = torch.cat(ys).float()
        return out

    def transformer_options(self, runtime, aspect: float) -> dict:
        """``transformer_options`` with the adapter's layers patched as Apply IFAdapter patches them."""
        holder = types.SimpleNamespace(model_options={"transformer_options": {}})
        for key in runtime.adapter.layer_keys:
            layer = self.nodes.IFAdapterLayer(runtime, key, self.window, aspect)
            self.patches.add_attn2_contribution(holder, key, layer)
        opts = holder.model_options["transformer_options"]
        opts["cond_or_uncond"] = [0]  # every row conditional: dropout lives in the tokens and embeddings
        return opts

    def unet_inputs(self, trainable, batch: dict) -> dict:
        from core.ifadapter.batched import BatchedRuntime, encode_instance_batch

        tokens = encode_instance_batch(trainable, batch["desc_hidden"], batch["desc_mask"], batch["desc_eot"],
                                       batch["boxes"], batch["valid"], batch["keep_text"])
        runtime = BatchedRuntime(trainable, tokens, batch["boxes"], batch["valid"])
        h, w = batch["latent"].shape[-2:]
        out = {"context": batch["context"], "transformer_options": self.transformer_options(runtime, w / h)}
        if "y" in batch:
            out["y"] = batch["y"]
        return out

    # ------------------------------------------------------------------------------------------------ export
    def checkpoint_info(self, trainable) -> dict:
        return {"adapter_config": trainable.config, "official_mask_quirk": trainable.official_mask_quirk}

    def export_metadata(self, trainable) -> dict:
        return {"resampler_mask": "official-quirk" if trainable.official_mask_quirk else "all-words"}

    def export(self, weights: dict, info: dict, path: str, metadata: dict) -> None:
        meta = {k: v for k, v in metadata.items() if k != "recipe"}
        export_adapter(weights, info["adapter_config"], info["official_mask_quirk"], path, meta)

    # ------------------------------------------------------------------------------------------------ previews
    def prepare_preview(self, layout, encoders: TextEncoder) -> dict:
        layout.validate(max_instances=10, backend="IFAdapter")
        texts = [inst.description.strip() for inst in layout.active()]
        prompt, pooled = encoders.prompt(layout.prompt)
        hidden, eot, mask = encoders.descriptions(texts)
        return {"layout": layout, "prompt": prompt, "pooled": pooled, "hidden": hidden, "eot": eot, "mask": mask}

    def preview_model(self, trainable, item: dict, width: int, height: int):
        """The model patched by the Apply IFAdapter node's own ``apply``; the official zero negative."""
        from core.ifadapter.runtime import InstanceTokens

        layout = item["layout"]
        ref = trainable.text_proj_model.proj_in.weight
        boxes = layout.boxes_normalized()
        cond = trainable.encode_instances(item["hidden"].to(ref.device, ref.dtype), item["mask"].to(ref.device),
                                          item["eot"].to(ref.device, ref.dtype), boxes.to(ref.device))
        uncond = trainable.encode_uncond(boxes.to(ref.device), seq_len=item["hidden"].shape[2])
        tokens = InstanceTokens(cond.cpu(), uncond.cpu(), boxes, tuple(d.description for d in layout.active()))
        model = self.nodes.ApplyIFAdapter().apply(self.patcher, trainable, tokens, layout)[0]
        if not self.micro_conditioning:  # SD1.x / SD2.x: the text alone
            return model, [[item["prompt"][None], {}]], [[torch.zeros_like(item["prompt"][None]), {}]]
        extra = {"width": width, "height": height, "target_width": width, "target_height": height, "crop_w": 0,
                 "crop_h": 0}
        positive = [[item["prompt"][None], dict(extra, pooled_output=item["pooled"][None])]]
        negative = [[torch.zeros_like(item["prompt"][None]),
                     dict(extra, pooled_output=torch.zeros_like(item["pooled"][None]))]]
        return model, positive, negative


RECIPE = IFAdapterRecipe
