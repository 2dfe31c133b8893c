"""IFAdapter composed with the real LoraLoader, the real ControlNetApply and an IPAdapter-protocol attn2 patch
applied before and after it; adapter weights exist once however many clones follow."""
from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file
from test_ifadapter_nodes import LAYOUT, _mod, adapters, ifa_graph, nonce, run_latent  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lora(comfy):
    tiny = sys.modules[comfy.node_class("IFATest_TinyCheckpointLoader").__module__]
    model = tiny.tiny_checkpoint("sdxl", 0)[0]
    sd = sys.modules[tiny.__name__.rsplit(".", 1)[0] + ".tiny_models"].lora_state_dict(model)
    path = comfy.models_dir / "loras" / "tiny_sdxl_lora.safetensors"
    save_file(sd, str(path))
    return path.name


def with_lora_and_controlnet(g: dict, lora_name: str, patched: bool = True) -> dict:
    g["lora"] = {"class_type": "LoraLoader", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1],
                                                        "lora_name": lora_name, "strength_model": 1.0,
                                                        "strength_clip": 1.0}}
    g["nonce"]["inputs"]["model"] = ["lora", 0]
    for n in ("pos", "neg"):
        g[n]["inputs"]["clip"] = ["lora", 1]
    if patched:
        g["tok"]["inputs"]["clip"] = ["lora", 1]
    g["cn"] = {"class_type": "IFATest_TinyControlNetLoader", "inputs": {"arch": "sdxl", "seed": 0}}
    g["hint"] = {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 192, "batch_size": 1,
                                                        "color": 0x808080}}
    g["cnapply"] = {"class_type": "ControlNetApply", "inputs": {"conditioning": ["pos", 0], "control_net": ["cn", 0],
                                                                "image": ["hint", 0], "strength": 1.0}}
    g["sample"]["inputs"]["positive"] = ["cnapply", 0]
    return g


def test_with_lora_and_controlnet(comfy, adapters, lora):  # noqa: F811
    plain = run_latent(comfy, ifa_graph(patched=False, nonce=nonce()))
    base = run_latent(comfy, with_lora_and_controlnet(ifa_graph(patched=False, nonce=nonce()), lora, False))
    patched = run_latent(comfy, with_lora_and_controlnet(ifa_graph(end=0.3, nonce=nonce()), lora))
    ifa_only = run_latent(comfy, ifa_graph(end=0.3, nonce=nonce()))
    assert torch.isfinite(patched).all()
    assert not torch.equal(base, plain), "LoRA + ControlNet had no effect"
    assert not torch.equal(patched, base), "IFAdapter had no effect on top of LoRA + ControlNet"
    assert not torch.equal(patched, ifa_only)


def _ipa(model_ref, weight=1.0):
    return {"class_type": "IFATest_IPAdapterStyleAttn2", "inputs": {"model": model_ref, "weight": weight,
                                                                   "keys": "ifadapter16", "seed": 0}}


def test_ipadapter_style_patch_before_and_after(comfy, adapters):  # noqa: F811
    calls = sys.modules[comfy.node_class("IFATest_IPAdapterStyleAttn2").__module__.rsplit(".", 1)[0]
                        + ".attn2_protocol"].CALLS
    ifa_only = run_latent(comfy, ifa_graph(nonce=nonce()))

    g = ifa_graph(patched=False, nonce=nonce())
    g["ipa"] = _ipa(["nonce", 0])
    g["sample"]["inputs"]["model"] = ["ipa", 0]
    ipa_only = run_latent(comfy, g)

    g = ifa_graph(nonce=nonce())  # IPAdapter first, IFAdapter wraps it
    g["ipa"] = _ipa(["nonce", 0])
    g["apply"]["inputs"]["model"] = ["ipa", 0]
    c0 = calls["callback"]
    before = run_latent(comfy, g)
    calls_before = calls["callback"] - c0

    g = ifa_graph(nonce=nonce())  # IFAdapter first, IPAdapter .add()s onto its chain
    g["ipa"] = _ipa(["apply", 0])
    g["sample"]["inputs"]["model"] = ["ipa", 0]
    c0 = calls["callback"]
    after = run_latent(comfy, g)
    calls_after = calls["callback"] - c0

    # 16 layers x 2 steps (cond and uncond in one batch): the other pack's callback really ran both times
    assert calls_before >= 32 and calls_after >= 32, (calls_before, calls_after)
    for combo in (before, after):
        assert not torch.equal(combo, ifa_only) and not torch.equal(combo, ipa_only)
    # same arithmetic either way: attention + IPAdapter term + IFAdapter term
    assert torch.allclose(before, after, atol=1e-5)


def test_weights_exist_once_after_lora_and_model_patch_nodes(comfy, adapters, lora):  # noqa: F811
    g = ifa_graph(nonce=nonce())
    g["cap1"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "applied"}}
    g["lora"] = {"class_type": "LoraLoader", "inputs": {"model": ["cap1", 0], "clip": ["ckpt", 1],
                                                        "lora_name": lora, "strength_model": 1.0,
                                                        "strength_clip": 1.0}}
    g["lora2"] = {"class_type": "LoraLoader", "inputs": {"model": ["lora", 0], "clip": ["lora", 1],
                                                         "lora_name": lora, "strength_model": 0.5,
                                                         "strength_clip": 0.5}}
    g["ipa"] = _ipa(["lora2", 0])
    g["freeu"] = {"class_type": "FreeU_V2", "inputs": {"model": ["ipa", 0], "b1": 1.1, "b2": 1.2, "s1": 0.9,
                                                       "s2": 0.2}}
    g["cap2"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["freeu", 0], "tag": "final"}}
    g["sample"]["inputs"]["model"] = ["cap2", 0]
    run_latent(comfy, g)
    captured = sys.modules[comfy.node_class("IFATest_CaptureModel").__module__].CAPTURED
    applied, final = captured["applied"], captured["final"]
    assert applied is not final

    def layers(m):
        return [c for p in m.model_options["transformer_options"]["patches_replace"]["attn2"].values()
                for c in getattr(p, "contributions", [])]

    a, f = layers(applied), layers(final)
    assert len(a) == len(f) == 16
    # the very same contribution objects (no deep copy), one runtime, one adapter
    assert all(x is y for x, y in zip(a, f))
    assert len({id(c.runtime) for c in f}) == 1 and len({id(c.runtime.adapter) for c in f}) == 1
    loader = _mod(comfy, "IFAAdapterLoader")
    adapter = loader.load_adapter_cached(str(adapters / "tiny_ifa.safetensors"), None)
    assert f[0].runtime.adapter is adapter
    key = ("middle", 0, 0)
    assert f[0].runtime.adapter.processor(key).to_k_ap.weight.data_ptr() == adapter.processor(key).to_k_ap.weight.data_ptr()
    # the chain objects themselves are per clone (so .add on a clone never reaches the parent)
    pa = applied.model_options["transformer_options"]["patches_replace"]["attn2"][key]
    pf = final.model_options["transformer_options"]["patches_replace"]["attn2"][key]
    assert pa is not pf and len(pa.callback) == 0 and len(pf.callback) == 1
