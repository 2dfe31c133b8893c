"""IFAdapter nodes in a real ComfyUI with the tiny SDXL-layout model (70 transformer blocks, 128-wide IFAdapter
layers): loading, token encoding, the semantic map, the model patch and its composition with LoRA, ControlNet and
IPAdapter-protocol attn2 patches. Latents 256x192 (non-square), 2 steps."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from comfy_env import GraphError
from graphs import base_graph
from PIL import Image
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

W, H = 256, 192
LAYOUT = {
    "format": "instance-layout", "version": 1, "width": W, "height": H, "prompt": "a street",
    "instances": [
        {"description": "a (red:1.3) sports car with chrome wheels", "regions": [{"kind": "box",
                                                                              "box": [16, 100, 150, 180]}]},
        {"description": "a tall green tree", "regions": [{"kind": "box", "box": [170, 8, 250, 184]}]},
        {"description": "a small white cat", "regions": [{"kind": "polygon",
                                                          "points": [[40, 20], [90, 30], [70, 80]]}]},
    ],
}


def _mod(comfy, node_type):
    return sys.modules[comfy.node_class(node_type).__module__]


@pytest.fixture(scope="module")
def adapters(comfy):
    d = comfy.models_dir / "ifadapter"
    write_tiny_ifadapter = _mod(comfy, "IFATest_SaveLatentTensor").write_tiny_ifadapter
    write_tiny_ifadapter(str(d / "tiny_ifa.safetensors"), seed=0, alpha=0.5)
    write_tiny_ifadapter(str(d / "tiny_ifa_zero.safetensors"), seed=0, alpha=0.0)
    write_tiny_ifadapter(str(d / "tiny_ifa.bin"), seed=0, alpha=0.5, fmt="bin")
    return d


def ifa_graph(layout=LAYOUT, adapter="tiny_ifa.safetensors", scale=1.0, start=0.0, end=1.0, patched=True,
              nonce=0, batch=1, prefix="lat") -> dict:
    g = base_graph("sdxl", W, H, steps=2, positive="a street", negative="blurry", batch=batch, save=False)
    g["nonce"] = {"class_type": "IFATest_ModelNonce", "inputs": {"model": ["ckpt", 0], "nonce": nonce}}
    g["lay"] = {"class_type": "IFAInstanceLayout", "inputs": {"width": W, "height": H, "layout": json.dumps(layout)}}
    g["ifa"] = {"class_type": "IFAAdapterLoader", "inputs": {"ifadapter_name": adapter, "dtype": "auto"}}
    g["tok"] = {"class_type": "IFAEncodeAppearanceTokens", "inputs": {"clip": ["ckpt", 1], "ifadapter": ["ifa", 0],
                                                                       "layout": ["lay", 0]}}
    g["apply"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
        "model": ["nonce", 0], "ifadapter": ["ifa", 0], "tokens": ["tok", 0], "layout": ["lay", 0],
        "scale": scale, "start_percent": start, "end_percent": end}}
    g["sample"]["inputs"]["model"] = ["apply", 0] if patched else ["nonce", 0]
    g["savelat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": prefix}}
    if not patched:
        for k in ("lay", "ifa", "tok", "apply"):
            del g[k]
    return g


def latent(out, node="savelat") -> torch.Tensor:
    return load_file(out[node]["text"][0])["samples"]


def run_latent(comfy, g, node="savelat") -> torch.Tensor:
    return latent(comfy.run(g), node)


_NONCE = [1000]


def nonce() -> int:
    _NONCE[0] += 1
    return _NONCE[0]


def test_full_graph_with_ifadapter_changes_the_image_and_calls_all_16_layers(comfy, adapters):
    layer_mod = _mod(comfy, "IFAApplyIFAdapter")
    g = ifa_graph(nonce=nonce())
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "full"}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    g["decode"]["inputs"]["samples"] = ["sample", 0]
    g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "ifa_full"}}
    out = comfy.run(g)
    patched = latent(out)
    assert patched.shape == (1, 4, H // 8, W // 8) and torch.isfinite(patched).all()
    assert out["save"]["images"]
    plain = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    assert not torch.equal(patched, plain)
    model = sys.modules[comfy.node_class("IFATest_CaptureModel").__module__].CAPTURED["full"]
    attn2 = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert sorted(attn2) == sorted(layer_mod.IFADAPTER_KEYS)
    layers = [c for p in attn2.values() for c in p.contributions]
    assert len(layers) == 16 and all(isinstance(c, layer_mod.IFAdapterLayer) for c in layers)
    # 2 steps x euler = 2 UNet calls, cond and uncond batched together (1 call per layer per step)
    assert all(c.calls >= 2 for c in layers), [c.calls for c in layers]
    runtime = layers[0].runtime
    assert all(c.runtime is runtime for c in layers)
    # K/V projected once per layer (cond+uncond stacked), geometry once per grid: latent 24x32 -> layer 6x8
    assert runtime.cache_sizes()["kv"] == 16
    assert {k[:2] for k in runtime._caches.geometry} == {(6, 8)}


def test_zero_gate_adapter_is_bit_identical_to_the_unpatched_model(comfy, adapters):
    plain = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    zero = run_latent(comfy, ifa_graph(adapter="tiny_ifa_zero.safetensors", nonce=nonce()))
    assert torch.equal(plain, zero)
    scale0 = run_latent(comfy, ifa_graph(scale=0.0, nonce=nonce()))
    assert torch.equal(plain, scale0)


def test_no_leak_and_determinism(comfy, adapters):
    before = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    a = run_latent(comfy, ifa_graph(nonce=nonce()))
    after = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    b = run_latent(comfy, ifa_graph(nonce=nonce()))
    assert torch.equal(before, after), "patching leaked into the unpatched model"
    assert torch.equal(a, b), "IFAdapter sampling is not deterministic"
    assert not torch.equal(a, before)


def test_bin_and_safetensors_files_give_the_same_image(comfy, adapters):
    a = run_latent(comfy, ifa_graph(nonce=nonce()))
    b = run_latent(comfy, ifa_graph(adapter="tiny_ifa.bin", nonce=nonce()))
    assert torch.equal(a, b)


def _calls_with_window(comfy, **kw) -> tuple[torch.Tensor, list[int]]:
    g = ifa_graph(nonce=nonce(), **kw)
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "window"}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    lat = run_latent(comfy, g)
    model = sys.modules[comfy.node_class("IFATest_CaptureModel").__module__].CAPTURED["window"]
    attn2 = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    return lat, [c.calls for p in attn2.values() for c in p.contributions]


def test_timestep_window_and_scale(comfy, adapters):
    full, calls_full = _calls_with_window(comfy)
    plain = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    # 2 euler steps (sigma ~14.6, then a few units or less): end 0.1 (sigma ~8) keeps only the first step patched
    early, calls_early = _calls_with_window(comfy, end=0.1)
    assert calls_full == [2] * 16 and calls_early == [1] * 16, (calls_full, calls_early)
    assert not torch.equal(early, plain), "the first step was not patched"
    # a window that starts at 100 % never fires: same as unpatched
    late, calls_late = _calls_with_window(comfy, start=1.0, end=1.0)
    assert calls_late == [0] * 16 and torch.equal(late, plain)
    strong = run_latent(comfy, ifa_graph(scale=2.0, nonce=nonce()))
    assert not torch.equal(strong, full)


def test_batch_of_two_rows_each_get_the_instances(comfy, adapters):
    two = run_latent(comfy, ifa_graph(batch=2, nonce=nonce()))
    plain2 = run_latent(comfy, ifa_graph(batch=2, patched=False, nonce=nonce()))
    assert two.shape[0] == 2 and torch.isfinite(two).all()
    # batch 2 x (cond, uncond) = 4 rows per UNet call: every image row is patched
    assert not torch.equal(two[0], plain2[0]) and not torch.equal(two[1], plain2[1])


def test_tokens_are_encoded_once_per_text_and_weights_are_stripped(comfy, adapters):
    mod = _mod(comfy, "IFAEncodeAppearanceTokens")
    clip = comfy.node_class("IFATest_TinyCheckpointLoader")().load("sdxl", 0)[1]
    before = mod.ENCODE_CALLS["clip"]
    strip = "strip (ComfyUI)"  # the default reads weight syntax as text (test_ifadapter_descriptions)
    h1, e1, m1 = mod.encode_descriptions(clip, ["a (red:1.3) car", "a blue bird"], strip)
    assert mod.ENCODE_CALLS["clip"] - before == 3  # one batched encode per depth (-2, -4, -6), both texts at once
    h2, e2, m2 = mod.encode_descriptions(clip, ["a red car", "a blue bird", "a (red:1.3) car"], strip)
    assert mod.ENCODE_CALLS["clip"] - before == 6  # only "a red car" was new
    assert torch.equal(h1[0], h2[2]) and torch.equal(h1[1], h2[1])
    # weight syntax stripped: "(red:1.3)" encodes exactly like "red"
    assert torch.equal(h2[0], h2[2]) and torch.equal(e2[0], e2[2])
    assert h1.shape == (2, 3, 77, 2048) and e1.shape == (2, 2048)
    # word mask: "a red car" -> BOS, a, red, car, EoT -> words at 1..3; EoT feature = hidden -2 at position 4
    assert m2[0].nonzero().flatten().tolist() == [1, 2, 3]
    assert torch.equal(e2[0], h2[0, 0, 4])
    # depths differ (-2, -4, -6 are different layers) and match ComfyUI's own clip_layer encode
    assert not torch.equal(h2[0, 0], h2[0, 1]) and not torch.equal(h2[0, 1], h2[0, 2])
    c = clip.clone()
    c.clip_layer(-4)
    ref = c.encode_from_tokens(c.tokenize("a red car"))
    assert torch.allclose(ref[0].float(), h2[0, 1], atol=1e-5)
    # escaped parentheses stay text
    h3, _, m3 = mod.encode_descriptions(clip, [r"a \(red\) car"], strip)
    assert m3[0].sum() > 3


def test_non_sdxl_model_and_clip_are_refused(comfy, adapters):
    g = ifa_graph(nonce=nonce())
    g["sd15"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sd15", "seed": 0}}
    g["nonce"]["inputs"]["model"] = ["sd15", 0]
    with pytest.raises(GraphError, match=r"trained for SDXL models.*the connected model is SD1\.5"):
        comfy.run(g)
    g = ifa_graph(nonce=nonce())
    g["sd15"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sd15", "seed": 0}}
    g["tok"]["inputs"]["clip"] = ["sd15", 1]
    with pytest.raises(GraphError, match="needs an SDXL CLIP"):
        comfy.run(g)


def test_more_than_ten_instances_is_a_clear_error(comfy, adapters):
    lay = json.loads(json.dumps(LAYOUT))
    lay["instances"] = [{"description": f"object {i}", "regions": [{"kind": "box", "box": [i * 20, 0, i * 20 + 18,
                                                                                          50]}]}
                        for i in range(11)]
    with pytest.raises(GraphError, match="11 enabled instances.*at most 10"):
        comfy.run(ifa_graph(layout=lay, nonce=nonce()))


def test_semantic_map_node_masks_and_preview(comfy, adapters):
    g = {
        "lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": W, "height": H,
                                                              "layout": json.dumps(LAYOUT)}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": W, "height": H, "batch_size": 1}},
        "ism": {"class_type": "IFABuildSemanticMap", "inputs": {"layout": ["lay", 0],
                                                                "level": "latent/4 (IFAdapter layers)",
                                                                "latent": ["lat", 0]}},
        "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["ism", 0]}},
        "msave": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_ism"}},
        "psave": {"class_type": "SaveImage", "inputs": {"images": ["ism", 1], "filename_prefix": "t_ismp"}},
    }
    import numpy as np
    from PIL import Image

    out = comfy.run(g)
    masks = [np.asarray(Image.open(comfy.output_path(i)))[..., 0] > 127 for i in out["msave"]["images"]]
    assert len(masks) == 3 and masks[0].shape == (6, 8)
    # car box [16,100,150,180] / (256,192) on 6x8: cols floor(0.0625*8)=0 .. ceil(0.586*8)=5, rows 3 .. 6
    ys, xs = np.nonzero(masks[0])
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (0, 5, 3, 6)
    prev = np.asarray(Image.open(comfy.output_path(out["psave"]["images"][0])))
    assert prev.shape == (H, W, 3)
    # the same masks as the model uses: compare with the runtime's geometry
    mod = _mod(comfy, "IFABuildSemanticMap")
    lay = comfy.node_class("IFAInstanceLayout")().build(W, H, json.dumps(LAYOUT))["result"][0]
    geo = mod.InstanceGeometry.from_boxes(lay.boxes_normalized()[None], 6, 8)
    assert np.array_equal(np.stack(masks), geo.cells[0].numpy())
    # non-square odd latent: 200x136 px -> latent 17x25 -> 9x13 -> 5x7
    g["lat"]["inputs"].update(width=200, height=136)
    out = comfy.run(g)
    assert np.asarray(Image.open(comfy.output_path(out["msave"]["images"][0]))).shape[:2] == (5, 7)


def test_missing_description_is_refused_only_where_tokens_are_encoded(comfy, adapters):
    """Issue 10 item 5: a layout with an undescribed instance is a valid layout (the semantic map, which reads
    boxes only, runs); Encode Appearance Tokens names the instance as the editor numbers it (from 1, disabled ones
    counted)."""
    lay = json.loads(json.dumps(LAYOUT))
    lay["instances"][0]["enabled"] = False
    lay["instances"][2]["description"] = ""
    ism = {"lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": W, "height": H, "layout": json.dumps(lay)}},
           "ism": {"class_type": "IFABuildSemanticMap", "inputs": {"layout": ["lay", 0],
                                                                   "level": "latent/4 (IFAdapter layers)"}},
           "save": {"class_type": "SaveImage", "inputs": {"images": ["ism", 1], "filename_prefix": "t_ism_nodesc"}}}
    comfy.run(ism)
    with pytest.raises(GraphError, match=r"instance 3: missing description; IFAdapter encodes"):
        comfy.run(ifa_graph(layout=lay, nonce=nonce()))


def test_semantic_map_preview_of_a_huge_canvas_is_scaled_down(comfy):
    """The preview is for looking at: a 16384 x 8192 canvas gives a 2048 x 1024 picture, not 1.6 GB of floats."""
    lay = {**LAYOUT, "width": 16384, "height": 8192,
           "instances": [{"description": "sky", "regions": [{"kind": "box", "box": [0, 0, 16384, 4096]}]}]}
    g = {"lay": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(lay), "file": "(none)"}},
         "ism": {"class_type": "IFABuildSemanticMap", "inputs": {"layout": ["lay", 0],
                                                                 "level": "latent/4 (IFAdapter layers)"}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["ism", 1], "filename_prefix": "t_ism_big"}}}
    out = comfy.run(g)
    prev = np.asarray(Image.open(comfy.output_path(out["save"]["images"][0])))
    assert prev.shape == (1024, 2048, 3)
