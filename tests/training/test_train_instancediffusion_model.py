"""InstanceDiffusion training forward = Apply InstanceDiffusion: on the tiny SD1.5-layout UNet of a real ComfyUI,
the trainer's forward (dropout off) and the model the Apply node returns give the same ε on the same inputs, for the
conditional rows and for the all-null (guidance) rows; gradients reach every trainable part; the official
from-scratch initialisation leaves the UNet unchanged."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration

LAYOUT = {
    "format": "instance-layout", "version": 1, "width": 256, "height": 192, "prompt": "two things",
    "instances": [
        {"description": "a red ball", "regions": [{"kind": "box", "box": [10, 20, 120, 150]},
                                                 {"kind": "scribble", "points": [[20, 40], [60, 90], [100, 130]],
                                                  "width": 6}]},
        {"description": "a blue cube", "regions": [{"kind": "polygon",
                                                   "points": [[140, 30], [240, 40], [230, 170], [150, 160]]}]},
        {"description": "a green cone", "regions": [{"kind": "point", "point": [200, 100], "width": 6}]},
    ],
}


@pytest.fixture(scope="module")
def parts(comfy):
    from comfy_testnodes import tiny_instancediffusion as tid
    from comfy_testnodes import tiny_models

    from core.instancediffusion import build_model
    from train.engine import comfy_bridge

    mods = {n: comfy_bridge.pack_module(f"instancediffusion.{n}") for n in ("apply", "adapter", "grounding")}
    mods["steps"] = comfy_bridge.pack_module("steps")
    model, clip, _ = tiny_models.tiny_checkpoint("sd15")
    state = tid.tiny_adapter_state(3)
    return {"mods": mods, "model": model, "clip": clip, "state": state, "build": build_model}


def _training_model(parts, module):
    from train.instancediffusion_model import InstanceDiffusionTrainingModel

    m = parts["mods"]
    return InstanceDiffusionTrainingModel(module, parts["model"], m["adapter"], m["grounding"], m["steps"])


@pytest.mark.parametrize("preset", ["scribbles", "boxes"])
def test_training_forward_equals_the_apply_node(parts, preset):
    from core.instancediffusion import null_inputs
    from core.layout import Layout
    from train.instancediffusion_model import GROUNDING_KEYS

    m = parts["mods"]
    node_adapter = m["adapter"].Adapter(parts["build"](copy.deepcopy(parts["state"])), "tiny", "test")
    layout = Layout.from_json(LAYOUT)
    (patched,) = m["apply"].ApplyInstanceDiffusion().apply(parts["model"], node_adapter, parts["clip"], layout, 1.0,
                                                           1.0, preset, True)
    st = m["grounding"].find_state(patched)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 24, 32, generator=g)
    t = torch.tensor([700, 150])
    ctx = torch.randn(2, 77, 768, generator=g) * 0.5
    opts = copy.copy(patched.model_options["transformer_options"])
    opts["cond_or_uncond"] = [0, 1]  # row 0 conditional, row 1 the guidance (null grounding) row
    with torch.no_grad():
        eps_apply = patched.model.diffusion_model(x, t.float(), context=ctx, transformer_options=opts)
        plain = parts["model"].model.diffusion_model(x, t.float(), context=ctx, transformer_options={})

    trainer = _training_model(parts, parts["build"](copy.deepcopy(parts["state"])))
    null = null_inputs()
    grounding = {k: torch.cat([st.inputs[k], null[k]]) for k in GROUNDING_KEYS}
    drop = torch.stack([st.inputs["drop"], torch.zeros(4, dtype=torch.bool)])
    eps_train = trainer.epsilon(x, t, ctx, grounding, drop)
    torch.testing.assert_close(eps_train.detach(), eps_apply, rtol=1e-5, atol=1e-6)
    assert (eps_apply - plain).abs().max() > 1e-3  # the grounding really acts

    eps_train.square().mean().backward()
    a = trainer.adapter
    for name, p in [("fuser linear", a.fusers[5].linear.weight), ("fuser gate", a.fusers[0].alpha_attn),
                    ("box MLP", a.position_net.linears_list[0][0].weight),
                    ("mask encoder", a.position_net.convnext_tiny_backbone.stages[0][0].pwconv1.weight),
                    ("ScaleU", a.scaleu.scaleu_b_3)]:
        assert p.grad is not None, name  # every parameter takes part (DDP needs no unused parameters)
        # the mask encoder learns only where masks are used ("boxes" drops them: a zero gradient)
        assert (p.grad.abs().sum() > 0) == (name != "mask encoder" or preset != "boxes"), name
    assert all(p.grad is None for p in parts["model"].model.diffusion_model.parameters())  # SD1.5 frozen


def test_official_initialisation_leaves_the_unet_unchanged(parts):
    from train.instancediffusion_model import adapter_config_for, official_init

    m = parts["mods"]
    cfg = adapter_config_for(parts["model"], m["adapter"], mid_dim=64, convnext_dims=(8, 16, 32, 64),
                             convnext_depths=(1, 1, 1, 1))
    a = official_init(cfg, seed=5)
    b = official_init(cfg, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert float(a.fusers[3].alpha_attn) == 0.0 and float(a.scaleu.scaleu_s_2) == 0.0
    assert abs(float(a.position_net.pos_embedding.std()) - 0.02) < 0.003
    trainer = _training_model(parts, a)
    g = torch.Generator().manual_seed(1)
    x, ctx, t = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 768, generator=g), torch.tensor([400])
    from core.instancediffusion import null_inputs
    from train.instancediffusion_model import GROUNDING_KEYS

    null = null_inputs()
    with torch.no_grad():
        eps = trainer.epsilon(x, t, ctx, {k: null[k] for k in GROUNDING_KEYS}, torch.zeros(1, 4, dtype=torch.bool))
        plain = parts["model"].model.diffusion_model(x, t.float(), context=ctx, transformer_options={})
    # zero gates and tanh(0) + 1 = 1 ScaleU: the base model's output, up to ScaleU's low-frequency filter rounding
    assert np.allclose(eps.numpy(), plain.numpy(), atol=1e-5)


def test_trained_adapter_exports_loads_in_the_loader_and_samples_in_a_graph(parts, comfy):
    """Two optimiser steps on a sample prepared by the training rules, export, then Load InstanceDiffusion ->
    Apply InstanceDiffusion -> KSampler in a real ComfyUI graph."""
    from comfy_testnodes import tiny_instancediffusion as tid
    from integration.graphs import base_graph
    from safetensors import safe_open

    from core.instancediffusion.loading import save_adapter
    from core.instancediffusion.training_inputs import SourceInstance, TrainingInputSettings, prepare_training_sample
    from train.instancediffusion_model import official_init

    m = parts["mods"]
    trainer = _training_model(parts, official_init(tid.TINY_CONFIG, seed=2))
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:40, 8:30] = True
    inst = [SourceInstance((8, 10, 30, 40), mask=mask, description="a red ball", label="ball")]
    s = prepare_training_sample(inst, 64, 64, "a ball", np.random.default_rng(0), TrainingInputSettings(size=64))
    g = torch.Generator().manual_seed(0)
    batch = {"latent": torch.randn(1, 4, 8, 8, generator=g), "noise": torch.randn(1, 4, 8, 8, generator=g),
             "timestep": torch.tensor([500]), "context": torch.randn(1, 77, 768, generator=g),
             "boxes": s.boxes[None], "masks": s.masks[None], "points": s.points[None], "scribbles": s.scribbles[None],
             "polygons": s.polygons[None], "segs": s.segs[None],
             "positive_embeddings": torch.randn(1, 30, 768, generator=g) * s.masks[None, :, None],
             "drop": torch.zeros(1, 4, dtype=torch.bool)}
    opt = torch.optim.AdamW(trainer.adapter.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        trainer(batch).backward()
        opt.step()
    assert float(trainer.adapter.fusers[0].alpha_attn.detach()) != 0.0  # the gates left zero: the fusers act now
    path = comfy.models_dir / "instancediffusion" / "trained_tiny.safetensors"
    meta = save_adapter(trainer.adapter.state_dict(), path, {"steps": 2, "recipe": "instancediffusion"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == meta and meta["format"] == "instancediffusion-sd15-adapter" and meta["steps"] == "2"
    loaded = m["adapter"].load_adapter(str(path)).module
    for k, v in trainer.adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.detach()), k

    def graph(with_adapter: bool, cfg: float = 4.0) -> dict:
        gr = base_graph("sd15", width=64, height=64, steps=2, seed=3, cfg=cfg)
        if with_adapter:
            gr["lay"] = {"class_type": "IFAInstanceLayout", "inputs": {"width": 64, "height": 64,
                                                                       "layout": json.dumps(LAYOUT)}}
            gr["idl"] = {"class_type": "IFAInstanceDiffusionLoader", "inputs": {"model_name": path.name}}
            gr["apply"] = {"class_type": "IFAApplyInstanceDiffusion", "inputs": {
                "model": ["ckpt", 0], "instancediffusion": ["idl", 0], "clip": ["ckpt", 1], "layout": ["lay", 0],
                "strength": 1.0, "alpha": 1.0, "preset": "auto", "scaleu": True}}
            gr["sample"]["inputs"]["model"] = ["apply", 0]
        gr["lat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": "idt"}}
        return gr

    from safetensors.torch import load_file

    def run(gr):
        return load_file(comfy.run(gr)["lat"]["text"][0])["samples"].numpy()

    a, b, plain = run(graph(True)), run(graph(True, 4.0000001)), run(graph(False))
    assert np.isfinite(a).all() and np.array_equal(a, b)
    assert np.abs(a - plain).max() > 0  # the trained adapter changes the sample
