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
from comfy_env import GraphError
from graphs import add_ifadapter, base_graph
from PIL import Image
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


def _status_mb() -> dict:
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(d[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def run_peak(comfy, g) -> tuple[np.ndarray, float]:
    """(latent, MB the process's resident memory rose to above where it started) for one graph run."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark (VmHWM) to the current RSS
    before = _status_mb()["VmRSS"]
    out = run_latent(comfy, g)
    return out, _status_mb()["VmHWM"] - before


LONG = {"format": "instance-layout", "version": 2, "width": 512, "height": 384, "frames": 1024,
        "instances": [{"description": "a ginger cat", "regions": [], "keyframes": [
            {"frame": 0, "regions": [{"kind": "box", "box": [0, 40, 160, 300]}]},
            {"frame": 1023, "regions": [{"kind": "box", "box": [330, 80, 500, 370]}]}]}]}


def test_instancediffusion_long_layout_on_a_one_row_latent_builds_one_frame(comfy, id_file):
    """One moving box over 1,024 frames, sampled on a 1-row latent: only frame 0's input is built (before: 1,024
    inputs of ~32 MB each, twice, at Apply time; 16 frames +924 MB, 1,024 a MemoryError)."""
    video, peak = run_peak(comfy, id_graph(LONG, batch=1))
    state = _mod(comfy, "IFAApplyInstanceDiffusion").find_state(_mod(comfy, "IFATest_CaptureModel").CAPTURED["id_video"])
    assert len(state.inputs) == 1024 and sorted(state._frame_tokens) == [0, 1]  # the null row and frame 0
    assert state.position_net_runs == 2
    assert peak < 500, peak
    ref = run_latent(comfy, frame_only(id_graph(LONG, batch=1), 0))
    assert rel(video, ref) < 1e-4


# ---------------------------------------------------------------------------------------------- output nodes

ONE_BOX = {"format": "instance-layout", "version": 1, "width": 1024, "height": 1024,
           "instances": [{"description": "a cat", "regions": [{"kind": "box", "box": [0, 0, 300, 300]}]}]}


def _video_output_graph(layout, masks: dict, preview: dict) -> dict:
    lay = {"class_type": "IFAInstanceLayout", "inputs": {"width": layout["width"], "height": layout["height"],
                                                         "layout": json.dumps(layout)}}
    return {"lay": lay,
            "masks": {"class_type": "IFALayoutToMasksFrames", "inputs": {"layout": ["lay", 0], "instance": 0, **masks}},
            "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
            "msave": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_vmask"}},
            "prev": {"class_type": "IFALayoutPreviewFrames", "inputs": {"layout": ["lay", 0], "fps": 8.0,
                                                                        "opacity": 0.45, "legend": True, **preview}},
            "psave": {"class_type": "SaveImage", "inputs": {"images": ["prev", 0], "filename_prefix": "t_vprev"}}}


def test_video_output_nodes_draw_every_frame_and_refuse_over_budget_outputs(comfy):
    out = comfy.run(_video_output_graph(MOVING, {"frames": 0, "width": 64, "height": 48}, {"frames": 0}))
    masks = [np.asarray(Image.open(comfy.output_path(i))) for i in out["msave"]["images"]]
    previews = [np.asarray(Image.open(comfy.output_path(i))) for i in out["psave"]["images"]]
    assert len(masks) == len(previews) == FRAMES and masks[0].shape[:2] == (48, 64)
    assert len({p.shape for p in previews}) == 1 and previews[0].shape[1] == 512
    assert not np.array_equal(masks[0], masks[3])  # the cat moves
    # one frame of 16384 x 16384 masks (and its background): over the 268 M-value budget, refused before drawing
    with pytest.raises(GraphError, match=r"Layout to Masks over Frames: 2 outputs of 1 masks of 16384x16384 would "
                                         r"be 537 M values; at most 268 M \(1 GiB as float32\)"):
        comfy.run(_video_output_graph(ONE_BOX, {"frames": 1, "width": 16384, "height": 16384}, {"frames": 1}))
    with pytest.raises(GraphError, match=r"Layout Preview over Frames: 256 frames of 1024x1056 \(RGB\) would be 830 "
                                         r"M values; at most 268 M \(1 GiB as float32\): draw fewer frames"):
        comfy.run(_video_output_graph(ONE_BOX, {"frames": 1, "width": 8, "height": 8}, {"frames": 256}))


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
    add_ifadapter(g, json.dumps(layout), IFA_W, IFA_H, "tiny_ifa_video.safetensors", "ifa_video")
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
