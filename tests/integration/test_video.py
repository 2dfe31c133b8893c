"""Layouts over time in a real ComfyUI: both Apply nodes on a batch of frames with a moving instance.

Batch row i is frame i. The reference for frame f is a separate run of the static layout of that frame (Layout at
Frame) on a one-row latent taken from the same batch (LatentFromBatch keeps the row's noise): the video run's row f
must match it, and differ from the other frames' references. Context windows (a test node exposing each window the
way AnimateDiff-Evolved and ComfyUI do) must give the same result as the full batch.
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
from graphs import base_graph
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

FRAMES = 4
MOVING = {
    "format": "instance-layout", "version": 2, "width": 512, "height": 384, "prompt": "a cat and a dog",
    "frames": FRAMES,
    "instances": [
        {"description": "a ginger cat", "regions": [], "keyframes": [
            {"frame": 0, "regions": [{"kind": "box", "box": [0, 40, 160, 300]}]},
            {"frame": 3, "regions": [{"kind": "box", "box": [330, 80, 500, 370]}]}]},
        {"description": "a black dog", "regions": [{"kind": "box", "box": [200, 10, 400, 200]}], "frames": [1, 2]},
    ],
}


def _mod(comfy, node_type):
    return sys.modules[comfy.node_class(node_type).__module__]


def save_latent(g: dict) -> dict:
    g["lat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": "video"}}
    return g


def run_latent(comfy, g) -> np.ndarray:
    return load_file(comfy.run(save_latent(g))["lat"]["text"][0])["samples"].numpy()


def frame_only(g: dict, frame: int, layout_node: str = "lay") -> dict:
    """The same graph on row ``frame`` of the batch (same noise) with the static layout of that frame."""
    g["one"] = {"class_type": "LatentFromBatch", "inputs": {"samples": ["latent", 0], "batch_index": frame,
                                                           "length": 1}}
    g["sample"]["inputs"]["latent_image"] = ["one", 0]
    g["atf"] = {"class_type": "IFALayoutAtFrame", "inputs": {"layout": [layout_node, 0], "frame": frame}}
    for node in g.values():
        for k, v in node["inputs"].items():
            if v == [layout_node, 0] and node is not g["atf"]:
                node["inputs"][k] = ["atf", 0]
    return g


def windows(g: dict, spec: str, expose: str) -> dict:
    g["win"] = {"class_type": "IFATest_ContextWindows", "inputs": {"model": g["sample"]["inputs"]["model"],
                                                                  "windows": spec, "expose": expose}}
    g["sample"]["inputs"]["model"] = ["win", 0]
    return g


def rel(a, b) -> float:
    return float(np.abs(a - b).mean() / (np.abs(b).mean() + 1e-12))


def check_frames(comfy, make_graph, video: np.ndarray) -> None:
    refs = [run_latent(comfy, frame_only(make_graph(), f))[0] for f in range(FRAMES)]
    for f in range(FRAMES):
        own = rel(video[f], refs[f])
        others = [rel(video[f], refs[g]) for g in range(FRAMES) if g != f]
        assert own < 1e-4, (f, own)  # batched vs one row: float noise only
        assert min(others) > 20 * max(own, 1e-7), (f, own, others)  # every frame's grounding is its own


def check_windows(comfy, make_graph, video: np.ndarray) -> None:
    errs = []
    for spec, expose in (("2,0;3,1", "animatediff"), ("1,3;0,2", "comfy")):
        win = run_latent(comfy, windows(make_graph(), spec, expose))
        errs.append(rel(win, video))
        assert errs[-1] < 1e-4, (spec, expose)
    hidden = run_latent(comfy, windows(make_graph(), "2,0;3,1", "hidden"))  # frames then read by batch position
    assert rel(hidden, video) > 20 * max(*errs, 1e-8), (rel(hidden, video), errs)


# ---------------------------------------------------------------------------------------------- InstanceDiffusion


@pytest.fixture(scope="module")
def id_file(comfy):
    from comfy_testnodes import tiny_instancediffusion as tid

    tid.write_safetensors(str(comfy.models_dir / "instancediffusion" / "tiny_id_video.safetensors"))
    return "tiny_id_video.safetensors"


def id_graph(layout=MOVING, cfg=5.0, batch=FRAMES) -> dict:
    g = base_graph("sd15", width=192, height=128, steps=3, batch=batch, seed=3, cfg=cfg, save=False)
    g["lay"] = {"class_type": "IFAInstanceLayout",
                "inputs": {"width": layout["width"], "height": layout["height"], "layout": json.dumps(layout)}}
    g["idl"] = {"class_type": "IFAInstanceDiffusionLoader", "inputs": {"model_name": "tiny_id_video.safetensors"}}
    g["apply"] = {"class_type": "IFAApplyInstanceDiffusion", "inputs": {
        "model": ["ckpt", 0], "instancediffusion": ["idl", 0], "clip": ["ckpt", 1], "layout": ["lay", 0],
        "strength": 1.0, "alpha": 1.0, "preset": "auto", "scaleu": True}}
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "id_video"}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    return g


def test_instancediffusion_each_frame_follows_its_own_layout(comfy, id_file):
    video = run_latent(comfy, id_graph())
    assert video.shape[0] == FRAMES
    state = _mod(comfy, "IFAApplyInstanceDiffusion").find_state(_mod(comfy, "IFATest_CaptureModel").CAPTURED["id_video"])
    assert state.position_net_runs == 2  # null row + all 4 distinct frames in one pass, once for the whole run
    table = state._tokens[next(iter(state._tokens))]
    assert table.shape[0] == 1 + 4 and not any(bool((table[i] == table[i + 1]).all()) for i in range(1, 4))
    # CFG routing: negative rows read the null row 0, positive row f reads frame f's row 1 + f, in chunk order
    for (cou, batch, _, frames), idx in state._rows.items():
        per = batch // len(cou)
        expect = [0 if cou[r // per] == 1 else 1 + frames[r % per] for r in range(batch)]
        assert idx.tolist() == expect
    assert {k[0] for k in state._rows} and all(k[3] == (0, 1, 2, 3) for k in state._rows)
    check_frames(comfy, id_graph, video)
    check_windows(comfy, id_graph, video)


def test_instancediffusion_static_layout_is_unchanged_and_extra_frames_hold(comfy, id_file, caplog):
    static = {k: v for k, v in MOVING.items() if k != "frames"}
    static["version"] = 1
    static["instances"] = [{"description": "a ginger cat", "regions": [{"kind": "box", "box": [0, 40, 160, 300]}]}]
    frozen = json.loads(json.dumps(static))
    frozen["version"] = 2
    frozen["frames"] = 2  # time-aware but identical on every frame: one distinct frame
    a = run_latent(comfy, id_graph(static, batch=3))
    with caplog.at_level(logging.WARNING, logger="comfyui-ifadapter"):
        b = run_latent(comfy, id_graph(frozen, batch=3, cfg=5.0000001))
    assert rel(a, b) < 1e-4
    warnings = [r.getMessage() for r in caplog.records if "covers 2 frame(s) but the batch has at least 3" in r.getMessage()]
    assert len(warnings) == 1


# ---------------------------------------------------------------------------------------------- IFAdapter

IFA_W, IFA_H = 256, 192


@pytest.fixture(scope="module")
def ifa_file(comfy):
    write = _mod(comfy, "IFATest_SaveLatentTensor").write_tiny_ifadapter
    write(str(comfy.models_dir / "ifadapter" / "tiny_ifa_video.safetensors"), seed=0, alpha=0.5)
    return "tiny_ifa_video.safetensors"


def ifa_layout() -> dict:
    lay = json.loads(json.dumps(MOVING))
    lay["width"], lay["height"] = IFA_W, IFA_H
    lay["instances"][0]["keyframes"] = [
        {"frame": 0, "regions": [{"kind": "box", "box": [0, 10, 90, 150]}]},
        {"frame": 3, "regions": [{"kind": "box", "box": [150, 40, 256, 190]}]}]
    lay["instances"][1]["regions"] = [{"kind": "box", "box": [100, 0, 200, 100]}]
    return lay


def ifa_graph(layout=None, batch=FRAMES) -> dict:
    layout = layout or ifa_layout()
    g = base_graph("sdxl", IFA_W, IFA_H, steps=2, seed=5, positive="a street", negative="blurry", batch=batch,
                   save=False)
    g["lay"] = {"class_type": "IFAInstanceLayout",
                "inputs": {"width": IFA_W, "height": IFA_H, "layout": json.dumps(layout)}}
    g["ifa"] = {"class_type": "IFAAdapterLoader", "inputs": {"ifadapter_name": "tiny_ifa_video.safetensors",
                                                            "dtype": "auto"}}
    g["tok"] = {"class_type": "IFAEncodeAppearanceTokens",
                "inputs": {"clip": ["ckpt", 1], "ifadapter": ["ifa", 0], "layout": ["lay", 0]}}
    g["apply"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
        "model": ["ckpt", 0], "ifadapter": ["ifa", 0], "tokens": ["tok", 0], "layout": ["lay", 0],
        "scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "ifa_video"}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    return g


def test_ifadapter_each_frame_follows_its_own_layout(comfy, ifa_file):
    video = run_latent(comfy, ifa_graph())
    model = _mod(comfy, "IFATest_CaptureModel").CAPTURED["ifa_video"]
    layers = [c for p in model.model_options["transformer_options"]["patches_replace"]["attn2"].values()
              for c in p.contributions]
    runtime = layers[0].runtime
    assert len(layers) == 16 and all(lay.runtime is runtime for lay in layers)
    assert runtime.tokens.distinct == 4
    # the patched layers saw a different semantic map per row: per-frame cells, the dog only on frames 1 and 2
    geos = [g for k, g in runtime._geometry.items() if len(k[2]) == 2 * FRAMES]
    assert geos
    for geo in geos:
        cells = geo.cells.flatten(2)
        assert not any(bool(torch_equal(cells[f], cells[f + 1])) for f in range(FRAMES - 1))
        assert geo.valid[:FRAMES, 1].tolist() == [False, True, True, False]
        assert torch_equal(geo.cells[:FRAMES], geo.cells[FRAMES:])  # cond and uncond chunk: the same frames
    check_frames(comfy, ifa_graph, video)
    check_windows(comfy, ifa_graph, video)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
