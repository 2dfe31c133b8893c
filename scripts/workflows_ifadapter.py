"""IFAdapter example workflows (UI format) and the main-job demo entries.

- ``IFAdapter layout to image.json``: SDXL base + IFAdapter (control_ratio 1.0, the official default for
  base SDXL);
- ``IFAdapter + LoRA + ControlNet.json``: SDXL + LoRA + ControlNet + IFAdapter (end_percent 0.3, the
  official default with LoRAs);
- ``IFAdapter official settings.json``: the official pipeline's settings: the negative is the global prompt's
  encoding zeroed (``ConditioningZeroOut``: zero prompt embeds and zero pooled, as the official uncond), euler,
  30 steps, CFG 7.5, 1024x1024, descriptions read as plain text.

(File names are the titles ComfyUI's template browser shows.)

The first two use the example layout of ``scripts/make_workflows.py`` at 1024x768, 30 steps, euler, CFG 7.5
(the paper's settings), and show the instance semantic map the adapter will use.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workflow_format import build_ui_workflow  # noqa: E402


def _example_layout() -> dict:
    spec = importlib.util.spec_from_file_location("_mw", Path(__file__).parent / "make_workflows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.EXAMPLE_LAYOUT


NEGATIVE = "blurry, low quality, deformed, watermark, text"


def _nodes(lora: bool, official: bool = False) -> list[dict]:
    layout = _example_layout()
    w, h = (1024, 1024) if official else (layout["width"], layout["height"])  # the layout node rescales the layout
    model_src, clip_src = [1, 0], [1, 1]
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": [40, 60], "size": [380, 100],
         "widgets": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        {"id": 2, "type": "IFAInstanceLayout", "pos": [40, 220], "size": [520, 980],
         "widgets": {"width": w, "height": h, "layout": json.dumps(layout)}},
        {"id": 3, "type": "IFAAdapterLoader", "pos": [600, 60], "size": [340, 90],
         "widgets": {"ifadapter_name": "spd_adapter.safetensors", "dtype": "auto"}},
    ]
    if lora:
        nodes.append({"id": 20, "type": "LoraLoader", "pos": [440, 60], "size": [320, 130],
                      "inputs": {"model": [1, 0], "clip": [1, 1]},
                      "widgets": {"lora_name": "your_sdxl_lora.safetensors", "strength_model": 0.8,
                                  "strength_clip": 0.8}})
        model_src, clip_src = [20, 0], [20, 1]
    nodes += [
        {"id": 4, "type": "IFAEncodeAppearanceTokens", "pos": [600, 200], "size": [340, 80],
         "inputs": {"clip": clip_src, "ifadapter": [3, 0], "layout": [2, 0]},
         "widgets": {"weight_syntax": "keep as text (official)"}},
        {"id": 5, "type": "IFAApplyIFAdapter", "pos": [980, 60], "size": [340, 200],
         "inputs": {"model": model_src, "ifadapter": [3, 0], "tokens": [4, 0], "layout": [2, 0]},
         "widgets": {"scale": 1.0, "start_percent": 0.0, "end_percent": 0.3 if lora else 1.0}},
        {"id": 6, "type": "CLIPTextEncode", "pos": [600, 320], "size": [340, 120], "title": "global prompt",
         "inputs": {"clip": clip_src}, "widgets": {"text": layout["prompt"]}},
        {"id": 7, "type": "ConditioningZeroOut", "pos": [600, 480], "size": [340, 60],
         "title": "negative: zeroed (official)", "inputs": {"conditioning": [6, 0]}}
        if official else
        {"id": 7, "type": "CLIPTextEncode", "pos": [600, 480], "size": [340, 120], "title": "negative",
         "inputs": {"clip": clip_src}, "widgets": {"text": NEGATIVE}},
        {"id": 8, "type": "EmptyLatentImage", "pos": [600, 640], "size": [340, 110],
         "widgets": {"width": w, "height": h, "batch_size": 1}},
        {"id": 9, "type": "KSampler", "pos": [1360, 60], "size": [320, 270],
         "inputs": {"model": [5, 0], "positive": [6, 0], "negative": [7, 0], "latent_image": [8, 0]},
         "widgets": {"seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1.0}},
        {"id": 10, "type": "VAEDecode", "pos": [1720, 60], "inputs": {"samples": [9, 0], "vae": [1, 2]}},
        {"id": 11, "type": "SaveImage", "pos": [1720, 180], "size": [520, 440], "inputs": {"images": [10, 0]},
         "widgets": {"filename_prefix": "ifadapter_official" if official else "ifadapter"}},
        {"id": 12, "type": "IFABuildSemanticMap", "pos": [980, 320], "size": [340, 100],
         "inputs": {"layout": [2, 0], "latent": [8, 0]}, "widgets": {"level": "latent/4 (IFAdapter layers)"}},
        {"id": 13, "type": "PreviewImage", "pos": [980, 460], "size": [340, 300], "inputs": {"images": [12, 1]}},
    ]
    if lora:
        nodes += [
            {"id": 21, "type": "ControlNetLoader", "pos": [440, 1240], "size": [320, 80],
             "widgets": {"control_net_name": "your_sdxl_controlnet.safetensors"}},
            {"id": 22, "type": "LoadImage", "pos": [40, 1240], "size": [320, 320],
             "widgets": {"image": "controlnet_hint.png"}},
            {"id": 23, "type": "ControlNetApply", "pos": [980, 800], "size": [320, 100],
             "inputs": {"conditioning": [6, 0], "control_net": [21, 0], "image": [22, 0]},
             "widgets": {"strength": 0.6}},
        ]
        nodes[[n["id"] for n in nodes].index(9)]["inputs"]["positive"] = [23, 0]
    note = ("IFAdapter (SDXL): put spd_adapter.bin or its .safetensors conversion in models/ifadapter. Each "
            "instance of the layout gets appearance tokens from its description; Apply IFAdapter injects them in 16 "
            "cross-attention layers. end_percent = official control_ratio: 1.0 for base SDXL")
    note += (", 0.3 with LoRAs / community checkpoints (used here)." if lora else ", 0.3 with LoRAs.")
    if official:
        note += (" Official settings: negative = the prompt's encoding zeroed (ConditioningZeroOut), euler, 30 "
                 "steps, CFG 7.5, 1024x1024, descriptions tokenised as plain text (weight_syntax official).")
    nodes.append({"id": 30, "type": "Note", "pos": [40, 1600 if lora else 1240], "size": [520, 140], "text": note})
    return nodes


def sdxl_workflow(classes: dict) -> dict:
    return build_ui_workflow(_nodes(lora=False), classes)


def lora_controlnet_workflow(classes: dict) -> dict:
    return build_ui_workflow(_nodes(lora=True), classes)


def official_settings_workflow(classes: dict) -> dict:
    return build_ui_workflow(_nodes(lora=False, official=True), classes)


WORKFLOWS = {
    "IFAdapter layout to image.json": sdxl_workflow,
    "IFAdapter + LoRA + ControlNet.json": lora_controlnet_workflow,
    "IFAdapter official settings.json": official_settings_workflow,
}


def _first(env, folder: str, want: str = "", prefer: str = ".safetensors") -> str | None:
    try:
        files = env.folder_paths.get_filename_list(folder)
    except KeyError:
        return None
    hits = [f for f in files if want.lower() in f.lower()]
    hits.sort(key=lambda f: (not f.endswith(prefer), "spd_adapter" not in f, f))
    return hits[0] if hits else None


def _point_loaders(prompt: dict, env) -> None:
    """Use the SDXL checkpoint and IFAdapter file that were found in the model folders."""
    for node in prompt.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = _first(env, "checkpoints", "xl")
        elif node["class_type"] == "IFAAdapterLoader":
            node["inputs"]["ifadapter_name"] = _first(env, "ifadapter")


DEMO_JOBS = [
    {"workflow": "IFAdapter layout to image.json", "png": "ifadapter_sdxl.png",
     "needs": [("checkpoints", "xl"), ("ifadapter", "")], "patch": [_point_loaders]},
]
