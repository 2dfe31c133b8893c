"""Nodes that load InstanceDiffusion weights and convert them to a compact .safetensors file."""
from __future__ import annotations

import logging
import os

import folder_paths
import torch

from ...core.instancediffusion.loading import CheckpointError, convert_to_safetensors
from ..common import CATEGORY
from ..folders import model_list, model_path
from .adapter import ADAPTER, load_adapter

log = logging.getLogger("comfyui-ifadapter")


class InstanceDiffusionLoader:
    """Load InstanceDiffusion weights from models/instancediffusion."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_list("instancediffusion"), {
            "tooltip": "instancediffusion_sd15.pth (official), a converted .safetensors, or logtd's "
                       "position_net.ckpt (fusers.ckpt and scaleu.ckpt must sit next to it)"})}}

    RETURN_TYPES = (ADAPTER,)
    RETURN_NAMES = ("instancediffusion",)
    FUNCTION = "load"
    CATEGORY = CATEGORY + "/instancediffusion"

    def load(self, model_name):
        path = model_path("instancediffusion", model_name)
        try:
            adapter = load_adapter(path)
        except CheckpointError as e:
            raise ValueError(f"InstanceDiffusion loader: {e}") from None
        log.info("[comfyui-ifadapter] loaded %r", adapter)
        return (adapter,)


class InstanceDiffusionConvert:
    """Write a compact .safetensors copy (fp16 by default) of any InstanceDiffusion file; it loads in seconds."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_list("instancediffusion"),),
                             "output_name": ("STRING", {"default": "instancediffusion_sd15_fp16.safetensors"}),
                             "fp16": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    FUNCTION = "convert"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY + "/instancediffusion"

    def convert(self, model_name, output_name, fp16):
        src = model_path("instancediffusion", model_name)
        name = os.path.basename(output_name.strip())
        if not name.endswith(".safetensors"):
            name += ".safetensors"
        dst = os.path.join(folder_paths.get_folder_paths("instancediffusion")[0], name)
        if os.path.abspath(dst) == os.path.abspath(src):
            raise ValueError(f"InstanceDiffusion convert: output {name!r} would overwrite the source")
        try:
            meta = convert_to_safetensors(src, dst, torch.float16 if fp16 else None)
        except CheckpointError as e:
            raise ValueError(f"InstanceDiffusion convert: {e}") from None
        msg = f"wrote {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB, from {meta['origin']})"
        return {"ui": {"text": [msg]}, "result": (dst,)}
