"""The multi-instance sampler: the KSampler node's official path equals ``core``'s exact sampler (PLMS + MIS) on a
tiny model, and the MIS as a SAMPLER runs in SamplerCustom graphs through ComfyUI's executor."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from test_instancediffusion import LAYOUT, H, W, id_files, id_graph, latent  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def test_official_path_equals_core_exact_sampler(comfy, id_files):  # noqa: F811
    import comfy.sample as comfy_sample  # (not `import comfy.sample`: that would rebind the `comfy` fixture)
    from comfy_testnodes.tiny_models import tiny_checkpoint

    import nodes as comfy_nodes
    from core.instancediffusion.sampler import ddim_uniform_timesteps, mis_sample
    from core.layout import Layout

    n = comfy.nodes.NODE_CLASS_MAPPINGS
    mod = sys.modules[n["IFAApplyInstanceDiffusion"].__module__]
    grounding = sys.modules[mod.GroundingState.__module__]
    steps_mod = sys.modules[mod.StepWindow.__module__]
    adapter = n["IFAInstanceDiffusionLoader"]().load("tiny_id.safetensors")[0]
    model, clip, _ = tiny_checkpoint("sd15")
    patched = n["IFAApplyInstanceDiffusion"]().apply(model, adapter, clip, Layout.from_json(LAYOUT), 1.0, 0.6,
                                                     "auto", True)[0]
    pos = comfy_nodes.CLIPTextEncode().encode(clip, "a cat and a dog")[0]
    neg = comfy_nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    lat = {"samples": torch.zeros(1, 4, H // 8, W // 8)}
    steps, mis, cfg, seed = 10, 0.4, 5.0, 3
    node = n["IFAInstanceDiffusionSampler"]()
    out = node.sample(patched, seed, steps, cfg, "euler", "normal", pos, neg, lat, 1.0, mis, 1, "plms (official)")
    got = out[0]["samples"]

    # the reference: core's official PLMS + MIS, with eps from direct UNet calls (cond and uncond separately, as the
    # official sampler does), the model's alphas, and unit noise as x_T
    state = mod.find_state(patched)
    bm = patched.model
    table = bm.model_sampling.sigmas.detach().double()
    ac = 1.0 / (1.0 + table * table)
    ts = ddim_uniform_timesteps(steps)
    schedule = torch.tensor([float(table[t]) for t in ts] + [float(table[0])], dtype=torch.float32)
    base_to = patched.model_options["transformer_options"]

    def eps_fn_for(branch: int, ctx: torch.Tensor):
        def eps(x_t, t, step):
            sigma = torch.tensor([float(table[t])], dtype=torch.float32)
            s = float(sigma)
            x_k = x_t * (1.0 + s * s) ** 0.5
            outs = []
            for context, cou in ((ctx, 0), (neg[0][0], 1)):
                to = {**base_to, "cond_or_uncond": [cou], "sigmas": sigma, steps_mod.STEP_KEY: step,
                      steps_mod.SCHEDULE_KEY: schedule}
                if branch > 0:
                    to[grounding.MIS_KEY] = {"branches": [branch]}
                    to["patches"] = {**to["patches"], "attn2_patch": [grounding.MISContextPatch(state)]}
                with torch.no_grad():
                    d = bm.apply_model(x_k, sigma, c_crossattn=context, transformer_options=to)
                outs.append((x_k - d) / s)
            e_c, e_u = outs
            return e_u + cfg * (e_c - e_u)

        return eps

    fns = [eps_fn_for(b, pos[0][0]) for b in range(state.n + 1)]
    x_T = comfy_sample.prepare_noise(lat["samples"], seed)
    ref = bm.process_latent_out(mis_sample(fns, x_T, ts, ac, mis))
    assert got.shape == ref.shape
    err = float((got - ref).abs().max())
    print(f"\n[MIS official vs core] max |diff| {err:.3g} (latent max {float(ref.abs().max()):.3g})")
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4), err
    # the same run with the branches batched into one UNet call
    batched = node.sample(patched, seed, steps, cfg, "euler", "normal", pos, neg, lat, 1.0, mis, 0,
                          "plms (official)")[0]["samples"]
    assert torch.allclose(batched, got, rtol=1e-4, atol=1e-4)


def _custom_graph(method: str, mis: float, steps: int = 4) -> dict:
    g = id_graph(steps=steps)
    s = g["sample"]["inputs"]
    g["mis"] = {"class_type": "IFASamplerInstanceDiffusionMIS",
                "inputs": {"method": method, "mis": mis, "branch_batch": 0}}
    g["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": s["model"], "scheduler": "normal",
                                                              "steps": steps, "denoise": 1.0}}
    g["sample"] = {"class_type": "SamplerCustom", "inputs": {
        "model": s["model"], "add_noise": True, "noise_seed": s["seed"], "cfg": s["cfg"], "positive": s["positive"],
        "negative": s["negative"], "sampler": ["mis", 0], "sigmas": ["sigmas", 0], "latent_image": s["latent_image"]}}
    return g


def test_mis_sampler_in_a_samplercustom_graph(comfy, id_files):  # noqa: F811
    euler = latent(comfy, _custom_graph("euler", 0.5))
    assert np.isfinite(euler).all()
    # the KSampler node on ComfyUI's sampler + scheduler runs the same sampler function: identical
    g = id_graph(steps=4, mis=0.5, schedule="sampler_name + scheduler")
    assert np.array_equal(latent(comfy, g), euler)
    # MIS changes the result; mis 0 is the plain sampler (the same as SamplerCustom with KSamplerSelect euler)
    plain = latent(comfy, _custom_graph("euler", 0.0))
    assert not np.allclose(euler, plain)
    ref = _custom_graph("euler", 0.0)
    ref["mis"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    assert np.allclose(latent(comfy, ref), plain, rtol=1e-5, atol=1e-6)
    # PLMS on a ComfyUI schedule, with the merge continuing the full branch's history
    plms = latent(comfy, _custom_graph("plms", 0.5))
    assert np.isfinite(plms).all() and not np.allclose(plms, euler)


def test_official_schedule_refuses_img2img_and_models_without_the_patch(comfy, id_files):  # noqa: F811
    from comfy_env import GraphError

    g = id_graph(steps=4, mis=0.5, schedule="plms (official)")
    g["sample"]["inputs"]["denoise"] = 0.5
    with pytest.raises(GraphError, match="denoise 1.0"):
        latent(comfy, g)
    with pytest.raises(GraphError, match="divide 1000"):
        latent(comfy, id_graph(steps=30, mis=0.5, schedule="plms (official)"))
    g = _custom_graph("plms", 0.5)
    g["sample"]["inputs"]["model"] = ["ckpt", 0]
    with pytest.raises(GraphError, match="no InstanceDiffusion patch"):
        latent(comfy, g)



def test_mis_sampler_in_a_samplercustomadvanced_graph(comfy, id_files):  # noqa: F811
    if "SamplerCustomAdvanced" not in comfy.nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("SamplerCustomAdvanced exists only on newer ComfyUI (not the 2024 build)")
    g = _custom_graph("euler", 0.5)
    s = g["sample"]["inputs"]
    g["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": s["noise_seed"]}}
    g["guider"] = {"class_type": "CFGGuider", "inputs": {"model": s["model"], "positive": s["positive"],
                                                         "negative": s["negative"], "cfg": s["cfg"]}}
    g["sample"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["mis", 0], "sigmas": ["sigmas", 0],
        "latent_image": s["latent_image"]}}
    advanced = latent(comfy, g)
    assert np.array_equal(advanced, latent(comfy, _custom_graph("euler", 0.5)))
    plms = dict(g, mis={"class_type": "IFASamplerInstanceDiffusionMIS",
                        "inputs": {"method": "plms", "mis": 0.5, "branch_batch": 0}})
    assert np.isfinite(latent(comfy, plms)).all()
