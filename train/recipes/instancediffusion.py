"""Recipe ``instancediffusion``: train InstanceDiffusion (position net, 16 fusers, ScaleU) on a frozen SD1.5 checkpoint
(``python -m train instancediffusion --config my.toml``); docs/training.md, "InstanceDiffusion".

What differs from the engine's defaults (the official ``trainer.py``, ``dataset/decode_item.py``, ``train_sd15.yaml``
and the README's training command; every deliberate difference is in docs/official-differences.md):

- **Trains** the adapter from the official initialisation (``[model] init = "scratch"``) or fine-tunes any file
  Load InstanceDiffusion reads (the official ``instancediffusion_sd15.pth``: its EMA weights); SD1.5 is frozen.
  Defaults: AdamW lr 5e-5, no weight decay, 5,000 warm-up steps then constant, EMA 0.9999, 512² centre crops, at most
  30 instances, 1 % minimum box, fp16 autocast without gradient clipping.
- **Cache** per sample: the caption's CLIP context (counted labels + prompt) and the empty caption's, every
  instance's pooled CLIP embedding of its description and of its label, its source-frame box, given scribble / point,
  the official 256-point polygon of its mask and the mask itself (COCO RLE counts).
- **Draws** per sample (:mod:`core.instancediffusion.training_inputs`, from the engine's generator): 20 scribble
  pixels from each mask, the flip (the cached latent is flipped with it), description vs label (``random_blip``), the
  caption (``prob_use_caption``), the modality drop flags and the 10 % all-null grounding.
- **Model inputs**: the position net's tokens with the drop flags, then Apply InstanceDiffusion's own
  ``FuserPatch`` / ``ScaleUPatch`` on a clone of the base model (:mod:`train.instancediffusion_model`).
- **Export**: ``<name>.safetensors`` under the official key names for Load InstanceDiffusion.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from core.instancediffusion.inputs import N_POLYGON, N_SCRIBBLE, scribble_from_mask
from core.instancediffusion.training_inputs import (
    CAPTION_STYLES,
    CropGeometry,
    DecodedInstance,
    ModalityDrop,
    SourceInstance,
    TrainingInputSettings,
    TrainingSample,
    decode_instances,
    draw_modality_drop,
    draw_null_grounding,
    prepare_training_sample,
    source_instances,
)
from core.rle import rle_decode, rle_encode

from ..engine import comfy_bridge
from ..engine.config import ConfigError
from ..engine.recipe import Recipe
from ..instancediffusion_model import (
    GROUNDING_KEYS,
    adapter_config_for,
    load_for_finetuning,
    official_init,
    patch_for_training,
)

log = logging.getLogger("train")
DROPOUT_UNITS = ("sample", "batch (official)")


@dataclass
class InstanceDiffusionOptions:
    random_blip: float = 0.5  # probability of the description's embedding (else the label's), when both exist
    prob_use_caption: float = 0.5  # probability of keeping the caption (else the empty caption)
    caption_style: str = CAPTION_STYLES[0]  # "counted labels + prompt" (official detection data) or "prompt"
    random_flip: bool = True  # horizontal flip with probability 0.5 (image latent and every input kind)
    modality_dropout: bool = True  # the official per-kind drop rule (reset_dropout_train)
    null_grounding: float = 0.1  # probability of the all-null grounding input (classifier-free guidance)
    dropout_unit: str = DROPOUT_UNITS[0]  # "sample", or "batch (official)": one draw per micro-batch
    use_given_points: bool = True  # a layout's point region as the point (official data: box centres only)
    mid_dim: int = 3072  # from-scratch position-net MLP width (official 3072; smaller only for tests)
    convnext_dims: list = field(default_factory=lambda: [96, 192, 384, 768])  # from-scratch mask encoder widths
    convnext_depths: list = field(default_factory=lambda: [3, 3, 9, 3])
    convnext_init: str = ""  # ConvNeXt-T ImageNet-1k weights for the mask encoder of a from-scratch run
    zero_instances: bool = False  # ablation baseline: every sample's grounding input is the all-null input


@dataclass
class Draw:
    sample: TrainingSample
    drop: ModalityDrop
    null: bool


class TextEncoders:
    """SD1.5's CLIP through ComfyUI: the caption context and the per-instance pooled embeddings Apply
    InstanceDiffusion uses."""

    def __init__(self, clip):
        self.clip = clip

    def context(self, text: str) -> torch.Tensor:
        """``[77, 768]``: the caption's last-layer hidden states, first 75 tokens (the official CLIP truncates)."""
        tok = self.clip.tokenize(text)
        tok = {k: v[:1] for k, v in tok.items()} if isinstance(tok, dict) else tok[:1]
        cond, _ = self.clip.encode_from_tokens(tok, return_pooled=True)
        return cond[0].float().cpu()

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """``[n, 768]``: CLIP-L pooled, un-projected, as Apply InstanceDiffusion encodes each description."""
        out = []
        for text in texts:
            _, pool = self.clip.encode_from_tokens(self.clip.tokenize(text), return_pooled="unprojected")
            out.append(pool.reshape(-1).float().cpu())
        return torch.stack(out) if out else torch.zeros(0, 768)


