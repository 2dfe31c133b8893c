"""KSampler (InstanceDiffusion MIS): the multi-instance sampler in place of KSampler.

``schedule``:

- ``"plms (official)"`` (default): exactly the official sampler, ``core``'s PLMS over the DDPM timesteps
  ``range(0, 1000, 1000 // steps) + 1`` (981 … 1 for 50 steps) with the model's ``alphas_cumprod``, starting from
  unit-variance noise as the official ``x_T`` and returning the latent at t = 0's alpha as the official does;
  ``sampler_name`` and ``scheduler`` are not used;
- ``"sampler_name + scheduler"``: ComfyUI's sampler and scheduler (multistep samplers restart their history at the
  merge).

Both run :func:`.mis_sampler.sample_mis` through ComfyUI's ``sample_custom``.
"""
from __future__ import annotations

import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ...core.instancediffusion.sampler import ddim_uniform_timesteps
from ..common import CATEGORY_INSTANCEDIFFUSION
from .grounding import find_state
from .mis_sampler import mis_sampler

SCHEDULES = ("plms (official)", "sampler_name + scheduler")


def _schedule(model, steps: int, sampler_name: str, scheduler: str, denoise: float) -> torch.Tensor:
    """The sigmas KSampler would use (2024: KSampler takes the BaseModel; v0.3+: the ModelPatcher)."""
    target = model.model if hasattr(comfy.samplers, "calculate_sigmas_scheduler") else model
    ks = comfy.samplers.KSampler(target, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                 denoise=denoise, model_options=model.model_options)
    return ks.sigmas.detach().float().cpu()


def official_schedule(model, steps: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(timesteps, sigmas, alphas_cumprod) of the official PLMS for ``steps``: DDPM timesteps descending, their sigmas
    then sigma(t = 0) (the official end), and the model's alphas_cumprod = 1 / (1 + sigma²) [1000] (float64)."""
    ms = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") else \
        model.model.model_sampling
    table = ms.sigmas.detach().double().cpu()
    if table.numel() != 1000:
        raise ValueError(f"the official PLMS schedule needs a 1000-step discrete model; this one has {table.numel()}")
    if steps < 1 or 1000 % steps:
        raise ValueError(f"the official PLMS schedule needs steps that divide 1000 (official 50; e.g. 10, 20, 25, 40, "
                         f"100); got {steps}. Or choose the schedule 'sampler_name + scheduler'.")
    ts = ddim_uniform_timesteps(steps)
    sigmas = torch.tensor([float(table[t]) for t in ts] + [float(table[0])], dtype=torch.float32)
    return ts, sigmas, 1.0 / (1.0 + table * table)


def mis_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, mis,
               branch_batch=0, schedule=SCHEDULES[0]):
    """Run the multi-instance sampler; returns the LATENT dict (see the module docstring)."""
    if find_state(model) is None:
        raise ValueError("InstanceDiffusion sampler: the MODEL has no InstanceDiffusion patch; connect it through "
                         "Apply InstanceDiffusion first")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    latent_image = latent["samples"]
    if hasattr(comfy.sample, "fix_empty_latent_channels"):
        latent_image = comfy.sample.fix_empty_latent_channels(model, latent_image)
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    scale_out = 1.0
    if schedule == SCHEDULES[0]:
        if denoise < 1.0:
            raise ValueError("the official PLMS schedule is text-to-image (denoise 1.0); for denoise "
                             f"{denoise} choose the schedule 'sampler_name + scheduler'")
        ts, sigmas, ac = official_schedule(model, steps)
        sampler = mis_sampler(mis, "plms", branch_batch, official_timesteps=ts, alphas_cumprod=ac)
        s0 = float(sigmas[0])
        noise = noise * ((1.0 + s0 * s0) ** 0.5 / s0)  # ComfyUI starts at sigma·noise; the official x_T is noise
        scale_out = float(ac[0]) ** 0.5  # the official returns x at t = 0's alpha, in LDM scaling
    else:
        sigmas = _schedule(model, steps, sampler_name, scheduler, denoise)
        sampler = mis_sampler(mis, sampler_name, branch_batch)
    callback = None
    try:
        import latent_preview

        callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    except Exception:  # previews are optional (no server, headless runs)
        callback = None
    out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image,
                                     noise_mask=latent.get("noise_mask"), callback=callback,
                                     disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    if scale_out != 1.0:
        out = out * scale_out
    return {**latent, "samples": out}


class InstanceDiffusionSampler:
    """KSampler with InstanceDiffusion's multi-instance sampler (MIS). Use in place of KSampler after Apply
    InstanceDiffusion; mis = 0 is a plain run (with the exact alpha schedule on every ComfyUI)."""

    DESCRIPTION = ("KSampler with InstanceDiffusion's multi-instance sampler (MIS): for the first mis fraction of "
                   "the steps each instance is also denoised alone with its own description, and the branches are "
                   "averaged once; then sampling continues with the whole layout. schedule 'plms (official)' is the "
                   "official sampler exactly (PLMS over DDPM timesteps 981..1 at 50 steps; sampler_name and "
                   "scheduler unused); 'sampler_name + scheduler' uses ComfyUI's. Connect the MODEL from Apply "
                   "InstanceDiffusion in place of a KSampler; returns the LATENT for VAE Decode.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model from Apply InstanceDiffusion."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Noise seed (0 to 2^64-1), as in KSampler."}),
            "steps": ("INT", {"default": 50, "min": 1, "max": 1000,
                              "tooltip": "Sampling steps (1-1000; official 50). The official schedule needs steps "
                                         "that divide 1000."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale (0-100; official 7.5)."}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"tooltip": "Sampling algorithm, as in KSampler "
                                                                           "(schedule 'sampler_name + scheduler')."}),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"tooltip": "Noise schedule, as in KSampler "
                                                                          "(schedule 'sampler_name + scheduler')."}),
            "positive": ("CONDITIONING", {"tooltip": "The global prompt (the whole scene), e.g. from CLIP Text "
                                                     "Encode."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
            "latent_image": ("LATENT", {"tooltip": "The latent to denoise, e.g. Empty Latent Image at the layout's "
                                                   "canvas size."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the latent to replace (0-1; 1 = generate from noise; the "
                                             "official schedule needs 1)."}),
            "mis": ("FLOAT", {"default": 0.36, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Fraction of the steps (0-1) run per instance before the one averaging "
                                         "(official 0.36; costs about (n+1)x for those steps, n = instances; "
                                         "0 = a plain run)."}),
        }, "optional": {
            "branch_batch": ("INT", {"default": 0, "min": 0, "max": 31,
                                     "tooltip": "Branches per UNet call (0-31; 0 = as many as memory allows)."}),
            "schedule": (list(SCHEDULES), {"default": SCHEDULES[0],
                                           "tooltip": "plms (official): the official sampler exactly (sampler_name "
                                                      "and scheduler unused); sampler_name + scheduler: ComfyUI's."}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent; decode it with VAE Decode.",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY_INSTANCEDIFFUSION

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               mis, branch_batch=0, schedule=SCHEDULES[0]):
        return (mis_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                           denoise, mis, branch_batch, schedule),)
