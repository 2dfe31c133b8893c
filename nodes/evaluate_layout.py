"""The Evaluate Layout node: score a generated image against its layout inside the graph (issue 15 item 5).

A few lines over ``evaluate.layout_check`` (the metrics) and ``evaluate.overlay`` (the picture). The models are
folders under ``ComfyUI/models/detection``, ``models/clip`` and ``models/vlm`` (plus ``extra_model_paths.yaml``
entries of those names), listed like other model inputs; a hub name from the list is downloaded into
``models/<kind>/owner--name`` only when ``allow_download`` is on (off by default: a shared server never fetches
on a prompt's say). docs/evaluation.md, "The Evaluate Layout node".
"""
from __future__ import annotations

import json
import logging
import os

import folder_paths
import numpy as np
import torch

from ..core.layout.timeline import at_frame
from ..core.paths import contained_path
from ..core.render import to_comfy_image
from .common import CATEGORY, LAYOUT, load_once, save_preview

log = logging.getLogger("comfyui-ifadapter")

CATEGORY_EVALUATION = CATEGORY + "/evaluation"
KINDS = ("detection", "clip", "vlm")
NONE = "none"
# Hub names offered for download (allow_download); any local folder is listed as well.
HUB_MODELS = {
    "detection": ("IDEA-Research/grounding-dino-tiny", "google/owlv2-base-patch16-ensemble"),
    "clip": ("openai/clip-vit-large-patch14", "google/siglip-so400m-patch14-384"),
    "vlm": ("Qwen/Qwen2-VL-2B-Instruct",),
}


def register_eval_folders() -> None:
    """``models/detection``, ``models/clip``, ``models/vlm`` as ComfyUI model folders (``clip`` already is)."""
    for kind in KINDS:
        default = os.path.join(folder_paths.models_dir, kind)
        try:
            paths = folder_paths.get_folder_paths(kind)
        except KeyError:
            folder_paths.folder_names_and_paths[kind] = ([default], set())
            continue
        if default not in paths:
            folder_paths.add_model_folder_path(kind, default)


def model_folders(kind: str) -> list[str]:
    try:
        return list(folder_paths.get_folder_paths(kind))
    except KeyError:
        return []


def local_models(kind: str) -> list[str]:
    """Names of the model folders (holding a ``config.json``) directly under the ``kind`` folders, sorted."""
    names = set()
    for folder in model_folders(kind):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for e in entries[:10000]:
            if os.path.isfile(os.path.join(folder, e, "config.json")):
                names.add(e)
    return sorted(names)


def model_choices(kind: str) -> list[str]:
    """"none", the local folders, then the hub names (kept after a download, so saved workflows stay valid)."""
    local = local_models(kind)
    return [NONE, *local, *[h for h in HUB_MODELS[kind] if h not in local]]


def resolve(kind: str, name: str, allow_download: bool) -> str:
    """The folder of model ``name`` of ``kind``: looked up in every registered folder (contained), else downloaded
    when allowed, else the ModelNotFound that names where it goes."""
    for folder in model_folders(kind):
        for candidate in dict.fromkeys((name, name.replace("/", "--"))):
            real = contained_path(folder, candidate)
            if real is not None and os.path.isdir(real):
                return real
    folders = model_folders(kind)
    first = folders[0] if folders else os.path.join(folder_paths.models_dir, kind)
    root = os.path.dirname(first) if os.path.basename(os.path.normpath(first)) == kind else folder_paths.models_dir
    from ..evaluate.models.paths import resolve_model

    return resolve_model(name, kind, root, allow_download=allow_download)


def _device() -> str:
    import comfy.model_management as mm

    return str(mm.get_torch_device())


def load_model(kind: str, name: str, allow_download: bool, threshold: float):
    """The evaluation model ``name`` of ``kind`` (shared while any graph holds it), on ComfyUI's device."""
    from ..evaluate.models.clip import ClipEmbedder
    from ..evaluate.models.detector import GroundedDetector
    from ..evaluate.models.vlm import VlmVerifier

    path = resolve(kind, name, allow_download)
    device = _device()
    fp16 = device.startswith("cuda")
    if kind == "detection":
        return load_once(path, ("detection", device, threshold), lambda p: GroundedDetector(
            p, allow_path=True, device=device, fp16=fp16, threshold=threshold))
    cls = ClipEmbedder if kind == "clip" else VlmVerifier
    return load_once(path, (kind, device), lambda p: cls(p, allow_path=True, device=device, fp16=fp16))


def _uint8(images: torch.Tensor) -> list[np.ndarray]:
    arr = (images[..., :3].detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return list(arr)


def _stack(pictures: list[np.ndarray]) -> torch.Tensor:
    """One IMAGE batch of overlays of possibly different heights (legends), padded at the bottom."""
    h = max(p.shape[0] for p in pictures)
    padded = [np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 0.1, np.float32)]) for p in pictures]
    return torch.cat([to_comfy_image(p) for p in padded])


