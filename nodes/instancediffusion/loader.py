"""Nodes that load InstanceDiffusion weights and convert them to a compact .safetensors file."""
from __future__ import annotations

import logging
import os

import torch

from ...core.instancediffusion.loading import CheckpointError, convert_to_safetensors
from ...core.paths import PathRefused, output_file, write_into
from ..common import CATEGORY
from ..folders import model_list, model_path, output_folder
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
                             "fp16": ("BOOLEAN", {"default": True})},
                "optional": {"overwrite": ("BOOLEAN", {"default": False,
                                                       "tooltip": "replace an existing file of that name"})}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    FUNCTION = "convert"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY + "/instancediffusion"

    def convert(self, model_name, output_name, fp16, overwrite=False):
        src = model_path("instancediffusion", model_name)
        try:
            dst = output_file(output_folder("instancediffusion"), output_name, ".safetensors", overwrite)
        except PathRefused as e:
            raise ValueError(f"InstanceDiffusion convert: {e}") from None
        if os.path.realpath(dst) == os.path.realpath(src):
            raise ValueError(f"InstanceDiffusion convert: output {os.path.basename(dst)!r} would overwrite the "
                             "source")
        metas = []
        try:
            write_into(dst, lambda tmp: metas.append(
                convert_to_safetensors(src, tmp, torch.float16 if fp16 else None)), overwrite)
        except CheckpointError as e:
            raise ValueError(f"InstanceDiffusion convert: {e}") from None
        msg = f"wrote {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB, from {metas[0]['origin']})"
        return {"ui": {"text": [msg]}, "result": (dst,)}
