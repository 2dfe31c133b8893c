"""Training equals inference for the ``ifadapter`` recipe: the trainer's forward (the engine's objective, the
recipe's cache encoding, collate and UNet inputs, draws without dropout) and the Encode Appearance Tokens + Apply
IFAdapter nodes through ComfyUI's model wrapper give the same prediction on the same latent, noise, timestep,
caption and layout; for an SD1.5 adapter (CLIP-L tokens, 4 layers, no micro-conditioning) and an SDXL one."""
from __future__ import annotations

import json
import types

import pytest
import torch

pytestmark = pytest.mark.integration

W, H = 128, 96
LAYOUT = {"format": "instance-layout", "version": 1, "width": W, "height": H, "prompt": "shapes on grey",
          "instances": [{"description": "a red circle", "regions": [{"kind": "box", "box": [8, 8, 70, 60]}]},
                        {"description": "a blue square with a long description of its many parts",
                         "regions": [{"kind": "box", "box": [50, 30, 120, 90]}]}]}


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_training_forward_equals_the_apply_node(comfy, arch):
    from comfy_testnodes.tiny_models import build_clip, build_unet, randomize_

    from core.layout import Layout
    from train.engine.config import from_dict
    from train.engine.objective import DiffusionObjective
    from train.recipes.ifadapter import IFAdapterRecipe

    model, clip = build_unet(arch, 0), build_clip(arch, 0)
    randomize_(model.model.diffusion_model, 0, std=0.1)  # as the training fixtures: outputs of order 1
    cfg = from_dict({"model": {"base": "tiny"}, "data": {"folder": "."},
                     "ifadapter": {"resampler": {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2},
                                   "resampler_mask": "all-words"}}, "ifadapter")
    recipe = IFAdapterRecipe(cfg)
    recipe.bind(model, f"tiny_{arch}")
    recipe.setup()
    assert recipe.family.name == arch  # detected from the model ([ifadapter] family = "auto")
    adapter = recipe.build_trainable(seed=3)
    with torch.no_grad():  # a trained-looking adapter: open gates, non-trivial norms
        for proc in adapter.processors().values():
            proc.alpha.fill_(0.7)
            proc.q_norm.weight.normal_(0, 0.2)
            proc.k_norm.weight.normal_(0, 0.2)
            proc.to_v_ap.weight.mul_(20.0)  # a residual of the size of the layer's own attention output
    assert len(adapter.processors()) == (4 if arch == "sd15" else 16)
    layout = Layout.from_json(json.dumps(LAYOUT))

    # the trainer's path: cache encoding, draw without dropout, collate, the engine's objective
    encoders = recipe.text_encoders(clip)
    sample = types.SimpleNamespace(prompt=layout.prompt, descriptions=[i.description for i in layout.active()],
                                   boxes=layout.boxes_normalized())
    cached = recipe.encode_sample(sample, encoders)
    assert cached["desc_hidden"].shape[2] < 77  # trimmed after the last EoT, as in the cache
    cached["entry"] = {"original_size": [H, W], "crop": [0, 0], "bucket": [W, H]}
    g = torch.Generator().manual_seed(0)
    draw = recipe.draw(g, cached, train=False)
    assert draw.keep_text and draw.keep_prompt
    batch = recipe.collate([cached], [draw])
    assert ("y" in batch) == (arch == "sdxl")
    latent = torch.randn(1, 4, H // 8, W // 8, generator=g)
    noise = torch.randn(latent.shape, generator=g)
    t = 480
    batch.update(latent=latent, noise=noise, timestep=torch.tensor([t]))
    objective = DiffusionObjective(recipe, adapter, model)
    adapter.eval()
    with torch.no_grad():
        pred_train, _ = objective.predict(batch)

    # the inference path: the nodes, then ComfyUI's model wrapper (input scaling, timestep, output formula). The
    # node classes are the pack's nodes/ifadapter.py imported as the trainer imports it (comfy_bridge.pack_module),
    # so that they share the trainer's core classes in this one process
    tokens = recipe.nodes.EncodeAppearanceTokens().encode(clip, adapter, layout)[0]
    patched = recipe.nodes.ApplyIFAdapter().apply(model, adapter, tokens, layout)[0]
    base = patched.model
    sigma = base.model_sampling.sigmas[t].reshape(1)
    x = latent + sigma.view(-1, 1, 1, 1) * noise
    opts = dict(patched.model_options["transformer_options"], cond_or_uncond=[0])
    extra = {"y": batch["y"]} if arch == "sdxl" else {}
    with torch.no_grad():
        denoised = base.apply_model(x, sigma, c_crossattn=batch["context"], transformer_options=opts, **extra)
        eps_infer = (x - denoised) / sigma.view(-1, 1, 1, 1)
        plain = base.apply_model(x, sigma, c_crossattn=batch["context"], transformer_options={"cond_or_uncond": [0]},
                                 **extra)
    eps_plain = (x - plain) / sigma.view(-1, 1, 1, 1)
    effect = (pred_train - eps_plain).abs().max()
    diff = (eps_infer - pred_train).abs().max()
    print(f"{arch}: |prediction| {pred_train.abs().max():.3g}, adapter effect {effect:.3g}, train vs infer {diff:.3g}")
    assert pred_train.abs().max() > 0.1 and effect > 1e-2, (pred_train.abs().max(), effect)  # the adapter acts
    torch.testing.assert_close(eps_infer, pred_train, atol=1e-5, rtol=1e-5)
    layers = [c for p in opts["patches_replace"]["attn2"].values() for c in p.contributions]
    assert len(layers) == len(adapter.processors()) and all(c.calls == 1 for c in layers)
