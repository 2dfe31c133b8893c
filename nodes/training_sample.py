"""Save Training Sample: an image and its layout, written in the IFAdapter trainer's dataset format.

Users build datasets from their own graphs: every image of the batch becomes ``<name>.png`` next to ``<name>.json``
(the layout, scaled to the image size) in a folder under ComfyUI's output folder, which ``python -m train.ifadapter``
reads directly (docs/training.md). Existing files are never overwritten: the next free number is taken.
"""
from __future__ import annotations

import os
import re

import folder_paths
import numpy as np
from PIL import Image

from ..core.layout import Layout
from .common import CATEGORY_LAYOUT, LAYOUT

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_INDEX = 99_999


def dataset_folder(folder: str) -> str:
    """``folder`` resolved inside ComfyUI's output folder; refuses absolute paths and anything escaping it."""
    out = os.path.realpath(folder_paths.get_output_directory())
    rel = folder.strip().replace("\\", "/")
    if not rel or os.path.isabs(rel) or re.match(r"^[A-Za-z]:", rel):
        raise ValueError(f"folder {folder!r} must be a relative path inside ComfyUI's output folder, e.g. "
                         "'ifadapter_dataset'")
    path = os.path.realpath(os.path.join(out, rel))
    if os.path.commonpath([out, path]) != out or path == out:
        raise ValueError(f"folder {folder!r} leaves ComfyUI's output folder; use a sub-folder such as "
                         "'ifadapter_dataset/my_set'")
    return path


def _write_new(path: str, data: bytes) -> None:
    """Create ``path`` with ``data``; fails if it exists (never overwrites, even under a race)."""
    with open(path, "xb") as f:
        f.write(data)


class SaveTrainingSample:
    DESCRIPTION = ("Saves each image with its layout as a training sample for the IFAdapter trainer: <prefix>_NNNNN.png "
                   "and <prefix>_NNNNN.json (the layout scaled to the image) in a folder inside ComfyUI's output "
                   "folder. Never overwrites: the next free number is used. Train with python -m train.ifadapter "
                   "(docs/training.md).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The image(s) to save; each becomes one sample with the same layout."}),
            "layout": (LAYOUT, {"tooltip": "The layout of the image(s): prompt and described instances; scaled to "
                                           "each image's size."}),
            "folder": ("STRING", {"default": "ifadapter_dataset",
                                  "tooltip": "sub-folder of ComfyUI's output folder (the dataset folder)"}),
            "prefix": ("STRING", {"default": "sample", "tooltip": "file name prefix: letters, digits, _ and -"}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("The dataset folder written to (give it to the trainer as [data] folder).",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_LAYOUT

    def save(self, images, layout: Layout, folder="ifadapter_dataset", prefix="sample"):
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"prefix {prefix!r} must be 1-64 letters, digits, '_' or '-'")
        layout.validate()
        if not layout.active():
            raise ValueError("the layout has no enabled instance; a training sample needs at least one described box")
        path = dataset_folder(folder)
        os.makedirs(path, exist_ok=True)
        saved, index = [], 1
        for img in images:
            arr = (img.detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            h, w = arr.shape[:2]
            sample = layout.scaled(w, h) if (layout.width, layout.height) != (w, h) else layout
            while True:
                if index > MAX_INDEX:
                    raise ValueError(f"{path} already holds {MAX_INDEX} samples named {prefix}_*; choose another "
                                     "prefix or folder")
                stem = os.path.join(path, f"{prefix}_{index:05d}")
                index += 1
                try:
                    _write_new(stem + ".json", sample.to_json(indent=1).encode("utf-8"))
                except FileExistsError:
                    continue
                if os.path.exists(stem + ".png"):  # an orphan image with this number: keep it, move on
                    os.remove(stem + ".json")
                    continue
                Image.fromarray(arr).save(stem + ".png")
                saved.append(os.path.basename(stem))
                break
        msg = f"saved {len(saved)} training sample(s) to {path}: {', '.join(saved)}"
        return {"ui": {"text": [msg]}, "result": (path,)}


NODE_CLASS_MAPPINGS = {"IFASaveTrainingSample": SaveTrainingSample}
NODE_DISPLAY_NAME_MAPPINGS = {"IFASaveTrainingSample": "Save Training Sample (IFAdapter)"}
