"""InstanceDiffusion (arXiv 2402.03290) nodes for SD1.5: loader, converter, Apply, and the multi-instance sampler.

How the model is patched (all on a clone; the adapter weights exist once, however many clones follow):

- ``middle_patch`` (between attn1 and attn2 of each of the 16 transformer blocks, ``transformer_index`` 0..15):
  the UniFusion fuser of that block. Rows are routed with ``cond_or_uncond``: positive rows get the layout's
  grounding tokens, negative rows the all-null grounding tokens (as the official sampler does: the uncond pass is
  *not* plain SD). The position net runs once per (device, dtype) and the tokens are cached on the patch state.
- ``output_block_patch``: ScaleU at the 12 decoder joins (all rows, every step).
- alpha: the fusers are on for the first ``int(alpha·steps)`` steps. The step index comes from the schedule in
  ``transformer_options["sample_sigmas"]`` (ComfyUI v0.3+; this pack's MIS sampler always provides the full
  schedule); on older ComfyUI it falls back to a sigma threshold at the same fraction of the timestep range.
"""
from __future__ import annotations

import logging
import math
import os

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import torch

from ..core.instancediffusion import PRESET_NAMES, from_layout, null_inputs, single_instance_inputs
from ..core.instancediffusion.loading import CheckpointError, build_model, convert_to_safetensors, load_any
from ..core.instancediffusion.model import InstanceDiffusion
from ..core.instancediffusion.sampler import step_index_from_sigma
from ..core.layout import LayoutError
from .common import CATEGORY, LAYOUT, load_once
from .folders import model_list, model_path
from .patches import current_sigma, percent_window, rows_by_cond

log = logging.getLogger("comfyui-ifadapter")

ADAPTER = "INSTANCEDIFFUSION"
MIS_KEY = "ifa_id_mis"  # transformer_options: {"branches": [...], "per": B} while the MIS sampler runs branches
SIGMAS_KEY = "ifa_id_sigmas"  # transformer_options: the full schedule of the run (set by the MIS sampler)


# ------------------------------------------------------------------------------------------------ adapter handle


