"""Nodes that load InstanceDiffusion weights and convert them to a compact .safetensors file."""
from __future__ import annotations

import logging
import os

import torch

from ...core.instancediffusion.loading import CheckpointError, convert_to_safetensors
from ...core.paths import PathRefused, output_file, write_into
from ..common import CATEGORY_INSTANCEDIFFUSION, CATEGORY_UTILS
from ..folders import model_list, model_path, output_folder
from .adapter import ADAPTER, load_adapter

log = logging.getLogger("comfyui-ifadapter")


class InstanceDiffusionLoader:
    """Load InstanceDiffusion weights from models/instancediffusion."""

    DESCRIPTION = ("Loads InstanceDiffusion weights (the SD1.5 adapter: position net, fusers, ScaleU) from "
                   "models/instancediffusion: the official instancediffusion_sd15.pth (read lazily and safely, only "
                   "the adapter tensors), a converted .safetensors, or logtd's split .ckpt files. Connect its "
                   "output to Apply InstanceDiffusion.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_list("instancediffusion"), {
            "tooltip": "A file in models/instancediffusion: instancediffusion_sd15.pth (official), a converted "
                       ".safetensors, or logtd's position_net.ckpt (fusers.ckpt and scaleu.ckpt must sit next to "
                       "it)."})}}

    RETURN_TYPES = (ADAPTER,)
    RETURN_NAMES = ("instancediffusion",)
    OUTPUT_TOOLTIPS = ("The InstanceDiffusion weights for Apply InstanceDiffusion.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY_INSTANCEDIFFUSION

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

    DESCRIPTION = ("Writes a compact .safetensors copy of an InstanceDiffusion file into models/instancediffusion: "
                   "only the 513 adapter tensors (0.74 GB in fp16 instead of the 13.6 GB training snapshot), after a "
                   "strict check. Run it once, then load the new file. Returns the path written.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (model_list("instancediffusion"), {
                "tooltip": "The file in models/instancediffusion to convert (e.g. instancediffusion_sd15.pth)."}),
            "output_name": ("STRING", {"default": "instancediffusion_sd15_fp16.safetensors",
                                       "tooltip": "File name to write in models/instancediffusion (a name, not a "
                                                  "path; .safetensors is added if missing)."}),
            "fp16": ("BOOLEAN", {"default": True,
                                 "tooltip": "Store the tensors as float16 (half the size); off keeps their dtype."})},
                "optional": {"overwrite": ("BOOLEAN", {"default": False,
                                                       "tooltip": "Replace an existing file of that name; off "
                                                                  "refuses instead."})}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The full path of the .safetensors file written.",)
    FUNCTION = "convert"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_UTILS

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
