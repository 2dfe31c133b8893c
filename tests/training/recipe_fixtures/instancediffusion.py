"""Recipe ``instancediffusion`` on the tiny SD1.5 (``training/tiny_sd15_file.py``)."""
from __future__ import annotations

import json

import numpy as np
import torch
from integration.graphs import base_graph
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from . import RecipeFixture


def _register() -> None:
    from training.tiny_sd15_file import register

    register()


def _write_base(path: str) -> None:
    from training.tiny_sd15_file import write_tiny_sd15_checkpoint

    write_tiny_sd15_checkpoint(path, unet_std=0.1)


def _check_trained(weights: dict) -> None:
    from comfy_testnodes import tiny_instancediffusion as tid

    start = tid.tiny_adapter_state(4)  # the init file's weights
    gates = [k for k in weights if k.endswith(".alpha_attn") or k.endswith(".alpha_dense")]
    moved = sorted(abs(float(weights[k]) - float(start[k])) for k in gates)
    assert len(gates) == 32 and moved[0] > 0 and moved[16] > 5e-4, moved  # every gate trained (Adam: ~lr a step)
    assert all(not torch.equal(weights[k], start[k]) for k in weights if k.startswith("scaleu_b_"))


def _check_export(comfy, setup: dict, path) -> None:
    name = "trained_tiny_id.safetensors"
    dst = comfy.models_dir / "instancediffusion" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(path.read_bytes())
    with safe_open(str(dst), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "instancediffusion-sd15-adapter" and meta["origin"] == "trained"
    assert meta["instancediffusion_train_steps"] == str(setup["steps"])
    assert json.loads(meta["instancediffusion_train_data"])["samples"] == setup["samples"]
    assert meta["instancediffusion_train_base_model_sha256"] == setup["base_sha256"]
    layout = {"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "shapes",
              "instances": [{"description": "a red circle", "regions": [{"kind": "box", "box": [4, 4, 40, 40]}]},
                            {"description": "a blue square", "regions": [
                                {"kind": "polygon", "points": [[30, 20], [60, 20], [60, 60], [30, 60]]}]}]}
    g = base_graph("sd15", 64, 64, steps=2, positive="shapes", negative="", save=True)
    g["ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": setup["base"].name}}
    g["lay"] = {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(layout), "file": "",
                                                               "width": 0, "height": 0}}
    g["idl"] = {"class_type": "IFAInstanceDiffusionLoader", "inputs": {"model_name": name}}
    g["apply"] = {"class_type": "IFAApplyInstanceDiffusion", "inputs": {
        "model": ["ckpt", 0], "instancediffusion": ["idl", 0], "clip": ["ckpt", 1], "layout": ["lay", 0],
        "strength": 1.0, "alpha": 1.0, "preset": "auto", "scaleu": True}}
    g["sample"]["inputs"]["model"] = ["apply", 0]
    out = comfy.run(g)
    img = np.asarray(Image.open(comfy.output_path(out["save"]["images"][0])))
    assert img.shape == (64, 64, 3) and img.std() > 0
    adapter = comfy.node_class("IFAInstanceDiffusionLoader")().load(name)[0]
    want = load_file(str(path))
    got = adapter.module.official_state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k].float(), want[k]) for k in want)


def _model_keys(root) -> dict:
    """Fine-tune a tiny adapter with open gates (the official use: fine-tuning instancediffusion_sd15.pth): from
    zero gates, three steps move only the gates and ScaleU, too little to show on the eval loss."""
    from comfy_testnodes import tiny_instancediffusion as tid

    path = root / "init_tiny_id.safetensors"
    if not path.exists():
        tid.write_safetensors(str(path), seed=4)
    return {"init": str(path)}


FIXTURE = RecipeFixture(
    recipe="instancediffusion", base_file="tiny_sd15_train.safetensors", register=_register, write_base=_write_base,
    # no flips and no caption drop in these short runs (both are covered by the learning test and tests/core)
    # (the from-scratch sizes are for runs without the init file, e.g. benchmarks/bench_train.py)
    options={"random_flip": False, "prob_use_caption": 1.0, "mid_dim": 64, "convnext_dims": [8, 16, 32, 64],
             "convnext_depths": [1, 1, 1, 1]},
    # three steps do not reliably lower the eval loss of the training samples here (at lr 3e-3, 1e-3 and 2e-4, from
    # scratch and fine-tuning, the held-out loss fell and the training split's rose by < 0.5 %); the learning test
    # is tests/training/test_train_instancediffusion_learning.py (hundreds of steps, instance input vs zeroed)
    train={"lr": 1e-3, "ema_decay": 0.0}, model_keys=_model_keys, check_trained=_check_trained, check_export=_check_export,
    learns_in_three_steps=False)
