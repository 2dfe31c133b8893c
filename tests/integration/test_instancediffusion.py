"""InstanceDiffusion in a real ComfyUI: full graphs with the tiny SD1.5-layout UNet and a random-weight adapter of
matching widths, loaded from files through the pack's own loader node."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from comfy_env import GraphError
from graphs import base_graph
from PIL import Image
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

W, H = 192, 128  # non-square, non-512: latent 24x16

LAYOUT = {
    "format": "instance-layout", "version": 1, "width": 512, "height": 384, "prompt": "a cat and a dog",
    "instances": [
        {"description": "a ginger cat", "regions": [{"kind": "box", "box": [20, 100, 240, 360]}]},
        {"description": "a black dog", "regions": [{"kind": "box", "box": [280, 60, 500, 370]}]},
    ],
}
KINDS = {
    "masks": [{"kind": "polygon", "points": [[30, 120], [230, 110], [220, 350], [40, 340]]}],
    "scribbles": [{"kind": "scribble", "points": [[40, 150], [120, 220], [200, 300], [230, 340]], "width": 10}],
    "points": [{"kind": "point", "point": [130, 230], "width": 10}],
}


@pytest.fixture(scope="module")
def id_files(comfy):
    from comfy_testnodes import tiny_instancediffusion as tid  # needs ComfyUI importable (booted by `comfy`)

    d = comfy.models_dir / "instancediffusion"
    tid.write_safetensors(str(d / "tiny_id.safetensors"))
    tid.write_training_snapshot(str(d / "tiny_id_official.pth"))
    tid.write_logtd_split(str(d / "logtd"))
    return d


def id_graph(layout=LAYOUT, file="tiny_id.safetensors", strength=1.0, alpha=1.0, preset="auto", scaleu=True,
             mis=None, steps=3, batch=1, seed=1, cfg=5.0, schedule="sampler_name + scheduler", **kw) -> dict:
    g = base_graph("sd15", width=W, height=H, steps=steps, batch=batch, seed=seed, cfg=cfg, **kw)
    g["lay"] = {"class_type": "IFAInstanceLayout",
                "inputs": {"width": layout["width"], "height": layout["height"], "layout": json.dumps(layout)}}
    g["idl"] = {"class_type": "IFAInstanceDiffusionLoader", "inputs": {"model_name": file}}
    g["apply"] = {"class_type": "IFAApplyInstanceDiffusion", "inputs": {
        "model": g["sample"]["inputs"]["model"], "instancediffusion": ["idl", 0], "clip": ["ckpt", 1],
        "layout": ["lay", 0], "strength": strength, "alpha": alpha, "preset": preset, "scaleu": scaleu}}
    g["sample"]["inputs"]["model"] = ["apply", 0]
    if mis is not None:
        s = g["sample"]["inputs"]
        g["sample"] = {"class_type": "IFAInstanceDiffusionSampler", "inputs": {
            **{k: s[k] for k in ("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                 "negative", "latent_image", "denoise")}, "mis": mis, "schedule": schedule}}
    return g


def with_latent_out(g: dict) -> dict:
    g["lat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": "id"}}
    return g


def load_latent(out: dict) -> np.ndarray:
    """The latent a graph saved with IFATest_SaveLatentTensor (exact float32)."""
    return load_file(out["lat"]["text"][0])["samples"].numpy()


def latent(comfy, g: dict) -> np.ndarray:
    """Run the graph and return the sampled latent [B, 4, h, w]."""
    out = comfy.run(with_latent_out(g))
    return load_latent(out)


def image(comfy, out, node="save") -> np.ndarray:
    return np.stack([np.asarray(Image.open(comfy.output_path(i))) for i in out[node]["images"]]).astype(np.int16)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean() / (np.abs(b).mean() + 1e-12))


def test_boxes_change_the_output_and_are_deterministic(comfy, id_files):
    plain = latent(comfy, base_graph("sd15", width=W, height=H, steps=3, seed=1))
    out = comfy.run(with_latent_out(id_graph()))
    a = load_latent(out)
    assert image(comfy, out).shape == (1, H, W, 3)
    b = latent(comfy, id_graph(cfg=5.0000001))  # a new prompt (no executor cache), the same maths
    assert a.shape == plain.shape == (1, 4, H // 8, W // 8)
    # calibration: with random tiny weights, changing the whole prompt moves the latent by ~1e-4 (relative)
    other_prompt = latent(comfy, base_graph("sd15", width=W, height=H, steps=3, seed=1, positive="a bowl of fruit"))
    assert rel(a, plain) > rel(other_prompt, plain) > 0
    assert np.array_equal(a, b)



def _layout_with(kind: str) -> dict:
    lay = json.loads(json.dumps(LAYOUT))
    lay["instances"][0]["regions"] = KINDS[kind]
    return lay


@pytest.mark.parametrize("kind", ["masks", "scribbles", "points"])
def test_each_input_kind(comfy, id_files, kind):
    boxes = latent(comfy, id_graph())
    a = latent(comfy, id_graph(layout=_layout_with(kind)))
    b = latent(comfy, id_graph(layout=_layout_with(kind), cfg=5.0000001))
    assert np.array_equal(a, b)
    assert rel(a, boxes) > 1e-8  # the first instance's input changed kind (and the preset with it)
    # the explicit preset equal to what "auto" picks gives the same result (with a box on the other instance,
    # a point-only instance does not make the whole layout "points")
    c = latent(comfy, id_graph(layout=_layout_with(kind), preset={"points": "boxes"}.get(kind, kind)))
    assert np.array_equal(a, c)


def test_alpha_zero_and_strength_zero_without_scaleu_is_the_plain_model(comfy, id_files):
    plain = latent(comfy, base_graph("sd15", width=W, height=H, steps=3, seed=1, batch=2))
    off = latent(comfy, id_graph(alpha=0.0, scaleu=False, batch=2))
    zero = latent(comfy, id_graph(strength=0.0, scaleu=False, batch=2))
    assert np.array_equal(plain, off) and np.array_equal(plain, zero)
    scaleu_only = latent(comfy, id_graph(alpha=0.0, scaleu=True, batch=2))
    assert rel(scaleu_only, plain) > 1e-8
    # alpha between 0 and 1: the fusers stop part-way, so the result differs from both ends
    half = latent(comfy, id_graph(alpha=0.5, steps=4, batch=2))
    full = latent(comfy, id_graph(alpha=1.0, steps=4, batch=2))
    none = latent(comfy, id_graph(alpha=0.0, steps=4, batch=2))
    assert rel(half, full) > 1e-7 and rel(half, none) > 1e-7
    # batch rows are independent: row 0 of a batch-2 run equals the batch-1 run's noise row only via the seed, so
    # check the two rows differ (different noise) and are finite
    assert np.isfinite(full).all() and rel(full[0], full[1]) > 0.01


def test_all_file_layouts_load_the_same_weights(comfy, id_files):
    ref = latent(comfy, id_graph(file="tiny_id.safetensors"))
    official = latent(comfy, id_graph(file="tiny_id_official.pth"))  # ema is the same seed as the .safetensors
    logtd = latent(comfy, id_graph(file="logtd/position_net.ckpt"))
    assert np.array_equal(ref, official) and np.array_equal(ref, logtd)


def test_strict_loading_errors_name_the_problem(comfy, id_files, tmp_path):
    import torch
    from safetensors.torch import save_file

    from core.instancediffusion.loading import load_any

    state, _ = load_any(str(id_files / "tiny_id.safetensors"))
    broken = dict(state)
    broken.pop("middle_block.1.transformer_blocks.0.fuser.alpha_attn")
    broken["position_net.extra.weight"] = torch.zeros(2)
    save_file(broken, str(id_files / "broken.safetensors"))
    (id_files / "truncated.pth").write_bytes((id_files / "tiny_id_official.pth").read_bytes()[:5000])
    with pytest.raises(GraphError) as e:
        comfy.run(id_graph(file="broken.safetensors"))
    msg = str(e.value)
    assert "1 missing key(s): middle_block.1.transformer_blocks.0.fuser.alpha_attn" in msg
    assert "1 unexpected key(s): position_net.extra.weight" in msg
    with pytest.raises(GraphError, match="truncated"):
        comfy.run(id_graph(file="truncated.pth"))
    (id_files / "lonely").mkdir(exist_ok=True)
    (id_files / "lonely" / "position_net.ckpt").write_bytes((id_files / "logtd" / "position_net.ckpt").read_bytes())
    with pytest.raises(GraphError, match=r"fusers\.ckpt, scaleu\.ckpt was not found"):
        comfy.run(id_graph(file="lonely/position_net.ckpt"))


def test_refuses_non_sd15_models(comfy, id_files):
    g = id_graph()
    g["ckpt"]["inputs"]["arch"] = "sdxl"
    with pytest.raises(GraphError, match="SD1.5 models only"):
        comfy.run(g)


def test_with_lora_and_controlnet(comfy, id_files):
    import torch
    from comfy_testnodes.tiny_models import lora_state_dict, tiny_checkpoint
    from safetensors.torch import save_file

    lora = comfy.models_dir / "loras" / "tiny_id_lora.safetensors"
    if not lora.exists():
        save_file(lora_state_dict(tiny_checkpoint("sd15")[0]), str(lora))

    def graph(with_id: bool) -> dict:
        g = id_graph() if with_id else base_graph("sd15", width=W, height=H, steps=3, seed=1)
        g["lora"] = {"class_type": "LoraLoader", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1],
                                                            "lora_name": lora.name, "strength_model": 1.0,
                                                            "strength_clip": 1.0}}
        if with_id:
            g["apply"]["inputs"]["model"] = ["lora", 0]
            g["apply"]["inputs"]["clip"] = ["lora", 1]
        else:
            g["sample"]["inputs"]["model"] = ["lora", 0]
        g["cn"] = {"class_type": "IFATest_TinyControlNetLoader", "inputs": {"arch": "sd15", "seed": 0}}
        g["hint"] = {"class_type": "EmptyImage", "inputs": {"width": W, "height": H, "batch_size": 1,
                                                            "color": 0xFFFFFF}}
        g["cna"] = {"class_type": "ControlNetApply", "inputs": {"conditioning": ["pos", 0], "control_net": ["cn", 0],
                                                                "image": ["hint", 0], "strength": 1.0}}
        g["sample"]["inputs"]["positive"] = ["cna", 0]
        return g

    plain = latent(comfy, graph(False))
    a = latent(comfy, graph(True))
    b = latent(comfy, graph(True) | {"sample": {**graph(True)["sample"], "inputs": {
        **graph(True)["sample"]["inputs"], "cfg": 5.0000001}}})
    assert np.array_equal(a, b)
    assert rel(a, plain) > 1e-8
    assert torch.isfinite(torch.from_numpy(a)).all()


def test_mis_batched_equals_sequential_and_differs_from_plain_sampling(comfy, id_files):
    no_mis = latent(comfy, id_graph(steps=4))
    batched = latent(comfy, id_graph(mis=0.5, steps=4))
    g = id_graph(mis=0.5, steps=4)
    g["sample"]["inputs"]["branch_batch"] = 1  # each of the 3 branches in its own UNet calls
    sequential = latent(comfy, g)
    assert np.allclose(batched, sequential, rtol=1e-4, atol=1e-5)
    assert rel(batched, no_mis) > 1e-8
    mis0 = latent(comfy, id_graph(mis=0.0, steps=4))
    assert np.allclose(mis0, no_mis, rtol=1e-5, atol=1e-6)  # mis 0: a plain run (exact alpha schedule)
    # batch 2 with MIS: rows stay with their own noise
    two = latent(comfy, id_graph(mis=0.5, steps=4, batch=2))
    assert two.shape[0] == 2 and np.allclose(two[:1], batched, rtol=1e-4, atol=1e-5)


def test_unpatched_model_is_bit_identical_before_and_after_a_patched_run(comfy, id_files):
    g = base_graph("sd15", width=W, height=H, steps=2, seed=3)
    before = latent(comfy, g)
    latent(comfy, id_graph(steps=2, seed=3))
    g["sample"]["inputs"]["cfg"] = 5.0000001  # a fresh execution of the same maths
    after = latent(comfy, g)
    assert np.array_equal(before, after)


def _nodes(comfy):
    n = comfy.nodes.NODE_CLASS_MAPPINGS
    return n, __import__("sys").modules[n["IFAApplyInstanceDiffusion"].__module__]


def test_clones_share_weights_and_do_not_leak_and_the_position_net_runs_once(comfy, id_files):
    import comfy.sd as comfy_sd  # (not `import comfy.sd`: that would rebind the `comfy` fixture name)
    import torch
    from comfy_testnodes.tiny_models import lora_state_dict, tiny_checkpoint

    import nodes as comfy_nodes
    from core.layout import Layout

    n, mod = _nodes(comfy)
    adapter = n["IFAInstanceDiffusionLoader"]().load("tiny_id.safetensors")[0]
    model, clip, _ = tiny_checkpoint("sd15")
    opts_before = repr(model.model_options)
    lay = Layout.from_json(LAYOUT)
    patched = n["IFAApplyInstanceDiffusion"]().apply(model, adapter, clip, lay, 1.0, 0.5, "auto", True)[0]
    assert repr(model.model_options) == opts_before  # the input MODEL is untouched
    assert "middle_patch" not in model.model_options.get("transformer_options", {}).get("patches", {})
    lora = lora_state_dict(model)
    lora_model, _ = comfy_sd.load_lora_for_models(patched, clip, lora, 1.0, 1.0)
    clones = [lora_model.clone(), lora_model.clone().clone(), patched.clone()]
    state = mod.find_state(patched)
    w = adapter.module.fusers[0].linear.weight
    for c in clones:
        st = mod.find_state(c)
        assert st is state and st.adapter is adapter
        assert st.adapter.module.fusers[0].linear.weight.data_ptr() == w.data_ptr()
    # a downstream clone adding its own patch does not reach the patched model
    extra = clones[0].clone()
    extra.set_model_patch(lambda x, o: x, "middle_patch")
    assert len(patched.model_options["transformer_options"]["patches"]["middle_patch"]) == 1
    # sampling: the position net runs once per (device, dtype), never per block or step
    pos = comfy_nodes.CLIPTextEncode().encode(clip, "a cat and a dog")[0]
    neg = comfy_nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    runs = state.position_net_runs
    comfy_nodes.common_ksampler(lora_model, 1, 3, 5.0, "euler", "normal", pos, neg,
                                {"samples": torch.zeros(2, 4, H // 8, W // 8)})
    assert state.position_net_runs - runs in (0, 2)  # null + full tokens, computed at most once
    runs = state.position_net_runs
    comfy_nodes.common_ksampler(lora_model, 2, 3, 5.0, "euler", "normal", pos, neg,
                                {"samples": torch.zeros(1, 4, H // 8, W // 8)})
    assert state.position_net_runs == runs  # cached across runs of the same inputs


def test_grounding_keys_values_are_projected_once_for_all_steps_and_runs(comfy, id_files):
    import torch
    from comfy_testnodes.tiny_models import tiny_checkpoint

    import nodes as comfy_nodes
    from core.layout import Layout

    n, mod = _nodes(comfy)
    adapter = n["IFAInstanceDiffusionLoader"]().load("tiny_id.safetensors")[0]
    model, clip, _ = tiny_checkpoint("sd15")
    patched = n["IFAApplyInstanceDiffusion"]().apply(model, adapter, clip, Layout.from_json(LAYOUT), 1.0, 1.0,
                                                      "auto", True)[0]
    state = mod.find_state(patched)
    pos = comfy_nodes.CLIPTextEncode().encode(clip, "a cat and a dog")[0]
    neg = comfy_nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    for seed in (1, 2):  # 4 steps x 16 fusers per run; each fuser projects the null + layout rows once in all
        comfy_nodes.common_ksampler(patched, seed, 4, 5.0, "euler", "normal", pos, neg,
                                    {"samples": torch.zeros(1, 4, H // 8, W // 8)})
        assert state.kv.projections == 16
    assert state.kv.cached_bytes() == state.kv.table_bytes(state.tokens(torch.device("cpu"), torch.float32))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fuser_and_scaleu_patches_in_low_precision(comfy, id_files, dtype):
    import torch

    from core.layout import Layout

    n, mod = _nodes(comfy)
    adapter = mod.load_adapter(str(id_files / "tiny_id.safetensors"))
    from comfy_testnodes.tiny_models import tiny_checkpoint

    model, clip, _ = tiny_checkpoint("sd15")
    m = n["IFAApplyInstanceDiffusion"]().apply(model, adapter, clip, Layout.from_json(LAYOUT), 1.0, 1.0, "auto",
                                               True)[0]
    dt = getattr(torch, dtype)
    fp, sp = (m.model_options["transformer_options"]["patches"][k][0] for k in ("middle_patch", "output_block_patch"))
    fp.to(torch.device("cpu")).to(dt)  # what ComfyUI's loader does with patch objects
    assert adapter.module.fusers[0].linear.weight.dtype == dt
    assert adapter.module.position_net.null_positive_feature.dtype == torch.float32  # position net stays fp32
    x = torch.randn(2, 192, 32).to(dt)
    opts = {"transformer_index": 0, "cond_or_uncond": [1, 0], "sigmas": torch.tensor([5.0, 5.0]),
            "sample_sigmas": torch.tensor([14.6, 5.0, 1.0, 0.0])}
    y = fp(x, opts)
    assert y.dtype == dt and y.shape == x.shape and torch.isfinite(y.float()).all() and not torch.equal(x, y)
    ref = copy.deepcopy(fp.state.adapter.module.fusers[0]).float()(x.float(), fp.state.tokens(torch.device("cpu"),
                                                                              torch.float32)[[0, 1]], 1.0)
    assert torch.allclose(y.float(), ref, atol=0.05, rtol=0.05)
    h, hsp = torch.randn(1, 128, 4, 4).to(dt), torch.randn(1, 128, 4, 4).to(dt)
    h2, hsp2 = sp(h, hsp, {"block": ("output", 0)})
    assert h2.dtype == dt and hsp2.dtype == dt
    adapter.to_dtype(torch.float32)


WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("InstanceDiffusion *.json"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflows_run_with_tiny_models(comfy, id_files, path):
    from comfy_testnodes.tiny_models import lora_state_dict, tiny_checkpoint
    from safetensors.torch import save_file
    from workflow_format import ui_to_api

    lora = comfy.models_dir / "loras" / "tiny_id_lora.safetensors"
    if not lora.exists():
        save_file(lora_state_dict(tiny_checkpoint("sd15")[0]), str(lora))
    prompt = ui_to_api(json.loads(path.read_text()), comfy.nodes.NODE_CLASS_MAPPINGS)
    kinds = {n["class_type"] for n in prompt.values()}
    assert {"IFAApplyInstanceDiffusion", "IFAInstanceDiffusionLoader", "SaveImage"} <= kinds
    for node in prompt.values():
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            node["class_type"], node["inputs"] = "IFATest_TinyCheckpointLoader", {"arch": "sd15", "seed": 0}
        elif ct == "ControlNetLoader":
            node["class_type"], node["inputs"] = "IFATest_TinyControlNetLoader", {"arch": "sd15", "seed": 0}
        elif ct == "IFAInstanceDiffusionLoader":
            inp["model_name"] = "tiny_id.safetensors"
        elif ct == "LoraLoader":
            inp["lora_name"] = lora.name
        elif ct == "EmptyLatentImage":
            inp["width"], inp["height"] = inp["width"] // 4, inp["height"] // 4
        elif ct in ("KSampler", "IFAInstanceDiffusionSampler"):
            inp["steps"] = 4 if ct == "IFAInstanceDiffusionSampler" else 3  # the official schedule: divides 1000
    out = comfy.run(prompt)
    saved = [img for o in out.values() for img in o.get("images", []) if img.get("type") == "output"]
    assert saved and np.asarray(Image.open(comfy.output_path(saved[0]))).std() > 0


def test_missing_description_names_the_instance_from_1(comfy, id_files):
    """Issue 10 item 5: Apply InstanceDiffusion encodes every enabled description, so it refuses an empty one and
    names the instance as the editor and the preview number it."""
    lay = copy.deepcopy(LAYOUT)
    lay["instances"].append({"description": "   ", "regions": [{"kind": "point", "point": [250, 200]}]})
    with pytest.raises(GraphError, match=r"instance 3: missing description; InstanceDiffusion encodes"):
        comfy.run(id_graph(layout=lay))
