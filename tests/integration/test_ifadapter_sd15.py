"""IFAdapter on SD1.5 in a real ComfyUI: a tiny random-weight SD1.5 adapter (its family, layers and widths in the
file's metadata) loaded by the IFAdapter Loader, descriptions encoded with the SD1.5 CLIP (one encoder, checked
against transformers' CLIPTextModel), the 4 layers patched (middle block, output blocks 3-5), sampled; and the
refusals when families are mixed (SDXL adapter on SD1.5, SD1.5 adapter on SDXL, the wrong CLIP)."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from comfy_env import GraphError
from graphs import add_ifadapter, base_graph
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

W, H = 256, 192
LAYOUT = {
    "format": "instance-layout", "version": 1, "width": W, "height": H, "prompt": "a street",
    "instances": [
        {"description": "a red sports car", "regions": [{"kind": "box", "box": [16, 100, 150, 180]}]},
        {"description": "a tall green tree", "regions": [{"kind": "box", "box": [170, 8, 250, 184]}]},
    ],
}
SD15_KEYS = [("middle", 0, 0), ("output", 3, 0), ("output", 4, 0), ("output", 5, 0)]
_NONCE = [5000]


def _mod(comfy, node_type):
    return sys.modules[comfy.node_class(node_type).__module__]


@pytest.fixture(scope="module")
def adapters(comfy):
    d = comfy.models_dir / "ifadapter"
    write = _mod(comfy, "IFATest_SaveLatentTensor").write_tiny_ifadapter
    write(str(d / "tiny_sd15.safetensors"), seed=0, alpha=0.5, family="sd15")
    write(str(d / "tiny_sd15_zero.safetensors"), seed=0, alpha=0.0, family="sd15")
    write(str(d / "tiny_sd15.bin"), seed=0, alpha=0.5, fmt="bin", family="sd15")
    write(str(d / "tiny_sdxl_for_sd15_tests.safetensors"), seed=0, alpha=0.5)
    return d


def graph(arch="sd15", adapter="tiny_sd15.safetensors", patched=True, tag="sd15") -> dict:
    _NONCE[0] += 1
    g = base_graph(arch, W, H, steps=2, positive="a street", negative="blurry", save=False)
    if patched:
        add_ifadapter(g, json.dumps(LAYOUT), W, H, adapter, tag)
    g["nonce"] = {"class_type": "IFATest_ModelNonce", "inputs": {"model": g["sample"]["inputs"]["model"],
                                                               "nonce": _NONCE[0]}}
    g["sample"]["inputs"]["model"] = ["nonce", 0]
    g["savelat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": tag}}
    return g


def run_latent(comfy, g) -> torch.Tensor:
    return load_file(comfy.run(g)["savelat"]["text"][0])["samples"]


def test_sd15_adapter_loads_encodes_patches_its_4_layers_and_samples(comfy, adapters):
    g = graph(tag="sd15_full")
    g["decode"]["inputs"]["samples"] = ["sample", 0]
    g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "ifa_sd15"}}
    out = comfy.run(g)
    patched = load_file(out["savelat"]["text"][0])["samples"]
    assert patched.shape == (1, 4, H // 8, W // 8) and torch.isfinite(patched).all()
    assert out["save"]["images"]
    plain = run_latent(comfy, graph(patched=False))
    assert not torch.equal(patched, plain)
    model = _mod(comfy, "IFATest_CaptureModel").CAPTURED["sd15_full"]
    layer_cls = _mod(comfy, "IFAApplyIFAdapter").IFAdapterLayer
    attn2 = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert sorted(attn2) == SD15_KEYS
    layers = [c for p in attn2.values() for c in p.contributions]
    assert len(layers) == 4 and all(isinstance(c, layer_cls) for c in layers)
    assert all(c.calls >= 2 for c in layers), [c.calls for c in layers]  # 2 euler steps, cond+uncond batched
    runtime = layers[0].runtime
    assert runtime.tokens.cond.shape == (2, 13, 768)  # one text encoder: CLIP-L's width
    # the middle block runs at latent/8 (3x4 here), output blocks 3-5 at latent/4 (6x8)
    assert {k[:2] for k in runtime._caches.geometry} == {(3, 4), (6, 8)}


def test_zero_gate_sd15_adapter_is_bit_identical_and_bin_equals_safetensors(comfy, adapters):
    plain = run_latent(comfy, graph(patched=False))
    assert torch.equal(plain, run_latent(comfy, graph(adapter="tiny_sd15_zero.safetensors", tag="z")))
    a = run_latent(comfy, graph(tag="a"))
    assert torch.equal(a, run_latent(comfy, graph(adapter="tiny_sd15.bin", tag="b")))


def test_sd15_features_are_clip_l_hidden_states_without_final_layer_norm(comfy, adapters):
    """Encode Appearance Tokens' SD1.5 features against transformers' CLIPTextModel with the same weights:
    hidden_states[-2], [-4], [-6] (no final LayerNorm) at every position, the EoT feature = hidden_states[-2] at
    the EoT, the word mask = positions 1..EoT-1."""
    from transformers import CLIPTextConfig, CLIPTextModel

    clip = comfy.node_class("IFATest_TinyCheckpointLoader")().load("sd15", 0)[1]
    texts = ["a red sports car", "a tall green tree with (many) leaves!"]
    ifa = _mod(comfy, "IFAEncodeAppearanceTokens")
    hidden, eot, mask = ifa.encode_descriptions(clip, texts, family="sd15")
    assert hidden.shape == (2, 3, 77, 768) and eot.shape == (2, 768) and mask.shape == (2, 77)
    inner = clip.cond_stage_model.clip_l
    tok_mod = sys.modules[ifa.description_tokens.__module__]
    cfg = CLIPTextConfig.from_json_file(_mod(comfy, "IFATest_TinyCheckpointLoader").tiny_models._clip_json(768, 12))
    ref = CLIPTextModel(cfg).eval()
    ours = {k.split("text_model.", 1)[1]: v.float() for k, v in inner.state_dict().items() if "text_model." in k}
    prefix = "text_model." if any(k.startswith("text_model.") for k in ref.state_dict()) else ""  # transformers 4/5
    missing, _ = ref.load_state_dict({prefix + k: v for k, v in ours.items()}, strict=False)
    assert not [k for k in missing if "position_ids" not in k], missing
    for i, text in enumerate(texts):
        tokens, _, e = tok_mod.description_tokens(clip, text, encoders=(("l", None),))
        ids = torch.tensor([[t[0] for t in tokens["l"][0]]])
        with torch.no_grad():
            states = ref(ids, output_hidden_states=True).hidden_states
        for j, depth in enumerate((-2, -4, -6)):
            torch.testing.assert_close(hidden[i, j], states[depth][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(eot[i], states[-2][0, e], atol=1e-5, rtol=1e-5)
        assert mask[i].nonzero().flatten().tolist() == list(range(1, e))


def test_sdxl_adapter_on_sd15_model_is_refused_with_one_clear_message(comfy, adapters):
    g = graph(adapter="tiny_sdxl_for_sd15_tests.safetensors", tag="x")
    g["tok"]["inputs"]["clip"] = ["xlckpt", 1]  # tokens from an SDXL CLIP, so only Apply can refuse
    g["xlckpt"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sdxl", "seed": 0}}
    with pytest.raises(GraphError) as err:
        comfy.run(g)
    msg = str(err.value)
    assert "this IFAdapter was trained for SDXL models" in msg
    assert "the connected model is SD1.5 (cross-attention width 768)" in msg


def test_sd15_adapter_on_sdxl_model_is_refused(comfy, adapters):
    g = graph(arch="sdxl", tag="y")
    g["tok"]["inputs"]["clip"] = ["sdckpt", 1]
    g["sdckpt"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sd15", "seed": 0}}
    with pytest.raises(GraphError) as err:
        comfy.run(g)
    msg = str(err.value)
    assert "this IFAdapter was trained for SD1.5 models" in msg and "the connected model is SDXL" in msg


def test_wrong_clip_for_the_adapter_is_refused(comfy, adapters):
    g = graph(tag="c")
    g["tok"]["inputs"]["clip"] = ["xlckpt", 1]
    g["xlckpt"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sdxl", "seed": 0}}
    with pytest.raises(GraphError, match=r"trained for SD1.5 and needs an SD1.5 CLIP \(CLIP-L 768\); the connected "
                                         r"CLIP is the CLIP of an SDXL checkpoint"):
        comfy.run(g)
    g = graph(arch="sdxl", adapter="tiny_sdxl_for_sd15_tests.safetensors", tag="d")
    g["tok"]["inputs"]["clip"] = ["sdckpt", 1]
    g["sdckpt"] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": "sd15", "seed": 0}}
    with pytest.raises(GraphError, match="needs an SDXL CLIP .* the connected CLIP is the CLIP of an SD1.5"):
        comfy.run(g)
