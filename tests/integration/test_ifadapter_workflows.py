"""The shipped IFAdapter workflows (workflows/IFAdapter *.json) converted like the frontend's Queue does and run
in a real ComfyUI, with the real model loaders swapped for the tiny test models and a small latent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_ifadapter_compose import lora  # noqa: F401
from test_ifadapter_nodes import adapters, nonce  # noqa: F401
from workflow_format import ui_to_api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _tiny(prompt: dict, lora_name: str) -> dict:
    for nid, node in list(prompt.items()):
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            prompt[nid] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sdxl", "seed": 0}}
        elif ct == "ControlNetLoader":
            prompt[nid] = {"class_type": "IFATest_TinyControlNetLoader", "inputs": {"arch": "sdxl", "seed": 0}}
        elif ct == "LoadImage":
            prompt[nid] = {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 1,
                                                                  "color": 0x808080}}
        elif ct == "LoraLoader":
            inp["lora_name"] = lora_name
        elif ct == "IFAAdapterLoader":
            inp["ifadapter_name"] = "tiny_ifa.safetensors"
        elif ct == "EmptyLatentImage":
            inp.update(width=256, height=192)
        elif ct == "KSampler":
            inp.update(steps=2)
            sampler = nid
    prompt["lat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": [sampler, 0], "prefix": "wf"}}
    return prompt


@pytest.mark.parametrize("name", ["IFAdapter layout to image.json",
                                  "IFAdapter + LoRA + ControlNet.json",
                                  "IFAdapter official settings.json"])
def test_shipped_workflow_runs(comfy, adapters, lora, name):  # noqa: F811
    wf = json.loads((ROOT / "workflows" / name).read_text())
    prompt = ui_to_api(wf, comfy.nodes.NODE_CLASS_MAPPINGS)
    apply = [n for n in prompt.values() if n["class_type"] == "IFAApplyIFAdapter"]
    assert len(apply) == 1
    # documented defaults: control_ratio 1.0 for base SDXL, 0.3 with LoRAs
    assert apply[0]["inputs"]["end_percent"] == (0.3 if "LoRA" in name else 1.0)
    if "official" in name:  # the official pipeline: zeroed negative, euler, 30 steps, CFG 7.5, 1024x1024
        ks = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]
        assert prompt[ks["negative"][0]]["class_type"] == "ConditioningZeroOut"
        assert prompt[ks["negative"][0]]["inputs"]["conditioning"] == ks["positive"]
        assert (ks["sampler_name"], ks["steps"], ks["cfg"]) == ("euler", 30, 7.5)
        size = next(n for n in prompt.values() if n["class_type"] == "EmptyLatentImage")["inputs"]
        assert (size["width"], size["height"]) == (1024, 1024)
        tok = next(n for n in prompt.values() if n["class_type"] == "IFAEncodeAppearanceTokens")["inputs"]
        assert tok["weight_syntax"] == "keep as text (official)"
    out = comfy.run(_tiny(prompt, lora))
    from safetensors.torch import load_file

    lat = load_file(out["lat"]["text"][0])["samples"]
    assert lat.shape == (1, 4, 24, 32) and torch.isfinite(lat).all()
    saved = [i for o in out.values() for i in o.get("images", []) if i.get("type") == "output"]
    assert saved, "the workflow saves an image"
