"""Names and small helpers shared by the pack's nodes."""
from __future__ import annotations

import os
import random
import threading
import weakref
from collections.abc import Callable

import folder_paths
import numpy as np
import torch
from PIL import Image

# One root for the whole pack (one click in the node library, one search word); the second level says which model
# family a node works with, since IFAdapter (SDXL) and InstanceDiffusion (SD1.5) nodes never mix in one graph while
# the layout nodes serve both. docs/nodes.md explains the choice.
CATEGORY = "instance control"
CATEGORY_LAYOUT = CATEGORY + "/layout"
CATEGORY_IFADAPTER = CATEGORY + "/IFAdapter (SDXL)"
CATEGORY_INSTANCEDIFFUSION = CATEGORY + "/InstanceDiffusion (SD1.5)"
CATEGORY_UTILS = CATEGORY + "/utils"  # one-off file tools (checkpoint conversion), not part of a generation graph
LAYOUT = "INSTANCE_LAYOUT"  # socket type carrying a core.layout.Layout


def save_preview(images: torch.Tensor, prefix: str) -> list[dict]:
    """Write IMAGE previews to ComfyUI's temp folder and return the UI records that show them on the node."""
    out_dir = folder_paths.get_temp_directory()
    os.makedirs(out_dir, exist_ok=True)
    tag = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    records = []
    for i, img in enumerate(images):
        name = f"{prefix}_{tag}_{i:03d}.png"
        arr = (img.detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(out_dir, name), compress_level=1)
        records.append({"filename": name, "subfolder": "", "type": "temp"})
    return records


_LOADED: dict = {}
_LOADED_LOCK = threading.Lock()


def load_once(path: str, variant: object, load: Callable[[str], object]) -> object:
    """``load(path)``, shared: loader nodes on the same unchanged file (and ``variant``, e.g. a dtype) get the same
    object while any graph still holds it, so adapter weights are never read or held twice."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, variant)
    with _LOADED_LOCK:
        ref = _LOADED.get(key)
        obj = ref() if ref is not None else None
        if obj is None:
            obj = load(path)
            _LOADED[key] = weakref.ref(obj)
    return obj