class Adapter:
    """The loaded weights (an eval-mode :class:`InstanceDiffusion`) and where they came from.

    Never deep-copied (``__deepcopy__`` returns self): every clone of a patched MODEL points at the same tensors.
    Fusers and ScaleU follow the UNet's device and dtype; the position net stays fp32.
    """

    def __init__(self, module: InstanceDiffusion, source: str, origin: str):
        self.module = module.eval().requires_grad_(False)
        self.module.position_net.float()
        self.source = source
        self.origin = origin
        self._patcher = None

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"InstanceDiffusion({os.path.basename(self.source)}, from {self.origin}, {self.module.config})"

    def patcher(self):
        """A ModelPatcher around the adapter (so ComfyUI's memory manager counts and moves it), created once."""
        if self._patcher is None:
            self._patcher = comfy.model_patcher.ModelPatcher(
                self.module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
        return self._patcher

    def to_device(self, device: torch.device) -> None:
        if self.module.scaleu.scaleu_s_0.device != torch.device(device):
            self.module.to(device)

    def to_dtype(self, dtype: torch.dtype) -> None:
        """Fusers and ScaleU in the UNet dtype; position net fp32."""
        if dtype.is_floating_point and self.module.fusers[0].linear.weight.dtype != dtype:
            self.module.fusers.to(dtype)
            self.module.scaleu.to(dtype)


def load_adapter(path: str) -> Adapter:
    """Any supported file (official .pth, converted .safetensors, logtd's set via any one of its files); loader nodes
    on the same file share one copy."""
    def load(p: str) -> Adapter:
        state, origin = load_any(p)
        return Adapter(build_model(state), p, origin)

    return load_once(path, None, load)


# ------------------------------------------------------------------------------------------------ model checks


def transformer_layout(model) -> tuple[list[int], list[int], int | None, list[int]]:
    """(widths of the transformer blocks in transformer_index order, their depths, cross-attention context width,
    backbone channels entering each output block) of a MODEL's UNet."""
    from comfy.ldm.modules.attention import SpatialTransformer

    dm = model.model.diffusion_model
    widths, depths, ctx = [], [], None
    blocks = list(getattr(dm, "input_blocks", [])) + [getattr(dm, "middle_block", [])] + \
        list(getattr(dm, "output_blocks", []))
    for blk in blocks:
        for layer in blk:
            if isinstance(layer, SpatialTransformer):
                widths.append(int(layer.in_channels))
                depths.append(len(layer.transformer_blocks))
                attn2 = getattr(layer.transformer_blocks[0], "attn2", None)
                if ctx is None and attn2 is not None:
                    ctx = int(attn2.to_k.in_features)
    scaleu = []
    try:
        prev = int(dm.middle_block[-1].out_channels)
        for ob in dm.output_blocks:
            scaleu.append(prev)
            prev = int(ob[0].out_channels)
    except (AttributeError, IndexError, TypeError):
        scaleu = []
    return widths, depths, ctx, scaleu


def check_model(model, adapter: Adapter) -> None:
    """Refuse a MODEL the adapter cannot patch, saying what it is and what would be right."""
    widths, depths, ctx, scaleu = transformer_layout(model)
    cfg = adapter.module.config
    want = list(cfg.fuser_channels)
    kind = type(getattr(model.model, "model_config", None)).__name__
    if widths != want or any(d != 1 for d in depths):
        raise ValueError(
            f"InstanceDiffusion works with SD1.5 models only: this MODEL ({kind}) has {len(widths)} transformer "
            f"blocks of widths {widths} and depths {depths}, the loaded InstanceDiffusion weights need 16 blocks of "
            f"depth 1 with widths {want}. Load an SD1.5 checkpoint (SDXL, SD2.x, SD3 and Flux are not supported).")
    if ctx != 768:
        raise ValueError(
            f"InstanceDiffusion works with SD1.5 models only: this MODEL ({kind}) has a {ctx}-wide text context "
            "(SD1.5: 768; SD2.x: 1024). Load an SD1.5 checkpoint.")
    if scaleu and scaleu != list(cfg.scaleu_channels):
        raise ValueError(f"InstanceDiffusion: this MODEL's decoder widths {scaleu} do not match the ScaleU weights "
                         f"{list(cfg.scaleu_channels)}; load an SD1.5 checkpoint.")


# ------------------------------------------------------------------------------------------------ patch state


class GroundingState:
    """Everything one Apply node prepared: the grounding inputs (cpu), the per-instance caption contexts for MIS,
    and the settings. Shared by the patch objects of every clone (never deep-copied); the only mutable part is the
    token cache, which depends only on (device, dtype).
    """

    def __init__(self, adapter: Adapter, inputs: dict, captions: list, strength: float, alpha: float,
                 sigma_threshold: float, scaleu: bool, names: list[str]):
        self.adapter = adapter
        self.inputs = inputs
        self.captions = captions  # per instance: CLIP hidden states [1, 77·k, 768] of its description
        self.strength = float(strength)
        self.alpha = float(alpha)
        self.sigma_threshold = float(sigma_threshold)
        self.scaleu = bool(scaleu)
        self.names = names
        self.n = len(names)
        self._tokens: dict = {}
        self._rows: dict = {}
        self._scale_memo: tuple | None = None  # (sigma, schedule, scale) of the current UNet call
        self.position_net_runs = 0  # how many times the position net ran (once per device/dtype)

    def __deepcopy__(self, memo):
        return self

    def tokens(self, device: torch.device, dtype: torch.dtype, instances: bool = False) -> torch.Tensor:
        """Table [2 (+ n), 184, 768]: 0 = null grounding, 1 = the full layout, 2 + i = instance i alone (MIS only,
        ``instances=True``).

        Computed once per (device, dtype) and cached: the position net never runs per block or per step."""
        key = (str(device), dtype)
        t = self._tokens.get(key)
        if t is not None and (not instances or t.shape[0] == 2 + self.n):
            return t
        module = self.adapter.module
        self.adapter.to_device(device)
        drop = self.inputs["drop"]

        def encode(inp: dict, flags: torch.Tensor) -> torch.Tensor:
            batch = {k: v.to(device) for k, v in inp.items() if k != "drop"}
            self.position_net_runs += 1
            with torch.no_grad():
                return module.encode({**batch, "drop": flags})

        if t is None:
            t = torch.cat([encode(null_inputs(), torch.zeros(4, dtype=torch.bool)), encode(self.inputs, drop)], 0)
        else:
            t = t.float()
        if instances:  # one instance at a time: 30 mask stacks of 30x512x512 at once would be ~1 GB
            t = torch.cat([t[:2]] + [encode(single_instance_inputs(self.inputs, i), drop) for i in range(self.n)])
        t = t.to(dtype)
        self._tokens = {key: t}  # one device/dtype at a time
        return t

    def row_index(self, extra_options: dict, batch: int) -> torch.Tensor:
        """Per-row index into :meth:`tokens`: null for negative rows, full (or the MIS branch) for positive rows."""
        cou = tuple(extra_options.get("cond_or_uncond") or [0])
        mis = extra_options.get(MIS_KEY)
        branches = tuple(mis["branches"]) if mis else (0,)
        key = (cou, batch, branches)
        idx = self._rows.get(key)
        if idx is None:
            positive, chunk = rows_by_cond(extra_options, batch)
            per_chunk = batch // len(cou)
            per_branch = max(1, per_chunk // len(branches))
            rows = []
            for r in range(batch):
                if not bool(positive[r]):
                    rows.append(0)
                else:
                    b = branches[min((r - chunk[r] * per_chunk) // per_branch, len(branches) - 1)]
                    rows.append(1 + b)  # branch 0 = full -> 1; branch i+1 = instance i -> 2 + i
            idx = torch.tensor(rows, dtype=torch.long)
            self._rows[key] = idx
        return idx

    def fuser_scale(self, extra_options: dict) -> float:
        """strength × (1 while the step index < int(alpha·steps), else 0); computed once per UNet call."""
        if self.strength == 0.0:
            return 0.0
        if extra_options.get("sigmas") is None:
            return self.strength
        sigma = current_sigma(extra_options)
        sched = extra_options.get(SIGMAS_KEY)
        if sched is None:
            sched = extra_options.get("sample_sigmas")
        memo = self._scale_memo
        if memo is not None and memo[0] == sigma and memo[1] is sched:
            return memo[2]
        if sched is not None and len(sched) > 1:
            steps = len(sched) - 1
            on = step_index_from_sigma(sigma, sched[:-1]) < int(self.alpha * steps)
        else:  # 2024 ComfyUI: no schedule in transformer_options
            on = sigma >= self.sigma_threshold
        scale = self.strength if on else 0.0
        self._scale_memo = (sigma, sched, scale)
        return scale


class FuserPatch:
    """``middle_patch``: the UniFusion fuser of transformer block ``transformer_index``."""

    def __init__(self, state: GroundingState):
        self.state = state

    def __deepcopy__(self, memo):
        return self

    def to(self, arg):  # ModelPatcher.model_patches_to(device) then (dtype)
        if isinstance(arg, torch.dtype):
            self.state.adapter.to_dtype(arg)
        elif isinstance(arg, (torch.device, str)):
            self.state.adapter.to_device(torch.device(arg))
        return self

    def __call__(self, x: torch.Tensor, extra_options: dict) -> torch.Tensor:
        st = self.state
        scale = st.fuser_scale(extra_options)
        if scale == 0.0:
            return x
        st.adapter.to_device(x.device)
        idx = st.row_index(extra_options, x.shape[0])
        table = st.tokens(x.device, torch.float32, instances=bool((idx >= 2).any()))
        objs = table[idx.to(x.device)]
        return st.adapter.module.fuse(x, objs, int(extra_options["transformer_index"]), scale)


class ScaleUPatch:
    """``output_block_patch``: ScaleU before each decoder concat (all rows, every step)."""

    def __init__(self, state: GroundingState):
        self.state = state

    def __deepcopy__(self, memo):
        return self

    def to(self, arg):
        return self

    def __call__(self, h: torch.Tensor, hsp: torch.Tensor, transformer_options: dict):
        block = transformer_options.get("block")
        if block is None or block[0] != "output":
            return h, hsp
        self.state.adapter.to_device(h.device)
        return self.state.adapter.module.scale_u(h, hsp, int(block[1]))


class MISContextPatch:
    """``attn2_patch`` used only by the MIS sampler: positive rows of instance branch i attend to instance i's own
    caption instead of the global prompt (the official per-instance branch input)."""

    def __init__(self, state: GroundingState):
        self.state = state

    def __deepcopy__(self, memo):
        return self

    def __call__(self, n, context, value, extra_options):
        mis = extra_options.get(MIS_KEY)
        if not mis or context is None:
            return n, context, value
        idx = self.state.row_index(extra_options, context.shape[0])
        if not bool((idx >= 2).any()):
            return n, context, value
        caps = [self.state.captions[int(i) - 2] if int(i) >= 2 else None for i in idx]
        length = context.shape[1]
        for c in caps:
            if c is not None:
                length = length * c.shape[1] // math.gcd(length, c.shape[1])
        rows = []
        for r, c in enumerate(caps):
            src = context[r:r + 1] if c is None else c.to(device=context.device, dtype=context.dtype)
            rows.append(src.repeat(1, length // src.shape[1], 1))  # repeating tokens leaves attention unchanged
        ctx = torch.cat(rows, 0)
        return n, ctx, ctx


def find_state(model) -> GroundingState | None:
    for p in model.model_options.get("transformer_options", {}).get("patches", {}).get("middle_patch", []):
        if isinstance(p, FuserPatch):
            return p.state
    return None


# ------------------------------------------------------------------------------------------------ nodes


class InstanceDiffusionLoader:
    """Load InstanceDiffusion weights from models/instancediffusion."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_list("instancediffusion"), {
            "tooltip": "instancediffusion_sd15.pth (official), a converted .safetensors, or logtd's "
                       "position_net.ckpt (fusers.ckpt and scaleu.ckpt must sit next to it)"})}}

    RETURN_TYPES = (ADAPTER,)
    RETURN_NAMES = ("instancediffusion",)
    FUNCTION = "load"
    CATEGORY = CATEGORY + "/instancediffusion"

    def load(self, model_name):
        path = model_path("instancediffusion", model_name)
        try:
            adapter = load_adapter(path)
        except CheckpointError as e:
            raise ValueError(f"InstanceDiffusion loader: {e}") from None
        log.info("[comfyui-ifadapter] loaded %r", adapter)
        return (adapter,)


class InstanceDiffusionConvert:
    """Write a compact .safetensors copy (fp16 by default) of any InstanceDiffusion file; it loads in seconds."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_list("instancediffusion"),),
                             "output_name": ("STRING", {"default": "instancediffusion_sd15_fp16.safetensors"}),
                             "fp16": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    FUNCTION = "convert"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY + "/instancediffusion"

    def convert(self, model_name, output_name, fp16):
        src = model_path("instancediffusion", model_name)
        name = os.path.basename(output_name.strip())
        if not name.endswith(".safetensors"):
            name += ".safetensors"
        dst = os.path.join(folder_paths.get_folder_paths("instancediffusion")[0], name)
        if os.path.abspath(dst) == os.path.abspath(src):
            raise ValueError(f"InstanceDiffusion convert: output {name!r} would overwrite the source")
        try:
            meta = convert_to_safetensors(src, dst, torch.float16 if fp16 else None)
        except CheckpointError as e:
            raise ValueError(f"InstanceDiffusion convert: {e}") from None
        msg = f"wrote {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB, from {meta['origin']})"
        return {"ui": {"text": [msg]}, "result": (dst,)}


class ApplyInstanceDiffusion:
    """Ground an SD1.5 MODEL on a layout: each instance's description goes where its box / mask / scribble / point
    is. Returns a patched clone; the input MODEL is untouched."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "instancediffusion": (ADAPTER,),
            "clip": ("CLIP",),
            "layout": (LAYOUT,),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.05,
                                   "tooltip": "scales the fusers' contribution (1 = as trained)"}),
            "alpha": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.01,
                                "tooltip": "fraction of the steps with the fusers on (official 0.8)"}),
            "preset": (list(PRESET_NAMES), {"default": "auto",
                                            "tooltip": "which input kinds the model uses (the official test "
                                                       "configs); auto picks from what the layout has"}),
            "scaleu": ("BOOLEAN", {"default": True}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY + "/instancediffusion"

    def apply(self, model, instancediffusion, clip, layout, strength, alpha, preset, scaleu):
        adapter: Adapter = instancediffusion
        check_model(model, adapter)
        active = layout.active()
        if not active:
            raise LayoutError("InstanceDiffusion: the layout has no active instances; add at least one")
        pooled, captions = [], []
        for i, inst in enumerate(active):
            tokens = clip.tokenize(inst.description)
            cond, pool = clip.encode_from_tokens(tokens, return_pooled="unprojected")
            if pool is None or pool.shape[-1] != 768:
                raise ValueError(f'InstanceDiffusion: instance {i} ("{inst.description}"): the CLIP gave a pooled '
                                 f"embedding of shape {None if pool is None else tuple(pool.shape)}; an SD1.5 CLIP "
                                 "(CLIP-L, 768) is needed")
            pooled.append(pool.reshape(-1).float().cpu())
            captions.append(cond.float().cpu())
        inputs = from_layout(layout, torch.stack(pooled), preset=preset)
        _, sigma_end = percent_window(model, 0.0, alpha)
        state = GroundingState(adapter, inputs, captions, strength, alpha, sigma_end, scaleu,
                               [inst.description for inst in active])
        m = model.clone()
        m.set_model_patch(FuserPatch(state), "middle_patch")
        if scaleu:
            m.set_model_output_block_patch(ScaleUPatch(state))
        if hasattr(m, "set_additional_models"):  # v0.3+: the adapter is loaded/offloaded with the UNet
            m.set_additional_models("ifa_instancediffusion", [adapter.patcher()])
        return (m,)


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

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": ("INT", {"default": 30, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "mis": ("FLOAT", {"default": 0.36, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "fraction of the steps run per instance before the one averaging "
                                         "(official 0.36; costs about (n+1)× for those steps)"}),
        }, "optional": {
            "branch_batch": ("INT", {"default": 0, "min": 0, "max": 31,
                                     "tooltip": "branches per UNet call (0 = as many as memory allows)"}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY + "/instancediffusion"

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               mis, branch_batch=0):
        return (mis_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                           denoise, mis, branch_batch),)


NODE_CLASS_MAPPINGS = {
    "IFAInstanceDiffusionLoader": InstanceDiffusionLoader,
    "IFAInstanceDiffusionConvert": InstanceDiffusionConvert,
    "IFAApplyInstanceDiffusion": ApplyInstanceDiffusion,
    "IFAInstanceDiffusionSampler": InstanceDiffusionSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IFAInstanceDiffusionLoader": "Load InstanceDiffusion",
    "IFAInstanceDiffusionConvert": "Convert InstanceDiffusion to safetensors",
    "IFAApplyInstanceDiffusion": "Apply InstanceDiffusion",
    "IFAInstanceDiffusionSampler": "KSampler (InstanceDiffusion MIS)",
}
