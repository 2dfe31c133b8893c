"""InstanceDiffusion example workflows (UI format) and demo jobs.

``WORKFLOWS``: file name -> builder(node_classes) for ``scripts/make_workflows.py``; ``DEMO_JOBS`` for
``scripts/demo.py`` (run when an SD1.5 checkpoint and InstanceDiffusion weights are in the model folders).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workflow_format import build_ui_workflow  # noqa: E402

CKPT = "v1-5-pruned-emaonly.safetensors"
ID_WEIGHTS = "instancediffusion_sd15_fp16.safetensors"
LORA = "your_sd15_lora.safetensors"
CONTROLNET = "control_v11p_sd15_seg.safetensors"
NEGATIVE = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, "
            "worst quality, low quality")

BOXES = {
    "format": "instance-layout", "version": 1, "width": 512, "height": 512,
    "prompt": "a cat, a dog and a robin in a sunny garden, photograph",
    "instances": [
        {"description": "a fluffy ginger cat sitting", "label": "cat", "color": "#f58231",
         "regions": [{"kind": "box", "box": [24, 200, 236, 488]}]},
        {"description": "a black labrador dog", "label": "dog", "color": "#4363d8",
         "regions": [{"kind": "box", "box": [262, 150, 500, 490]}]},
        {"description": "a small robin with a red breast", "label": "robin", "color": "#e6194b",
         "regions": [{"kind": "box", "box": [200, 30, 300, 120]}]},
    ],
}

MIXED = {
    "format": "instance-layout", "version": 1, "width": 768, "height": 512,
    "prompt": "a still life on a wooden table, soft window light, photograph",
    "instances": [
        {"description": "a blue ceramic vase with white flowers", "label": "vase (mask)", "color": "#4363d8",
         "regions": [{"kind": "polygon", "points": [[90, 120], [200, 110], [230, 300], [200, 470], [100, 470],
                                                     [70, 300]]}]},
        {"description": "a long loaf of french bread", "label": "bread (scribble)", "color": "#f58231",
         "regions": [{"kind": "scribble", "points": [[300, 420], [380, 390], [460, 370], [560, 350], [640, 340]],
                      "width": 30}]},
        {"description": "a red apple", "label": "apple (point)", "color": "#e6194b",
         "regions": [{"kind": "point", "point": [600, 440], "width": 30}]},
        {"description": "a glass of red wine", "label": "wine (box)", "color": "#911eb4",
         "regions": [{"kind": "box", "box": [420, 120, 540, 330]}]},
    ],
}


def _graph(classes: dict, layout: dict, *, mis: bool = False, lora: bool = False, controlnet: bool = False,
           note: str = "") -> dict:
    w, h = layout["width"], layout["height"]
    model_src, clip_src = [1, 0], [1, 1]
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": [20, 40], "widgets": {"ckpt_name": CKPT}},
        {"id": 2, "type": "IFAInstanceLayout", "pos": [20, 220], "size": [500, 980],
         "widgets": {"width": w, "height": h, "layout": json.dumps(layout)}},
        {"id": 3, "type": "IFAInstanceDiffusionLoader", "pos": [540, 40],
         "widgets": {"model_name": ID_WEIGHTS}},
        {"id": 8, "type": "IFALayoutPreview", "pos": [1460, 420], "inputs": {"layout": [2, 0]},
         "widgets": {"opacity": 0.45, "legend": True}},
    ]
    if lora:
        nodes.append({"id": 12, "type": "LoraLoader", "pos": [20, 1240], "inputs": {"model": [1, 0], "clip": [1, 1]},
                      "widgets": {"lora_name": LORA, "strength_model": 0.8, "strength_clip": 0.8}})
        model_src, clip_src = [12, 0], [12, 1]
    nodes += [
        {"id": 4, "type": "CLIPTextEncode", "pos": [540, 160], "inputs": {"clip": clip_src},
         "widgets": {"text": layout["prompt"]}, "title": "global prompt"},
        {"id": 5, "type": "CLIPTextEncode", "pos": [540, 360], "inputs": {"clip": clip_src},
         "widgets": {"text": NEGATIVE}, "title": "negative"},
        {"id": 6, "type": "IFAApplyInstanceDiffusion", "pos": [880, 40],
         "inputs": {"model": model_src, "instancediffusion": [3, 0], "clip": clip_src, "layout": [2, 0]},
         "widgets": {"strength": 1.0, "alpha": 0.8, "preset": "auto", "scaleu": True}},
        {"id": 7, "type": "EmptyLatentImage", "pos": [540, 560],
         "widgets": {"width": w, "height": h, "batch_size": 1}},
    ]
    positive = [4, 0]
    if controlnet:
        nodes += [
            {"id": 13, "type": "ControlNetLoader", "pos": [880, 560], "widgets": {"control_net_name": CONTROLNET}},
            {"id": 14, "type": "IFALayoutPreview", "pos": [880, 680], "inputs": {"layout": [2, 0]},
             "widgets": {"opacity": 1.0, "legend": False}, "title": "layout as a segmentation hint"},
            {"id": 15, "type": "ControlNetApply", "pos": [1180, 560],
             "inputs": {"conditioning": [4, 0], "control_net": [13, 0], "image": [14, 0]},
             "widgets": {"strength": 0.5}},
        ]
        positive = [15, 0]
    sampler_inputs = {"model": [6, 0], "positive": positive, "negative": [5, 0], "latent_image": [7, 0]}
    common = {"seed": 0, "steps": 30, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    if mis:
        nodes.append({"id": 9, "type": "IFAInstanceDiffusionSampler", "pos": [1180, 40], "inputs": sampler_inputs,
                      "widgets": {**common, "steps": 50, "mis": 0.36, "branch_batch": 0,
                                  "schedule": "plms (official)"}})
    else:
        nodes.append({"id": 9, "type": "KSampler", "pos": [1180, 40], "inputs": sampler_inputs, "widgets": common})
    nodes += [
        {"id": 10, "type": "VAEDecode", "pos": [1460, 40], "inputs": {"samples": [9, 0], "vae": [1, 2]}},
        {"id": 11, "type": "SaveImage", "pos": [1700, 40], "size": [420, 460], "inputs": {"images": [10, 0]},
         "widgets": {"filename_prefix": "instancediffusion"}},
        {"id": 20, "type": "Note", "pos": [540, 720], "size": [320, 200], "text": note},
    ]
    return build_ui_workflow(nodes, classes)


def boxes(classes: dict) -> dict:
    return _graph(classes, BOXES, note=(
        "InstanceDiffusion with boxes (SD1.5). Put instancediffusion_sd15.pth, or the converted "
        f"{ID_WEIGHTS}, in models/instancediffusion and any SD1.5 checkpoint in models/checkpoints. "
        "alpha = fraction of the steps with the fusers on (0.8 as in the paper's demos)."))


def masks_scribbles_points(classes: dict) -> dict:
    return _graph(classes, MIXED, note=(
        "One instance per input kind: a mask (polygon), a scribble, a point and a box. preset 'auto' picks the "
        "official 'scribbles' configuration (every input kind on) because a scribble is present. Layout Preview "
        "shows the layout; tick its InstanceDiffusion view to see exactly what the model receives."))


def mis(classes: dict) -> dict:
    return _graph(classes, BOXES, mis=True, note=(
        "Multi-instance sampler: for the first 36% of the steps each instance is denoised in its own branch "
        "(its description as the prompt, only its own grounding), all branches batched in one UNet call; the "
        "branch latents are averaged once and sampling continues. Costs about (n+1)x for those steps."))


def lora_controlnet(classes: dict) -> dict:
    return _graph(classes, BOXES, lora=True, controlnet=True, note=(
        "InstanceDiffusion with a LoRA and a ControlNet in the same graph. The layout itself (Layout Preview, no "
        f"legend) is the hint of a segmentation ControlNet ({CONTROLNET}). Replace the LoRA with any SD1.5 LoRA."))


WORKFLOWS = {
    "InstanceDiffusion boxes.json": boxes,
    "InstanceDiffusion mixed inputs.json": masks_scribbles_points,
    "InstanceDiffusion MIS sampler.json": mis,
    "InstanceDiffusion + LoRA + ControlNet.json": lora_controlnet,
}


def _use_found(prompt: dict, env) -> None:
    """Point the loaders at the files that are actually there (the demo's ``needs`` guarantee they exist)."""
    for node in prompt.values():
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            files = env.folder_paths.get_filename_list("checkpoints")
            inp["ckpt_name"] = next((f for f in files if "v1-5" in f or "sd15" in f.lower()), files[0])
        elif ct == "IFAInstanceDiffusionLoader":
            files = env.folder_paths.get_filename_list("instancediffusion")
            st = [f for f in files if f.endswith(".safetensors")]
            inp["model_name"] = (st or files)[0]
        elif ct == "KSampler" or ct == "IFAInstanceDiffusionSampler":
            inp["steps"] = 20


DEMO_JOBS = [
    {"workflow": "InstanceDiffusion boxes.json", "png": "instancediffusion_boxes.png",
     "needs": [("checkpoints", "v1-5"), ("instancediffusion", "")], "patch": [_use_found]},
    {"workflow": "InstanceDiffusion mixed inputs.json",
     "png": "instancediffusion_mixed.png",
     "needs": [("checkpoints", "v1-5"), ("instancediffusion", "")], "patch": [_use_found]},
]
