"""InstanceDiffusion's multi-instance sampler (MIS) as a ComfyUI ``SAMPLER``, and its official PLMS path.

One sampler function, :func:`sample_mis`, serves both the ``SamplerInstanceDiffusionMIS`` node (a ``SAMPLER`` for
SamplerCustom / SamplerCustomAdvanced: any scheduler, guider and noise) and the KSampler (InstanceDiffusion MIS)
node. For the first ``int(mis · steps)`` steps the n + 1 branches (the full layout, then each instance alone with its
own caption as the prompt; same noise, same negative with null grounding) are denoised as separate rows, batched
into one UNet call when memory allows; their latents are averaged once and sampling continues with the full input.

``method``:

- ``"plms"``: the official PLMS (:func:`core.instancediffusion.sampler.plms_levels`) on the given sigmas, and the
  full branch's ε history continues after the merge, as the official ``PLMSSamplerInst``; with ``official`` set
  (by the KSampler node) it is exactly ``core``'s official sampler: DDPM timesteps 981 … 1 of ``steps``, the
  model's ``alphas_cumprod``, and the end at t = 0's alpha;
- any ComfyUI sampler name (``euler``, ``dpmpp_2m``, …): that sampler runs the branch steps and the rest (multistep
  samplers restart their history at the merge).

The current step index is given to the fusers' alpha window (``STEP_KEY`` for PLMS; the schedule otherwise).
"""
from __future__ import annotations

import comfy.model_management as mm
import comfy.samplers
import torch

from ...core.instancediffusion.sampler import PLMSState, mis_merge, mis_steps, official_alphas, plms_levels
from ..common import CATEGORY_INSTANCEDIFFUSION
from ..steps import SCHEDULE_KEY, STEP_KEY
from .grounding import MIS_KEY, FuserPatch, GroundingState, MISContextPatch

METHODS = ("plms", *comfy.samplers.KSampler.SAMPLERS)


def state_in(model_options: dict) -> GroundingState | None:
    """The InstanceDiffusion grounding state patched into these model options, if any."""
    for p in model_options.get("transformer_options", {}).get("patches", {}).get("middle_patch", []):
        if isinstance(p, FuserPatch):
            return p.state
    return None


def _options(model_options: dict, state: GroundingState, sigmas: torch.Tensor, branches=None, step=None) -> dict:
    """A copy of ``model_options`` with the run's schedule, the step index and (for branch rows) the MIS routing and
    the per-instance caption patch; the caller's dicts are not modified."""
    to = dict(model_options.get("transformer_options", {}))
    to[SCHEDULE_KEY] = sigmas
    if step is not None:
        to[STEP_KEY] = step
    if branches is not None:
        to[MIS_KEY] = {"branches": list(branches)}
        patches = dict(to.get("patches", {}))
        patches["attn2_patch"] = list(patches.get("attn2_patch", [])) + [MISContextPatch(state)]
        to["patches"] = patches
    return {**model_options, "transformer_options": to}


