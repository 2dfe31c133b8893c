"""Tiny random-weight models with the real SD1.5 / SDXL block layouts, built in-process from ComfyUI's own classes.

Checkpoint auto-detection needs real channel widths (320), so these are built directly from
``comfy.supported_models`` configs with 32 base channels instead of being read from files. Everything else is the
real thing: the real UNet block structure (16 SD1.5 / 70 SDXL transformer blocks), the real CLIP tokenizer with a
small text encoder of the real widths (768 / 1280), TAESD as the VAE, a real ``comfy.cldm`` ControlNet, and LoRA
files in the real ``lora_unet_*`` key format for ComfyUI's own LoraLoader.
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile

import comfy.cldm.cldm
import comfy.controlnet
import comfy.lora
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
import comfy.taesd.taesd
import torch

BASE_CHANNELS = 32
CLIP_LAYERS = 8  # IFAdapter reads hidden states -2, -4 and -6, so at least 7 layers are needed

_CACHE: dict = {}


def _unet_config(arch: str) -> dict:
    # model_detection.py's SD15 / SDXL dicts with 32 base channels (SDXL: 32 channels per head)
    if arch == "sd15":
        cfg = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
               "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": BASE_CHANNELS,
               "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
               "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
               "context_dim": 768, "num_heads": 8,
               "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
               "use_temporal_attention": False, "use_temporal_resblock": False}
    elif arch == "sdxl":
        cfg = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
               "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
               "model_channels": BASE_CHANNELS, "num_res_blocks": [2, 2, 2],
               "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
               "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048,
               "num_head_channels": 32, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
               "use_temporal_attention": False, "use_temporal_resblock": False}
    else:
        raise ValueError(f"unknown arch {arch!r}; expected 'sd15' or 'sdxl'")
    cfg["dtype"] = torch.float32
    return cfg


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.02) -> torch.nn.Module:
    """Fill every parameter deterministically: norms get weight 1 / bias 0, everything else N(0, std²).

    ComfyUI's ``ops`` skip weight initialisation, so without this the parameters hold uninitialised memory.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            lname = name.lower()
            if "norm" in lname or "ln_" in lname or lname.endswith("layer_norm.weight"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
    return module


def build_unet(arch: str, seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    cls = comfy.supported_models.SD15 if arch == "sd15" else comfy.supported_models.SDXL
    model_config = cls(_unet_config(arch))
    model = model_config.get_model({}, "")
    randomize_(model.diffusion_model, seed)
    model.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def write_single_file(arch: str, path: str, seed: int = 0, v_prediction: bool = False, unet_std: float = 0.02) -> str:
    """Save UNet + CLIP + VAE of the tiny ``arch`` ("sd15" / "sdxl", random weights from ``seed``) as one
    ``.safetensors`` checkpoint in ComfyUI's single-file layout (``state_dict_for_saving``), for
    ``load_checkpoint_guess_config`` once the tiny layout is registered (``training/tiny_sd15_file.py``,
    ``training/tiny_sdxl_file.py``). ``unet_std`` sets the spread of the UNet's random weights (larger: an adapter's
    residual reaches the output with more weight); ``v_prediction`` adds the ``v_pred`` key."""
    from safetensors.torch import save_file

    model, clip, vae = build_unet(arch, seed), build_clip(arch, seed), build_vae(seed)
    if unet_std != 0.02:
        randomize_(model.model.diffusion_model, seed, std=unet_std)
    sd = model.model.state_dict_for_saving(clip.get_sd(), vae.get_sd(), None)
    sd = {k: v.detach().contiguous() for k, v in sd.items()}
    if v_prediction:
        sd["v_pred"] = torch.tensor([])
    save_file(sd, path)
    return path


def _clip_json(hidden: int, heads: int) -> str:
    cfg = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
           "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": hidden, "initializer_factor": 1.0,
           "initializer_range": 0.02, "intermediate_size": 256, "layer_norm_eps": 1e-05,
           "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": heads,
           "num_hidden_layers": CLIP_LAYERS, "pad_token_id": 1, "projection_dim": hidden,
           "torch_dtype": "float32", "vocab_size": 49408}
    fd, path = tempfile.mkstemp(prefix=f"tiny_clip_{hidden}_", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    return path


def _accepts(cls, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


class TinySD1Clip(comfy.sd1_clip.SD1ClipModel):
    """SD1.5 text encoder: the real SD1 tokenizer and CLIP-L width with a small stack of layers."""

    def __init__(self, device="cpu", dtype=None, **kwargs):
        kw = {}
        if _accepts(comfy.sd1_clip.SD1ClipModel, "model_options") and "model_options" in kwargs:
            kw["model_options"] = kwargs["model_options"]
        super().__init__(device=device, dtype=dtype, clip_model=comfy.sd1_clip.SDClipModel,
                         textmodel_json_config=_clip_json(768, 12), **kw)


class TinySDXLClip(comfy.sdxl_clip.SDXLClipModel):
    """SDXL text encoders: CLIP-L (768) and CLIP-G (1280, pad 0) penultimate layers without final LN."""

    def __init__(self, device="cpu", dtype=None, **kwargs):
        torch.nn.Module.__init__(self)
        kw = {}
        if _accepts(comfy.sd1_clip.SDClipModel, "model_options"):
            kw["model_options"] = kwargs.get("model_options", {})
        self.clip_l = comfy.sd1_clip.SDClipModel(layer="hidden", layer_idx=-2, device=device, dtype=dtype,
                                                 layer_norm_hidden_state=False,
                                                 textmodel_json_config=_clip_json(768, 12), **kw)
        self.clip_g = comfy.sd1_clip.SDClipModel(layer="hidden", layer_idx=-2, device=device, dtype=dtype,
                                                 layer_norm_hidden_state=False,
                                                 textmodel_json_config=_clip_json(1280, 20),
                                                 special_tokens={"start": 49406, "end": 49407, "pad": 0},
                                                 return_projected_pooled=True, **kw)
        self.dtypes = {dtype}


def build_clip(arch: str, seed: int = 0) -> comfy.sd.CLIP:
    if arch == "sd15":
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD1Clip)
    else:
        target = comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClip)
    with torch.inference_mode(False), torch.no_grad():
        clip = comfy.sd.CLIP(target=target)
        randomize_(clip.cond_stage_model, seed + 1)
    return clip


def build_vae(seed: int = 0) -> comfy.sd.VAE:
    sd = comfy.taesd.taesd.TAESD().state_dict()
    g = torch.Generator().manual_seed(seed + 2)
    sd = {k: (torch.randn(v.shape, generator=g) * 0.05 if v.dtype.is_floating_point and v.ndim > 0 else v)
          for k, v in sd.items()}
    return comfy.sd.VAE(sd=sd)


def tiny_checkpoint(arch: str, seed: int = 0):
    """(MODEL, CLIP, VAE) for 'sd15' or 'sdxl'. Built once per (arch, seed); callers get clones."""
    key = (arch, seed)
    if key not in _CACHE:
        _CACHE[key] = (build_unet(arch, seed), build_clip(arch, seed), build_vae(seed))
    model, clip, vae = _CACHE[key]
    return model.clone(), clip.clone(), vae


def tiny_controlnet(arch: str, seed: int = 0):
    """A real ``comfy.controlnet.ControlNet`` around a ``comfy.cldm.cldm.ControlNet`` of the tiny layout."""
    cfg = _unet_config(arch)
    for k in ("out_channels", "transformer_depth_output"):
        cfg.pop(k, None)
    cfg["hint_channels"] = 3
    params = inspect.signature(comfy.cldm.cldm.ControlNet.__init__).parameters
    cfg = {k: v for k, v in cfg.items() if k in params or "kwargs" in params}
    control_model = comfy.cldm.cldm.ControlNet(**cfg)
    randomize_(control_model, seed + 3, std=0.02)
    kw = {"load_device": mm.get_torch_device(), "manual_cast_dtype": None}
    return comfy.controlnet.ControlNet(control_model, **kw)


def lora_state_dict(model_patcher, seed: int = 0, rank: int = 4, strength: float = 1.0) -> dict:
    """A LoRA in the kohya ``lora_unet_*`` format covering every attention and feed-forward linear of the UNet."""
    key_map = comfy.lora.model_lora_keys_unet(model_patcher.model, {})
    sd_model = model_patcher.model.state_dict()
    g = torch.Generator().manual_seed(seed + 4)
    out = {}
    for lora_key, model_key in key_map.items():
        if not isinstance(model_key, str) or not lora_key.startswith("lora_unet_"):
            continue
        if not any(s in lora_key for s in ("attn1_to_q", "attn2_to_k", "attn2_to_v", "ff_net_2")):
            continue
        w = sd_model.get(model_key)
        if w is None or w.ndim != 2:
            continue
        out_f, in_f = w.shape
        out[f"{lora_key}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) * 0.05
        out[f"{lora_key}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) * 0.05
        out[f"{lora_key}.alpha"] = torch.tensor(float(rank) * strength)
    if not out:
        raise RuntimeError("no LoRA keys matched the tiny UNet")
    return out
