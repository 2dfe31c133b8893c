"""Step windows counted in steps exactly as the official code counts them, on the ComfyUI under test (the 2024 build
by default, where the schedule is captured by the pack because the host does not expose it).

- InstanceDiffusion: fusers on while ``i < int(alpha · steps)``: alpha 0.8 over 50 karras steps -> the first 40.
- IFAdapter: on while ``steps · start <= i < steps · end`` (official ``i < steps · control_ratio``): ratio 0.3 / 0.5
  at 30 karras steps -> 9 / 15 steps.
"""
from __future__ import annotations

import sys

import pytest
import torch
from test_ifadapter_nodes import adapters, ifa_graph, nonce, run_latent  # noqa: F401  (fixture)
from test_instancediffusion import LAYOUT, H, W, id_files  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def test_instancediffusion_alpha_counts_exact_steps_with_karras(comfy, id_files):  # noqa: F811
    from comfy_testnodes.tiny_models import tiny_checkpoint

    import nodes as comfy_nodes
    from core.layout import Layout

    n = comfy.nodes.NODE_CLASS_MAPPINGS
    mod = sys.modules[n["IFAApplyInstanceDiffusion"].__module__]
    steps_mod = sys.modules[mod.StepWindow.__module__]
    adapter = n["IFAInstanceDiffusionLoader"]().load("tiny_id.safetensors")[0]
    model, clip, _ = tiny_checkpoint("sd15")
    patched = n["IFAApplyInstanceDiffusion"]().apply(model, adapter, clip, Layout.from_json(LAYOUT), 1.0, 0.8,
                                                     "auto", True)[0]
    state = mod.find_state(patched)
    seen: list[tuple[float, float]] = []
    real = state.fuser_scale

    def recording(extra_options):  # records what the real rule decided, per UNet call
        scale = real(extra_options)
        seen.append((float(extra_options["sigmas"].flatten()[0]), scale))
        return scale

    state.fuser_scale = recording
    pos = comfy_nodes.CLIPTextEncode().encode(clip, "a cat and a dog")[0]
    neg = comfy_nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    comfy_nodes.common_ksampler(patched, 1, 50, 5.0, "euler", "karras", pos, neg,
                                {"samples": torch.zeros(1, 4, H // 8, W // 8)})
    per_sigma = dict(seen)
    assert len(per_sigma) == 50
    sigmas = sorted(per_sigma, reverse=True)
    assert [per_sigma[s] for s in sigmas] == [1.0] * 40 + [0.0] * 10
    # the 2024 build has no sample_sigmas: the pack captured the schedule there, and only there
    assert steps_mod.ensure_schedule_capture() == (not steps_mod.host_sets_sample_sigmas())


def _ifa_calls(comfy, steps: int, start: float, end: float) -> list[int]:
    g = ifa_graph(nonce=nonce(), start=start, end=end)
    g["sample"]["inputs"].update(steps=steps, scheduler="karras", sampler_name="euler")
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": "steps"}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    run_latent(comfy, g)
    model = sys.modules[comfy.node_class("IFATest_CaptureModel").__module__].CAPTURED["steps"]
    attn2 = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    return [c.calls for p in attn2.values() for c in p.contributions]


@pytest.mark.parametrize(("start", "end", "expected"), [(0.0, 0.3, 9), (0.0, 0.5, 15), (0.2, 0.5, 9), (0.0, 1.0, 30)])
def test_ifadapter_window_counts_exact_steps_with_karras(comfy, adapters, start, end, expected):  # noqa: F811
    calls = _ifa_calls(comfy, 30, start, end)  # euler: one UNet call (cond + uncond batched) per step
    assert calls == [expected] * 16, calls