def _group_size(n_branches: int, rows: int, branch_batch: int, masked: bool) -> int:
    """Branches per UNet call: ``branch_batch`` if set, else all of them unless free memory says otherwise; one at
    a time with an inpainting mask (ComfyUI's mask blend expects the latent's own batch)."""
    if masked:
        return 1
    if branch_batch > 0:
        return min(branch_batch, n_branches)
    device = mm.get_torch_device()
    if device.type == "cpu":
        return n_branches
    try:  # an estimate: a 64x64 SD1.5 UNet call needs about 0.5 GB per row at fp16
        per = 0.5 * 1024**3 * rows
        return max(1, min(n_branches, int(mm.get_free_memory(device) * 0.8 // per)))
    except Exception:  # an estimate only; batching everything is the default
        return n_branches


class _Denoiser:
    """ε of the CFG-guided model at one level, in LDM scaling (``x_t``), for the rows of one branch group."""

    def __init__(self, model, extra_args: dict, state: GroundingState, sigmas: torch.Tensor, sigma_of, branches):
        self.model, self.extra_args, self.state = model, extra_args, state
        self.sigmas, self.sigma_of, self.branches = sigmas, sigma_of, branches
        self.last_denoised = None

    def __call__(self, x_t: torch.Tensor, level, step: int) -> torch.Tensor:
        sigma = self.sigma_of(level)
        x_k = x_t * (1.0 + sigma * sigma) ** 0.5  # k-diffusion scaling: x = x_t / sqrt(alpha)
        opts = _options(self.extra_args.get("model_options", {}), self.state, self.sigmas, self.branches, step)
        s_in = x_k.new_full((x_k.shape[0],), sigma)
        denoised = self.model(x_k, s_in, **{**self.extra_args, "model_options": opts})
        self.last_denoised = denoised
        return (x_k - denoised) / sigma


def sample_mis(model, x, sigmas, extra_args=None, callback=None, disable=None, mis=0.36, method="plms",
               branch_batch=0, official_timesteps=None, alphas_cumprod=None):
    """ComfyUI sampler function (``KSAMPLER``): x [B, 4, h, w] in k-diffusion scaling at sigmas[0] -> the latent at
    sigmas[-1]. ``official_timesteps`` + ``alphas_cumprod``: the official PLMS levels (KSampler node only)."""
    extra_args = {} if extra_args is None else extra_args
    state = state_in(extra_args.get("model_options", {}))
    if state is None:
        raise ValueError("InstanceDiffusion MIS sampler: the MODEL has no InstanceDiffusion patch; connect it through "
                         "Apply InstanceDiffusion first")
    if method not in METHODS:
        raise ValueError(f"InstanceDiffusion MIS sampler: unknown method {method!r}; choose plms or a ComfyUI sampler")
    sigmas = sigmas.to(x.device)
    n_steps = len(sigmas) - 1
    k = mis_steps(n_steps, mis) if state.n > 0 else 0
    b = x.shape[0]
    n_br = state.n + 1
    group = _group_size(n_br, b * 2, branch_batch, extra_args.get("denoise_mask") is not None)
    groups = [list(range(g, min(g + group, n_br))) for g in range(0, n_br, group)] if k > 0 else []
    if method == "plms":
        return _sample_plms(model, x, sigmas, extra_args, callback, state, k, groups, official_timesteps,
                            alphas_cumprod)
    return _sample_comfy(model, x, sigmas, extra_args, callback, disable, state, k, groups, method)


def _sample_plms(model, x, sigmas, extra_args, callback, state, k, groups, timesteps, alphas_cumprod):
    n_steps = len(sigmas) - 1
    sig = [float(s) for s in sigmas.detach().cpu()]
    if timesteps is not None:  # the official levels: DDPM timesteps, alphas_cumprod[t], the end at t = 0's alpha
        levels = [int(t) for t in timesteps]
        if len(levels) != n_steps:
            raise ValueError(f"official PLMS: {len(levels)} timesteps for {n_steps} steps")
        alphas = official_alphas(levels, alphas_cumprod)
        by_level = dict(zip(levels, sig))

        def sigma_of(level):
            return by_level[level]
    else:  # PLMS on any schedule: alpha = 1 / (1 + sigma²); a final sigma 0 is the clean latent
        levels = list(range(n_steps))
        alphas = [1.0 / (1.0 + s * s) for s in sig]

        def sigma_of(level):
            return sig[level]

    b = x.shape[0]
    x_t = x * alphas[0] ** 0.5
    state0 = None
    if k > 0:
        merged = []
        for ids in groups:
            den = _Denoiser(model, extra_args, state, sigmas, sigma_of, ids)
            out, st = plms_levels(den, x_t.repeat(len(ids), 1, 1, 1), levels, alphas, 0, k)
            merged += list(out.split(b))
            if ids[0] == 0:
                state0 = PLMSState()
                state0.old_eps = [e[:b] for e in st.old_eps]  # the full branch's ε history continues
        x_t = mis_merge(merged)
    full = _Denoiser(model, extra_args, state, sigmas, sigma_of, None)

    def stepping(xx, level, i):
        e = full(xx, level, i)
        if callback is not None and full.last_denoised is not None:
            s = sigma_of(level)
            callback({"x": xx * (1.0 + s * s) ** 0.5, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i],
                      "denoised": full.last_denoised})
        return e

    x_t, _ = plms_levels(stepping, x_t, levels, alphas, k, n_steps, state0)
    return x_t / alphas[-1] ** 0.5


def _sample_comfy(model, x, sigmas, extra_args, callback, disable, state, k, groups, method):
    inner = comfy.samplers.sampler_object(method)
    fn, opts = inner.sampler_function, inner.extra_options
    mo = extra_args.get("model_options", {})
    b = x.shape[0]
    if k > 0:
        merged = []
        for ids in groups:
            ea = {**extra_args, "model_options": _options(mo, state, sigmas, ids)}
            out = fn(model, x.repeat(len(ids), 1, 1, 1), sigmas[: k + 1], extra_args=ea, callback=None,
                     disable=disable, **opts)
            merged += list(out.split(b))
        x = mis_merge(merged)
        if k >= len(sigmas) - 1:
            return x
    ea = {**extra_args, "model_options": _options(mo, state, sigmas)}

    def shifted(d):  # progress of the continuation counts from the merge step
        if callback is not None:
            callback({**d, "i": d["i"] + k})

    return fn(model, x, sigmas[k:], extra_args=ea, callback=shifted, disable=disable, **opts)


def mis_sampler(mis: float, method: str, branch_batch: int = 0, official_timesteps=None, alphas_cumprod=None):
    """The ``SAMPLER`` object (a ComfyUI ``KSAMPLER``) running :func:`sample_mis`."""
    opts = {"mis": float(mis), "method": method, "branch_batch": int(branch_batch)}
    if official_timesteps is not None:
        opts.update(official_timesteps=list(official_timesteps), alphas_cumprod=alphas_cumprod)
    return comfy.samplers.KSAMPLER(sample_mis, extra_options=opts)


class SamplerInstanceDiffusionMIS:
    """InstanceDiffusion's multi-instance sampler as a SAMPLER for SamplerCustom / SamplerCustomAdvanced."""

    DESCRIPTION = ("InstanceDiffusion's multi-instance sampler as a SAMPLER for SamplerCustom / "
                   "SamplerCustomAdvanced (any scheduler, guider and noise). The MODEL must come through Apply "
                   "InstanceDiffusion. For the first mis fraction of the steps each instance is denoised in its own "
                   "branch (its description as the prompt, only its own region), then the branches are averaged "
                   "once and sampling continues with the whole layout. method plms is the official PLMS update "
                   "(its history continues after the merge); any other method is that ComfyUI sampler.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "method": (list(METHODS), {"default": "plms",
                                       "tooltip": "plms: the official sampler's PLMS update, its history kept "
                                                  "across the merge; any other: that ComfyUI sampler (multistep "
                                                  "history restarts at the merge)."}),
            "mis": ("FLOAT", {"default": 0.36, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Fraction of the steps (0-1) run per instance before the one averaging "
                                         "(official 0.36; costs about (n+1)x for those steps, n = instances; "
                                         "0 = a plain run)."}),
            "branch_batch": ("INT", {"default": 0, "min": 0, "max": 31,
                                     "tooltip": "Branches per UNet call (0-31; 0 = as many as memory allows)."}),
        }}

    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("A SAMPLER for SamplerCustom / SamplerCustomAdvanced; its MODEL must come through Apply "
                       "InstanceDiffusion.",)
    FUNCTION = "get_sampler"
    CATEGORY = CATEGORY_INSTANCEDIFFUSION

    def get_sampler(self, method, mis, branch_batch=0):
        return (mis_sampler(mis, method, branch_batch),)
