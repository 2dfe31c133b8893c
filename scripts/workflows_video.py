"""Layouts over time (video) example workflow (UI format): a moving instance over a 16-frame batch.

``WORKFLOWS``: file name -> builder(node_classes) for ``scripts/make_workflows.py``. The file is named
``InstanceDiffusion *.json`` so that the shipped-workflow test runs it with the tiny models.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workflow_format import build_ui_workflow  # noqa: E402

CKPT = "v1-5-pruned-emaonly.safetensors"
ID_WEIGHTS = "instancediffusion_sd15_fp16.safetensors"
FRAMES = 16

VIDEO_LAYOUT = {
    "format": "instance-layout", "version": 2, "width": 512, "height": 512, "frames": FRAMES,
    "prompt": "a cat chasing a butterfly across a sunny meadow, photograph",
    "instances": [
        {"description": "a fluffy ginger cat running", "label": "cat", "color": "#f58231",
         "regions": [{"kind": "box", "box": [10, 250, 200, 480]}],  # = frame 0; older readers and thumbnails
         "keyframes": [
             {"frame": 0, "regions": [{"kind": "box", "box": [10, 250, 200, 480]}]},
             {"frame": 8, "regions": [{"kind": "box", "box": [150, 230, 350, 470]}]},
             {"frame": 15, "regions": [{"kind": "box", "box": [300, 250, 500, 490]}]}]},
        {"description": "a blue butterfly with open wings", "label": "butterfly", "color": "#4363d8",
         "frames": [4, None], "regions": [{"kind": "box", "box": [220, 60, 300, 130]}],
         "keyframes": [
             {"frame": 4, "regions": [{"kind": "box", "box": [220, 60, 300, 130]}]},
             {"frame": 15, "regions": [{"kind": "box", "box": [400, 120, 490, 200]}]}]},
        {"description": "tall grass and wild flowers", "label": "grass", "color": "#3cb44b",
         "regions": [{"kind": "box", "box": [0, 400, 512, 512]}]},
    ],
}


def video(classes: dict) -> dict:
    w, h = VIDEO_LAYOUT["width"], VIDEO_LAYOUT["height"]
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": [20, 40], "widgets": {"ckpt_name": CKPT}},
        {"id": 2, "type": "IFAInstanceLayout", "pos": [20, 220], "size": [500, 980],
         "widgets": {"width": w, "height": h, "layout": json.dumps(VIDEO_LAYOUT)}},
        {"id": 3, "type": "IFAInstanceDiffusionLoader", "pos": [540, 40], "widgets": {"model_name": ID_WEIGHTS}},
        {"id": 4, "type": "CLIPTextEncode", "pos": [540, 160], "inputs": {"clip": [1, 1]},
         "widgets": {"text": VIDEO_LAYOUT["prompt"]}, "title": "global prompt"},
        {"id": 5, "type": "CLIPTextEncode", "pos": [540, 360], "inputs": {"clip": [1, 1]},
         "widgets": {"text": "lowres, bad anatomy, worst quality, low quality"}, "title": "negative"},
        {"id": 6, "type": "IFAApplyInstanceDiffusion", "pos": [880, 40],
         "inputs": {"model": [1, 0], "instancediffusion": [3, 0], "clip": [1, 1], "layout": [2, 0]},
         "widgets": {"strength": 1.0, "alpha": 0.8, "preset": "auto", "scaleu": True}},
        {"id": 7, "type": "EmptyLatentImage", "pos": [540, 560],
         "widgets": {"width": w, "height": h, "batch_size": FRAMES}, "title": "one latent per frame"},
        {"id": 9, "type": "KSampler", "pos": [1180, 40],
         "inputs": {"model": [6, 0], "positive": [4, 0], "negative": [5, 0], "latent_image": [7, 0]},
         "widgets": {"seed": 0, "steps": 25, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1.0}},
        {"id": 10, "type": "VAEDecode", "pos": [1460, 40], "inputs": {"samples": [9, 0], "vae": [1, 2]}},
        {"id": 11, "type": "SaveImage", "pos": [1700, 40], "size": [420, 460], "inputs": {"images": [10, 0]},
         "widgets": {"filename_prefix": "instancediffusion_video"}},
        {"id": 12, "type": "IFALayoutPreviewFrames", "pos": [880, 420], "inputs": {"layout": [2, 0]},
         "widgets": {"frames": 0, "fps": 8.0, "opacity": 0.45, "legend": True}},
        {"id": 20, "type": "Note", "pos": [540, 720], "size": [320, 240], "text": (
            "A layout over time: the cat moves along three keyframes, the butterfly appears on frame 4, the grass "
            "is the same on every frame. Batch row i of the latent is frame i. Layout Preview over Frames plays "
            "the layout. For a coherent video, put AnimateDiff-Evolved between Apply InstanceDiffusion and "
            "KSampler (its context windows are supported: each window gets its own frames' grounding); the same "
            "layout drives Apply IFAdapter on SDXL.")},
    ]
    return build_ui_workflow(nodes, classes)


WORKFLOWS = {"InstanceDiffusion video.json": video}
