"""Save Training Sample: an image and its layout, written in the IFAdapter trainer's dataset format.

Users build datasets from their own graphs: every image of the batch becomes ``<name>.png`` next to ``<name>.json``
(the layout, scaled to the image size) in a folder under ComfyUI's output folder, which ``python -m train.ifadapter``
reads directly (docs/training.md). Existing files are never overwritten: the next free number is taken.
"""
from __future__ import annotations

import io
import os
import re

import folder_paths
import numpy as np
from PIL import Image

from ..core.layout import Layout
from ..core.paths import create_new, open_beneath
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
    try:
        path = os.path.realpath(os.path.join(out, rel))
    except OSError:  # a link swapped for a folder under realpath
        path = out
    if os.path.commonpath([out, path]) != out or path == out:
        raise ValueError(f"folder {folder!r} leaves ComfyUI's output folder; use a sub-folder such as "
                         "'ifadapter_dataset/my_set'")
    return path


def _open_folder(path: str) -> int | None:
    """A descriptor of the dataset folder, opened from the output folder without following a symlink at any step
    (a folder swapped for a link after ``dataset_folder`` looked is refused); None where the platform has no
    directory descriptors."""
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return None
    try:
        return open_beneath(os.path.realpath(folder_paths.get_output_directory()), path,
                            os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise ValueError(f"folder {path!r} changed while saving (a symlink appeared in it); nothing was "
                         "written") from None


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


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
        dfd = _open_folder(path)
        try:
            saved = self._save_all(images, layout, path, dfd, prefix)
        finally:
            if dfd is not None:
                os.close(dfd)
        msg = f"saved {len(saved)} training sample(s) to {path}: {', '.join(saved)}"
        return {"ui": {"text": [msg]}, "result": (path,)}

    @staticmethod
    def _save_all(images, layout: Layout, path: str, dfd: int | None, prefix: str) -> list[str]:
        """Write each image and its layout as the next free pair of numbers. Both files are created with
        ``O_EXCL | O_NOFOLLOW`` in the opened folder: an existing entry of either name (a dangling symlink
        included) is never written through; the number is skipped."""
        saved, index = [], 1
        for img in images:
            arr = (img.detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            h, w = arr.shape[:2]
            sample = layout.scaled(w, h) if (layout.width, layout.height) != (w, h) else layout
            while True:
                if index > MAX_INDEX:
                    raise ValueError(f"{path} already holds {MAX_INDEX} samples named {prefix}_*; choose another "
                                     "prefix or folder")
                stem = f"{prefix}_{index:05d}"
                index += 1
                try:
                    create_new(dfd, path, stem + ".json", sample.to_json(indent=1).encode("utf-8"))
                except FileExistsError:
                    continue
                try:
                    create_new(dfd, path, stem + ".png", _png(arr))
                except FileExistsError:  # an orphan image (or a link) with this number: keep it, move on
                    if dfd is None:
                        os.unlink(os.path.join(path, stem + ".json"))
                    else:
                        os.unlink(stem + ".json", dir_fd=dfd)
                    continue
                saved.append(stem)
                break
        return saved


NODE_CLASS_MAPPINGS = {"IFASaveTrainingSample": SaveTrainingSample}
NODE_DISPLAY_NAME_MAPPINGS = {"IFASaveTrainingSample": "Save Training Sample (IFAdapter)"}
