"""Recipe ``ifadapter`` on the tiny SDXL (``training/tiny_sdxl_file.py``)."""
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
    from training.tiny_sdxl_file import register

    register()


def _write_base(path: str) -> None:
    from training.tiny_sdxl_file import write_tiny_sdxl_checkpoint

    write_tiny_sdxl_checkpoint(path, unet_std=0.1)


def _check_trained(weights: dict, layers: int = 16, min_gate: float = 1e-3) -> None:
    gates = [float(v) for k, v in weights.items() if k.endswith(".alpha")]
    assert len(gates) == layers and min(abs(g) for g in gates) > min_gate, gates  # the zero-initialised gates trained


def _check_export(comfy, setup: dict, path, arch: str = "sdxl") -> None:
    name = f"trained_tiny_{arch}.safetensors"
    dst = comfy.models_dir / "ifadapter" / name
    dst.write_bytes(path.read_bytes())
    with safe_open(str(dst), framework="pt") as f:
        meta = f.metadata()
    assert meta["ifadapter_resampler_mask"] == "all-words"
    assert meta["ifadapter_train_steps"] == str(setup["steps"])
    assert json.loads(meta["ifadapter_train_data"])["samples"] == setup["samples"]
    assert meta["ifadapter_train_base_model_sha256"] == setup["base_sha256"]
    config = json.loads(meta["ifadapter_config"])
    assert config["family"] == arch and meta["model"] == f"ifadapter-{arch}"
    layout = {"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "shapes",
              "instances": [{"description": "a red circle", "regions": [{"kind": "box", "box": [4, 4, 40, 40]}]},
                            {"description": "a blue square", "regions": [{"kind": "box", "box": [30, 20, 60, 60]}]}]}
    g = base_graph(arch, 64, 64, steps=2, positive="shapes", negative="", save=True)
    g["ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": setup["base"].name}}
    g["lay"] = {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(layout), "file": "",
                                                               "width": 0, "height": 0}}
    g["ifa"] = {"class_type": "IFAAdapterLoader", "inputs": {"ifadapter_name": name, "dtype": "auto"}}
    g["tok"] = {"class_type": "IFAEncodeAppearanceTokens", "inputs": {"clip": ["ckpt", 1], "ifadapter": ["ifa", 0],
                                                                       "layout": ["lay", 0]}}
    g["apply"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
        "model": ["ckpt", 0], "ifadapter": ["ifa", 0], "tokens": ["tok", 0], "layout": ["lay", 0], "scale": 1.0,
        "start_percent": 0.0, "end_percent": 1.0}}
    g["sample"]["inputs"]["model"] = ["apply", 0]
    out = comfy.run(g)
    img = np.asarray(Image.open(comfy.output_path(out["save"]["images"][0])))
    assert img.shape == (64, 64, 3) and img.std() > 0
    adapter = comfy.node_class("IFAAdapterLoader")().load(name, "auto")[0]
    assert adapter.official_mask_quirk is False  # the mask mode it was trained with
    assert adapter.family.name == arch
    want = load_file(str(path))
    assert all(torch.equal(adapter.state_dict()[k], want[k]) for k in want)


FIXTURE = RecipeFixture(
    recipe="ifadapter", base_file="tiny_sdxl_train.safetensors", register=_register, write_base=_write_base,
    options={"resampler": {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2}},
    check_trained=_check_trained, check_export=_check_export)