class EvaluateLayout:
    """Score IMAGE against the LAYOUT it was generated from: what came out where it was asked for."""

    DESCRIPTION = ("Checks a generated image against its layout, instance by instance: a detector (Grounding "
                   "DINO / OWLv2) looks for each instance's category and gives box AP and per-instance hit / miss "
                   "(IoU >= 0.5 with its box); a CLIP model scores each instance's crop against its description "
                   "and the image against the prompt; a VLM (with a detector) answers whether each found crop "
                   "shows its description (the IFAdapter paper's IFS rate). Models come from models/detection, "
                   "models/clip and models/vlm. Returns a text report, the JSON scores and an overlay picture.")

    @classmethod
    def INPUT_TYPES(cls):
        def combo(kind, tip):
            return (model_choices(kind), {"default": NONE, "tooltip": tip})

        return {"required": {
            "image": ("IMAGE", {"tooltip": "The generated image(s), at most 64; each must have its layout's "
                                           "aspect ratio (any size: the layout is scaled to it)."}),
            "layout": (LAYOUT, {"tooltip": "The layout the image was generated from. A layout over time is "
                                           "resolved to frame i for image i of the batch."}),
            "detector": combo("detection", "Grounding DINO or OWLv2 folder in models/detection: box AP, "
                                           "localisation and the hit / miss marks. 'none' skips them."),
            "clip": combo("clip", "CLIP or SigLIP folder in models/clip: instance and image CLIP scores, "
                                  "attribute binding. 'none' skips them."),
            "vlm": combo("vlm", "Image-text-to-text model folder in models/vlm (Qwen2-VL, LLaVA, ...): verifies "
                                "each localised instance (IFS). Needs a detector."),
            "detection_threshold": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.01,
                                              "tooltip": "Minimum detector score (0 to 1) of a box to count; "
                                                         "lower finds more and mismatches more."}),
            "allow_download": ("BOOLEAN", {"default": False,
                                           "tooltip": "Download a hub model from the list into models/<kind> on "
                                                      "first use. Off: only local folders are used."}),
        }}

    RETURN_TYPES = ("STRING", "STRING", "IMAGE")
    RETURN_NAMES = ("report", "scores_json", "overlay")
    OUTPUT_TOOLTIPS = ("The scores as a few lines of text, one line per instance.",
                       "Every score as JSON: summary, per-instance records, detections, model names, versions.",
                       "The image with the layout, the detections and each instance marked hit (green) or miss "
                       "(red), a legend below.")  # fmt: skip
    FUNCTION = "evaluate"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_EVALUATION

    def evaluate(self, image, layout, detector, clip, vlm, detection_threshold, allow_download):
        try:  # the evaluation dependencies (requirements-eval.txt) are only needed when the node runs
            from ..evaluate.layout_check import MAX_IMAGES, score, summary_text
            from ..evaluate.overlay import draw_overlay
        except ModuleNotFoundError as e:
            raise RuntimeError(f"Evaluate Layout needs the Python package {e.name!r}: run pip install -r "
                               "requirements-eval.txt in the pack's folder and restart ComfyUI") from None
        if image.shape[0] > MAX_IMAGES:
            raise ValueError(f"Evaluate Layout scores at most {MAX_IMAGES} images at a time, got {image.shape[0]}")
        images = _uint8(image)
        layouts = [at_frame(layout, i) if layout.timed else layout for i in range(len(images))]
        chosen = {"detection": detector, "clip": clip, "vlm": vlm}
        models = {k: (None if v == NONE else load_model(k, v, allow_download, float(detection_threshold)))
                  for k, v in chosen.items()}  # fmt: skip
        report = score(layouts, images, detector=models["detection"], clip=models["clip"], vlm=models["vlm"],
                       names={k: v for k, v in chosen.items() if v != NONE})
        pictures = [draw_overlay(lay, im, [r for r in report["instances"] if r["image"] == i],
                                 report["detections"][i - 1])
                    for i, (lay, im) in enumerate(zip(layouts, images), start=1)]  # fmt: skip
        overlay = _stack(pictures)
        text = summary_text(report)
        scores = json.dumps(report, allow_nan=False)
        # the scores also go to the history, so an API client reads them without a text-saving node
        return {"ui": {"images": save_preview(overlay, "ifa_eval"), "text": [text], "scores": [scores]},
                "result": (text, scores, overlay)}


register_eval_folders()

NODE_CLASS_MAPPINGS = {"IFAEvaluateLayout": EvaluateLayout}
NODE_DISPLAY_NAME_MAPPINGS = {"IFAEvaluateLayout": "Evaluate Layout"}