def geometry_of(entry: dict) -> CropGeometry:
    """The engine's resize and crop of this sample (square buckets) as a :class:`CropGeometry`."""
    (h0, w0), (top, left), (bw, bh) = entry["original_size"], entry["crop"], entry["bucket"]
    scale = max(bw / w0, bh / h0)
    rw, rh = max(bw, round(w0 * scale)), max(bh, round(h0 * scale))
    return CropGeometry((int(w0), int(h0)), int(bw), (int(rw), int(rh)), (int(left), int(top)), bw / min(w0, h0))


class InstanceDiffusionRecipe(Recipe):
    name = "instancediffusion"
    title = "InstanceDiffusion"
    Options = InstanceDiffusionOptions
    defaults = {
        "train": {"lr": 5e-5, "warmup_steps": 5000, "weight_decay": 0.0, "ema_decay": 0.9999, "batch_size": 64,
                  "micro_batch_size": 8, "grad_clip": 0.0, "precision": "fp16", "max_steps": 500_000},
        "data": {"resolution": 512, "random_crop": False, "min_box_area": 0.01, "max_instances": 30},
        "samples": {"steps": 50, "cfg": 7.5},
    }
    max_instances_limit = 30
    cache_fields = {"caption": "feature", "empty": "feature", "pooled_desc": "feature", "pooled_label": "feature",
                    "boxes_src": "exact", "scribbles_src": "exact", "points_src": "exact", "polygons_src": "exact",
                    "flags": "exact", "rle": "exact", "rle_index": "exact"}
    cache_version = 1

    @classmethod
    def validate(cls, cfg) -> None:
        o = cfg.options
        for k in ("random_blip", "prob_use_caption", "null_grounding"):
            if not 0.0 <= getattr(o, k) <= 1.0:
                raise ConfigError(f"[instancediffusion] {k} is a probability in [0, 1], got {getattr(o, k)!r}")
        if o.caption_style not in CAPTION_STYLES:
            raise ConfigError(f"[instancediffusion] caption_style must be one of {list(CAPTION_STYLES)}, got "
                              f"{o.caption_style!r}")
        if o.dropout_unit not in DROPOUT_UNITS:
            raise ConfigError(f"[instancediffusion] dropout_unit must be one of {list(DROPOUT_UNITS)}, got "
                              f"{o.dropout_unit!r}")
        if len(o.convnext_dims) != 4 or len(o.convnext_depths) != 4 or not all(
                isinstance(v, int) and v > 0 for v in list(o.convnext_dims) + list(o.convnext_depths) + [o.mid_dim]):
            raise ConfigError("[instancediffusion] mid_dim, convnext_dims (4) and convnext_depths (4) take positive "
                              "integers")
        d = cfg.data
        if not d.buckets:  # one square bucket of [data] resolution (official: 512 x 512 centre crops)
            d.buckets = [[d.resolution, d.resolution]]
        buckets = d.buckets
        if any(int(w) != int(h) for w, h in buckets):
            raise ConfigError(f"[data] buckets: InstanceDiffusion trains on square crops (official: 512 x 512), got "
                              f"{buckets}")
        if not 1 <= d.max_instances <= 30:
            raise ConfigError(f"[data] max_instances: InstanceDiffusion takes 1..30 instances (its mask encoder has 30 "
                              f"channels), got {d.max_instances}")

    # ------------------------------------------------------------------------------------------------ base, cache
    def setup(self) -> None:
        self.adapter_nodes = comfy_bridge.pack_module("instancediffusion.adapter")
        self.grounding = comfy_bridge.pack_module("instancediffusion.grounding")
        self.apply_nodes = comfy_bridge.pack_module("instancediffusion.apply")
        self.steps = comfy_bridge.pack_module("steps")
        adapter_config_for(self.patcher, self.adapter_nodes)  # refuses a non-SD1.5 base with a clear message
        self._state = None

    def text_encoders(self, clip) -> TextEncoders:
        return TextEncoders(clip)

    def cache_settings(self) -> dict:
        o = self.opts
        return {"caption_style": o.caption_style, "min_box_area": self.cfg.data.min_box_area,
                "max_instances": self.cfg.data.max_instances}

    def settings(self, size: int, train: bool) -> TrainingInputSettings:
        o = self.opts
        return TrainingInputSettings(
            size=size, max_objs=self.cfg.data.max_instances, min_box_size=self.cfg.data.min_box_area,
            random_flip=o.random_flip and train, random_blip=o.random_blip if train else 1.0,
            prob_use_caption=o.prob_use_caption if train else 1.0, caption_style=o.caption_style,
            use_given_points=o.use_given_points)

    def encode_sample(self, sample, encoders: TextEncoders) -> dict:
        insts = source_instances(sample.layout)
        n = len(insts)
        entry = {"original_size": sample.original_size, "crop": sample.crop, "bucket": sample.bucket}
        g = geometry_of(entry)
        # deterministic parts: polygons (masks of fewer than 128 pixels draw their interior points from a generator
        # seeded by the sample name, once), and the caption the kept instances give
        seed = int.from_bytes(sample.name.encode()[-8:].rjust(8, b"\0"), "little") & 0x7FFFFFFFFFFFFFFF
        decoded = decode_instances(insts, np.random.default_rng(seed))
        static = prepare_training_sample(insts, g.source[0], g.source[1], sample.prompt, np.random.default_rng(0),
                                         self.settings(g.size, train=False), decoded, g)
        counts, index = [], []
        for inst in insts:
            if inst.mask is None:
                index.append([len(counts), 0])
                continue
            c = rle_encode(inst.mask, compress=False)["counts"]
            index.append([len(counts), len(c)])
            counts += c
        return {
            "caption": encoders.context(static.caption), "empty": encoders.context(""),
            "pooled_desc": encoders.pooled([i.description for i in insts]),
            "pooled_label": encoders.pooled([i.label or i.description for i in insts]),
            "boxes_src": torch.tensor([i.box for i in insts], dtype=torch.float32).reshape(n, 4),
            # given scribbles only (resampled to 20 points); scribbles from masks are drawn anew at every step
            "scribbles_src": torch.tensor([d.scribble if i.scribble is not None else [0.0] * (2 * N_SCRIBBLE)
                                           for i, d in zip(insts, decoded)], dtype=torch.float64).reshape(n, -1),
            "points_src": torch.tensor([i.point if i.point is not None else (0.0, 0.0) for i in insts],
                                       dtype=torch.float64).reshape(n, 2),
            "polygons_src": torch.tensor([d.polygon if d.polygon is not None else [0.0] * (2 * N_POLYGON)
                                          for d in decoded], dtype=torch.float64).reshape(n, 2 * N_POLYGON),
            "flags": torch.tensor([[i.mask is not None, bool(i.label), i.scribble is not None, i.point is not None]
                                   for i in insts], dtype=torch.int32).reshape(n, 4),
            "rle": torch.tensor(counts, dtype=torch.int64),
            "rle_index": torch.tensor(index, dtype=torch.int64).reshape(n, 2),
        }

    # ------------------------------------------------------------------------------------------------ training
    def build_trainable(self, seed: int):
        o, init = self.opts, self.cfg.model.init
        config = adapter_config_for(self.patcher, self.adapter_nodes, o.mid_dim, tuple(o.convnext_dims),
                                    tuple(o.convnext_depths))
        if init == "scratch":
            module = official_init(config, seed, o.convnext_init)
        else:
            module, origin = load_for_finetuning(init)
            if tuple(module.config.fuser_channels) != tuple(config.fuser_channels):
                raise ValueError(f"{init}: its fusers are {list(module.config.fuser_channels)} wide; this base "
                                 f"model's transformer blocks are {list(config.fuser_channels)}")
            log.info("[instancediffusion] fine-tuning %s (%s weights)", init, origin)
        self._state = None
        return module.float().train().requires_grad_(True)

    def _instances(self, sample: dict) -> tuple[list[SourceInstance], list[DecodedInstance]]:
        """The cached instances, masks decoded from their RLE; the scribble (given) and polygon from the cache."""
        entry = sample["entry"]
        h0, w0 = entry["original_size"]
        flags = sample["flags"].tolist()
        rle, index = sample["rle"].tolist(), sample["rle_index"].tolist()
        insts, decoded = [], []
        for k, (has_mask, has_label, has_scr, has_pt) in enumerate(flags):
            mask = None
            if has_mask:
                off, length = index[k]
                mask = rle_decode({"size": [int(h0), int(w0)], "counts": rle[off:off + length]})
            # texts are cached as embeddings: only whether a label exists matters here (the random_blip draw)
            src = SourceInstance(tuple(sample["boxes_src"][k].tolist()), mask=mask,
                                 point=tuple(sample["points_src"][k].tolist()) if has_pt else None,
                                 description="description", label="label" if has_label else "")
            d = DecodedInstance(src, scribble=sample["scribbles_src"][k].tolist() if has_scr else None,
                                polygon=sample["polygons_src"][k].tolist() if has_mask else None)
            insts.append(src)
            decoded.append(d)
        return insts, decoded

    def draw(self, g: torch.Generator, sample: dict, train: bool) -> Draw:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
        insts, decoded = self._instances(sample)
        for d in decoded:  # official decode_item: 20 new random mask pixels at every step (unless given)
            if d.source.mask is not None and d.scribble is None:
                pts = scribble_from_mask(d.source.mask, N_SCRIBBLE, rng)
                d.scribble = [0.0] * (2 * N_SCRIBBLE) if pts is None else [v for p in pts for v in p]
        entry = sample["entry"]
        geo = geometry_of(entry)
        # the caption text itself is cached; a non-empty stand-in prompt makes ts.caption == "" mean "dropped"
        ts = prepare_training_sample(insts, geo.source[0], geo.source[1], "caption", rng,
                                     self.settings(geo.size, train), decoded, geo)
        o = self.opts
        drop = draw_modality_drop(rng) if train and o.modality_dropout else ModalityDrop(False, False, False, False)
        null = draw_null_grounding(rng, o.null_grounding) if train else False
        return Draw(ts, drop, null)

    def collate(self, samples: list[dict], draws: list[Draw]) -> dict:
        """The grounding tensors [B, 30, ...] and caption contexts; the flip applied to the cached latents."""
        if self.opts.dropout_unit != "sample" and draws:  # official: one draw for the whole (micro-)batch
            draws = [Draw(d.sample, draws[0].drop, draws[0].null) for d in draws]
        out = {k: [] for k in (*GROUNDING_KEYS, "context", "drop", "latent")}
        for s, d in zip(samples, draws):
            ts = d.sample
            null = d.null or self.opts.zero_instances
            keep = 0.0 if null else 1.0  # the all-null grounding input: every tensor zero
            emb = torch.zeros(ts.masks.shape[0], 768)
            for slot, (k, use_label) in enumerate(zip(ts.slots, ts.use_label)):
                emb[slot] = (s["pooled_label"] if use_label else s["pooled_desc"])[k]
            for key, v in (("boxes", ts.boxes), ("masks", ts.masks), ("points", ts.points),
                           ("scribbles", ts.scribbles), ("polygons", ts.polygons), ("segs", ts.segs),
                           ("positive_embeddings", emb)):
                out[key].append(v * keep)
            out["context"].append(s["caption"] if ts.caption else s["empty"])
            out["drop"].append(torch.tensor(d.drop.as_list()) & (not null))
            out["latent"].append(s["latent"].flip(-1) if ts.flip else s["latent"])
        return {k: torch.stack(v) for k, v in out.items()}

    def state(self, trainable):
        """Apply InstanceDiffusion's grounding state and patched clone for ``trainable`` (built once)."""
        if self._state is None or self._state[0] is not trainable:
            st, patched = patch_for_training(trainable, self.patcher, self.adapter_nodes, self.grounding, self.steps)
            self._state = (trainable, st, patched)
        return self._state[1], self._state[2]

    def unet_inputs(self, trainable, batch: dict) -> dict:
        st, patched = self.state(trainable)
        st.objs = trainable.encode({k: batch[k] for k in GROUNDING_KEYS}, batch["drop"])
        opts = dict(patched.model_options["transformer_options"])
        opts["cond_or_uncond"] = [0]  # every row conditional: the guidance drop lives in the grounding input
        return {"context": batch["context"], "transformer_options": opts}

    # ------------------------------------------------------------------------------------------------ export
    def checkpoint_info(self, trainable) -> dict:
        """The widths (the exported file's shapes say them again; kept for ``python -m train.export``)."""
        return {"adapter_config": {"fuser_channels": list(trainable.config.fuser_channels),
                                   "scaleu_channels": list(trainable.config.scaleu_channels),
                                   "mid_dim": trainable.config.mid_dim}}

    def export_metadata(self, trainable) -> dict:
        return {"adapter_widths": list(trainable.config.fuser_channels)}

    def export(self, weights: dict, info: dict, path: str, metadata: dict) -> None:
        from core.instancediffusion.loading import save_adapter

        meta = {f"instancediffusion_train_{k}": v for k, v in metadata.items() if k != "recipe"}
        save_adapter({k: v.detach().float() for k, v in weights.items()}, path, meta)

    # ------------------------------------------------------------------------------------------------ previews
    def prepare_preview(self, layout, encoders: TextEncoders) -> dict:
        layout.validate(max_instances=30, backend="InstanceDiffusion")
        layout.require_descriptions("InstanceDiffusion")
        texts = [inst.description for inst in layout.active()]
        caps = [encoders.context(t)[None] for t in texts]
        return {"layout": layout, "prompt": encoders.context(layout.prompt), "negative": encoders.context(""),
                "pooled": encoders.pooled(texts), "captions": caps}

    def preview_model(self, trainable, item: dict, width: int, height: int):
        """The model patched by Apply InstanceDiffusion's own code (a frozen copy of the weights)."""
        adapter = self.adapter_nodes.Adapter(copy.deepcopy(trainable), "training preview", "training")
        model = self.apply_nodes.apply_with_embeddings(
            self.patcher, adapter, item["layout"], list(item["pooled"]), item["captions"], strength=1.0, alpha=1.0,
            preset="auto", scaleu=True)
        return model, [[item["prompt"][None], {}]], [[item["negative"][None], {}]]


RECIPE = InstanceDiffusionRecipe
