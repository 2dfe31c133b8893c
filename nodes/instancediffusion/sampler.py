"""KSampler (InstanceDiffusion MIS): the multi-instance sampler over ComfyUI's samplers."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ..common import CATEGORY_INSTANCEDIFFUSION
from .grounding import MIS_KEY, SIGMAS_KEY, MISContextPatch, find_state


def _schedule(model, steps: int, sampler_name: str, scheduler: str, denoise: float) -> torch.Tensor:
    """The sigmas KSampler would use (2024: KSampler takes the BaseModel; v0.3+: the ModelPatcher)."""
    target = model.model if hasattr(comfy.samplers, "calculate_sigmas_scheduler") else model
    ks = comfy.samplers.KSampler(target, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                 denoise=denoise, model_options=model.model_options)
    return ks.sigmas.detach().float().cpu()


def _with_options(model, **opts):
    m = model.clone()
    to = m.model_options.setdefault("transformer_options", {})
    to.update(opts)
    return m


def mis_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, mis,
               branch_batch=0):
    """KSampler with the multi-instance sampler: the first ``int(mis·steps)`` steps run n+1 branches (the full
    layout, then each instance alone with its own caption as the prompt; same noise, same negative with null
    grounding), batched into one UNet call when memory allows; the branch latents are averaged once and sampling
    continues with the full input. Returns the LATENT dict."""
    state = find_state(model)
    if state is None:
        raise ValueError("InstanceDiffusion sampler: the MODEL has no InstanceDiffusion patch; connect it through "
                         "Apply InstanceDiffusion first")
    latent_image = latent["samples"]
    if hasattr(comfy.sample, "fix_empty_latent_channels"):
        latent_image = comfy.sample.fix_empty_latent_channels(model, latent_image)
    b = latent_image.shape[0]
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    noise_mask = latent.get("noise_mask")
    sigmas = _schedule(model, steps, sampler_name, scheduler, denoise)
    n_steps = len(sigmas) - 1
    k = int(n_steps * mis)
    disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
    common = dict(noise_mask=noise_mask, disable_pbar=disable_pbar, seed=seed)
    base = _with_options(model, **{SIGMAS_KEY: sigmas})
    if k == 0 or state.n == 0:
        out = comfy.sample.sample(base, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                  latent_image, denoise=denoise, sigmas=sigmas, **common)
        return {**latent, "samples": out}

    branches = list(range(state.n + 1))
    group = branch_batch if branch_batch > 0 else _auto_group(model, latent_image, len(branches))
    merged = None
    for g0 in range(0, len(branches), group):
        ids = branches[g0:g0 + group]
        m = _with_options(model, **{SIGMAS_KEY: sigmas, MIS_KEY: {"branches": ids, "per": b}})
        m.set_model_attn2_patch(MISContextPatch(state))
        reps = len(ids)
        mask = None if noise_mask is None else noise_mask.repeat(reps, *([1] * (noise_mask.ndim - 1)))
        out = comfy.sample.sample(m, noise.repeat(reps, 1, 1, 1), steps, cfg, sampler_name, scheduler, positive,
                                  negative, latent_image.repeat(reps, 1, 1, 1), denoise=denoise, start_step=0,
                                  last_step=k, force_full_denoise=k >= n_steps, sigmas=sigmas.clone(),
                                  noise_mask=mask, disable_pbar=disable_pbar, seed=seed)
        part = out.reshape(reps, b, *out.shape[1:]).sum(0)
        merged = part if merged is None else merged + part
    x = merged / len(branches)
    if k >= n_steps:
        return {**latent, "samples": x}
    out = comfy.sample.sample(base, torch.zeros_like(noise), steps, cfg, sampler_name, scheduler, positive, negative,
                              x, denoise=denoise, disable_noise=True, start_step=k, last_step=n_steps,
                              force_full_denoise=True, sigmas=sigmas.clone(), **common)
    return {**latent, "samples": out}


def _auto_group(model, latent: torch.Tensor, n_branches: int) -> int:
    """How many branches fit in one UNet call: all of them unless free memory says otherwise."""
    device = model.load_device
    if device.type == "cpu":
        return n_branches
    try:
        per = model.memory_required([2 * latent.shape[0]] + list(latent.shape[1:]))
        free = mm.get_free_memory(device) - model.model_size() if not mm.is_device_cpu(device) else float("inf")
        return max(1, min(n_branches, int(free * 0.8 // max(per, 1))))
    except Exception:  # an estimate only; batching everything is the default
        return n_branches


class InstanceDiffusionSampler:
    """KSampler with InstanceDiffusion's multi-instance sampler (MIS). Use in place of KSampler after Apply
    InstanceDiffusion; mis = 0 is a plain KSampler run (with the exact alpha schedule on every ComfyUI)."""

    DESCRIPTION = ("KSampler with InstanceDiffusion's multi-instance sampler (MIS): for the first mis fraction of "
                   "the steps each instance is also denoised alone with its own description, and the branches are "
                   "averaged once; then sampling continues with the whole layout. Connect the MODEL from Apply "
                   "InstanceDiffusion in place of a KSampler; returns the LATENT for VAE Decode.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model from Apply InstanceDiffusion."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Noise seed (0 to 2^64-1), as in KSampler."}),
            "steps": ("INT", {"default": 30, "min": 1, "max": 10000,
                              "tooltip": "Sampling steps (1-10000)."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale (0-100; official 7.5)."}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"tooltip": "Sampling algorithm, as in KSampler."}),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"tooltip": "Noise schedule, as in KSampler."}),
            "positive": ("CONDITIONING", {"tooltip": "The global prompt (the whole scene), e.g. from CLIP Text "
                                                     "Encode."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
            "latent_image": ("LATENT", {"tooltip": "The latent to denoise, e.g. Empty Latent Image at the layout's "
                                                   "canvas size."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the latent to replace (0-1; 1 = generate from noise)."}),
            "mis": ("FLOAT", {"default": 0.36, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Fraction of the steps (0-1) run per instance before the one averaging "
                                         "(official 0.36; costs about (n+1)x for those steps, n = instances; "
                                         "0 = a plain KSampler run)."}),
        }, "optional": {
            "branch_batch": ("INT", {"default": 0, "min": 0, "max": 31,
                                     "tooltip": "Branches per UNet call (0-31; 0 = as many as memory allows)."}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent; decode it with VAE Decode.",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY_INSTANCEDIFFUSION

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               mis, branch_batch=0):
        return (mis_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                           denoise, mis, branch_batch),)
