"""IFAdapter nodes (SDXL; SD1.5 / SD2.x for adapters trained for them): load the adapter, encode per-instance
appearance tokens, preview the instance semantic map, and patch a model.

The graph: ``IFAdapter Loader`` -> ``Encode Appearance Tokens`` (CLIP + layout) -> ``Apply IFAdapter``
(MODEL + adapter + tokens + layout -> MODEL). The heavy work lives in ``core.ifadapter``; this module only speaks
ComfyUI: model folders, CLIP encoding, the attn2 patch chain and ``cond_or_uncond`` routing.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import numpy as np
import torch

from ..core.ifadapter import (
    COMFY_KEY_TO_INDEX,
    IFAdapter,
    convert_to_safetensors,
    load_ifadapter,
)
from ..core.ifadapter.adapter import TEXT_DEPTHS
from ..core.ifadapter.families import DEFAULT_FAMILY, FAMILIES, Family, unet_refusal
from ..core.ifadapter.frames import FramesRuntime, FrameTokens
from ..core.ifadapter.runtime import IFAdapterRuntime, InstanceTokens, token_grid
from ..core.ifadapter.semantic_map import MAX_OBJ, InstanceGeometry
from ..core.ifadapter.token_sets import OFFICIAL as OFFICIAL_TOKEN_SET
from ..core.ifadapter.token_sets import TOKEN_SETS, select_tokens
from ..core.layout import Layout
from ..core.layout.timeline import Timeline, at_frame, frame_count, frame_span
from ..core.paths import PathRefused, output_file, write_into
from ..core.render import hex_to_rgb, preview_size
from . import folders
from .common import CATEGORY_IFADAPTER, CATEGORY_UTILS, LAYOUT, load_once, save_preview
from .description_tokens import WEIGHT_SYNTAX, description_tokens
from .frames import FrameTable, chunk_frames
from .patches import add_attn2_contribution, rows_by_cond
from .steps import StepWindow

log = logging.getLogger("comfyui-ifadapter")

IFADAPTER = "IFADAPTER"
IFA_TOKENS = "IFA_TOKENS"
IFADAPTER_KEYS: tuple[tuple[str, int, int], ...] = tuple(sorted(COMFY_KEY_TO_INDEX))  # the SDXL family's 16
DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------------------------
# Loader and converter


def load_adapter_cached(path: str, dtype: torch.dtype | None) -> IFAdapter:
    """Load an adapter file once: two loader nodes on the same file (and dtype) share one module."""
    return load_once(path, str(dtype), lambda p: load_ifadapter(p, dtype=dtype))


class IFAdapterLoader:
    DESCRIPTION = ("Loads IFAdapter weights from models/ifadapter: the official spd_adapter.bin (read safely, never "
                   "executing pickled code) or a .safetensors conversion (preferred: memory-mapped). Every key and "
                   "shape is checked against the official layout, or against the layout a trained file's metadata "
                   "declares (an adapter trained for SD1.5 or SD2.x by this pack's trainer). Connect its output to "
                   "Encode Appearance Tokens and Apply IFAdapter.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ifadapter_name": (folders.model_list("ifadapter"), {
                "tooltip": "A file in models/ifadapter: spd_adapter.bin (official) or its .safetensors conversion."}),
            "dtype": (list(DTYPES), {"default": "auto",
                                     "tooltip": "Weight precision: auto keeps the file's dtype; float16 or bfloat16 "
                                                "halve the memory of a float32 file."}),
        }}

    RETURN_TYPES = (IFADAPTER,)
    RETURN_NAMES = ("ifadapter",)
    OUTPUT_TOOLTIPS = ("The IFAdapter weights (shared by every graph that loads the same file and dtype).",)
    FUNCTION = "load"
    CATEGORY = CATEGORY_IFADAPTER

    def load(self, ifadapter_name, dtype="auto"):
        return (load_adapter_cached(folders.model_path("ifadapter", ifadapter_name), DTYPES[dtype]),)


class IFAdapterConvert:
    DESCRIPTION = ("Converts an IFAdapter checkpoint (e.g. spd_adapter.bin) to .safetensors in models/ifadapter "
                   "after a strict key/shape check; run it once, then load the .safetensors file (faster, "
                   "memory-mapped). Returns the path written. Command line: python -m core.ifadapter.convert SRC "
                   "DST.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ifadapter_name": (folders.model_list("ifadapter"), {
                "tooltip": "The file in models/ifadapter to convert (e.g. spd_adapter.bin)."}),
            "output_name": ("STRING", {"default": "", "tooltip": "File name to write in the same folder (a name, "
                                                                 "not a path); empty: the source name with "
                                                                 ".safetensors."}),
            "dtype": (["keep", "float16", "bfloat16", "float32"], {
                "default": "keep", "tooltip": "Precision of the written tensors; keep = as in the source."}),
            "overwrite": ("BOOLEAN", {"default": False,
                                      "tooltip": "Replace an existing file of that name; off refuses instead."}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The full path of the .safetensors file written.",)
    FUNCTION = "convert"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_UTILS

    def convert(self, ifadapter_name, output_name="", dtype="keep", overwrite=False):
        src = folders.model_path("ifadapter", ifadapter_name)
        name = output_name.strip() or os.path.splitext(os.path.basename(ifadapter_name))[0]
        try:
            dst = output_file(os.path.dirname(src), name, ".safetensors", overwrite)
        except PathRefused as e:
            raise ValueError(f"IFAdapter convert: {e}") from None
        if os.path.realpath(dst) == os.path.realpath(src):
            raise ValueError(f"{ifadapter_name} is already a .safetensors file; choose another output_name")
        counts = []
        write_into(dst, lambda tmp: counts.append(
            convert_to_safetensors(src, tmp, dtype=None if dtype == "keep" else DTYPES[dtype])), overwrite)
        msg = f"wrote {counts[0]} tensors to {dst}"
        log.info("[comfyui-ifadapter] %s", msg)
        return {"ui": {"text": [msg]}, "result": (dst,)}


# --------------------------------------------------------------------------------------------------------------
# Appearance tokens


_FEATURES: OrderedDict = OrderedDict()  # (clip fingerprint, text) -> (hidden [3, L, C], eot [C], mask [L])
_FEATURES_MAX = 512
_FEATURES_LOCK = threading.Lock()
ENCODE_CALLS = {"clip": 0}  # how many CLIP encodes ran (tests check the per-text cache)


def _clip_family(cm) -> Family | None:
    """The family whose text encoders a ComfyUI CLIP model holds (SDXL: clip_l + clip_g; SD1.x: clip_l only; SD2.x:
    clip_h only), or None."""
    for fam in FAMILIES.values():
        names = {e.attr for e in fam.encoders}
        others = {e.attr for f in FAMILIES.values() for e in f.encoders} - names
        if all(hasattr(cm, n) for n in names) and not any(hasattr(cm, n) for n in others):
            return fam
    return None


def _check_clip(clip, fam: Family) -> None:
    """Refuse a CLIP that is not the adapter family's (one message naming both), or one too shallow to read."""
    cm = getattr(clip, "cond_stage_model", None)
    found = _clip_family(cm) if cm is not None else None
    if found is None or found.name != fam.name:
        what = f"the CLIP of an {found.label} checkpoint" if found is not None else type(cm).__name__
        widths = " + ".join(f"CLIP-{e.key.upper()} {e.width}" for e in fam.encoders)
        raise ValueError(
            f"Encode Appearance Tokens: this IFAdapter was trained for {fam.label} and needs an {fam.label} CLIP "
            f"({widths}); the connected CLIP is {what}. Connect the CLIP output of an {fam.label} checkpoint loader.")
    for enc in fam.encoders:
        layers = getattr(getattr(cm, enc.attr), "num_layers", None)
        if layers is not None and layers < -min(TEXT_DEPTHS):
            raise ValueError(f"IFAdapter reads hidden states {TEXT_DEPTHS} but this CLIP's {enc.attr} has only "
                             f"{layers} layers")


def _clip_fingerprint(clip) -> tuple:
    patcher = getattr(clip, "patcher", None)
    uuid = getattr(patcher, "patches_uuid", None)
    patches = getattr(patcher, "patches", {}) or {}
    sig = tuple(sorted((k, tuple((p[0], id(p[1])) for p in v)) for k, v in patches.items()))
    return (id(clip.cond_stage_model), str(uuid), hash(sig))


def encode_descriptions(clip, texts: list[str], weight_syntax: str = WEIGHT_SYNTAX[0],
                        family: str = DEFAULT_FAMILY) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CLIP features of each description as an IFAdapter of ``family`` reads them.

    Returns ``hidden`` ``[n, 3, 77, C]`` (hidden states -2, -4, -6 of the family's encoders concatenated, no final
    LayerNorm: SDXL CLIP-L 768 ++ CLIP-G 1280 = 2048, SD1.5 CLIP-L 768, SD2.x OpenCLIP-H 1024), ``eot`` ``[n, C]``
    (hidden -2 at the EoT) and ``word_mask`` ``[n, 77]`` (positions 1..EoT-1).
    Tokens as the official pipeline makes them (:mod:`.description_tokens`): the raw text through the CLIP
    tokenizer, cut after exactly 75 tokens with a warning naming what was cut; ``weight_syntax="strip (ComfyUI)"``
    parses ComfyUI's prompt-weight syntax away first. Each distinct (text, mode) is encoded once (cached per CLIP).
    """
    fam = FAMILIES[family]
    _check_clip(clip, fam)
    encoders = tuple((e.key, e.special) for e in fam.encoders)
    fp = (*_clip_fingerprint(clip), weight_syntax, fam.name)
    todo: list[str] = []
    with _FEATURES_LOCK:
        for t in texts:
            if (fp, t) in _FEATURES:
                _FEATURES.move_to_end((fp, t))
            elif t not in todo:
                todo.append(t)
    if todo:
        chunks: dict[str, list] = {key: [] for key, _ in encoders}
        masks, eots = [], []
        for t in todo:
            tok, _, eot = description_tokens(clip, t, weight_syntax, encoders)
            for key, _ in encoders:
                chunks[key].append(tok[key][0])
            mask = torch.zeros(len(tok[encoders[0][0]][0]), dtype=torch.bool)  # tokenizer 1's words less BoS, EoT
            mask[1:eot] = True
            masks.append(mask)
            eots.append(eot)
        n, length = len(todo), len(masks[0])
        per_depth = []
        cm = clip.cond_stage_model
        saved = {e.attr: getattr(getattr(cm, e.attr), "layer_norm_hidden_state", None) for e in fam.encoders}
        try:
            for name, val in saved.items():
                if val:  # IFAdapter reads hidden states without the final LayerNorm
                    getattr(cm, name).layer_norm_hidden_state = False
            for depth in TEXT_DEPTHS:
                c = clip.clone()
                c.clip_layer(depth)
                cond = c.encode_from_tokens(chunks)
                ENCODE_CALLS["clip"] += 1
                if isinstance(cond, tuple):
                    cond = cond[0]
                per_depth.append(cond.reshape(n, length, -1).float().cpu())
        finally:
            for name, val in saved.items():
                if val:
                    getattr(cm, name).layer_norm_hidden_state = val
        hidden = torch.stack(per_depth, dim=1)  # [n, 3, L, C]
        if hidden.shape[-1] != fam.context_dim:
            raise ValueError(f"this CLIP encodes to {hidden.shape[-1]} channels; an {fam.label} IFAdapter needs "
                             f"{fam.context_dim}")
        with _FEATURES_LOCK:
            for i, t in enumerate(todo):
                _FEATURES[(fp, t)] = (hidden[i], hidden[i, 0, eots[i]].clone(), masks[i])
            while len(_FEATURES) > _FEATURES_MAX:
                _FEATURES.popitem(last=False)
    with _FEATURES_LOCK:
        feats = [_FEATURES[(fp, t)] for t in texts]
    return (torch.stack([f[0] for f in feats]), torch.stack([f[1] for f in feats]),
            torch.stack([f[2] for f in feats]))


def _layout_for_ifadapter(layout: Layout, descriptions: bool = True) -> Layout:
    """The layout checked for IFAdapter: at most MAX_OBJ enabled instances, at least one, and (when the node
    encodes or applies appearance tokens, ``descriptions``) a description for each."""
    layout.validate(max_instances=MAX_OBJ, backend="IFAdapter")
    if not layout.active():
        raise ValueError("the layout has no enabled instance; IFAdapter needs at least one box with a description")
    if descriptions:
        layout.require_descriptions("IFAdapter")
    return layout


class EncodeAppearanceTokens:
    DESCRIPTION = ("Per-instance appearance tokens for IFAdapter: each description is encoded by the text encoders "
                   "the adapter was trained with (SDXL: both; SD1.5: CLIP-L; hidden states -2, -4, -6 and the EoT "
                   "feature), resampled to 12 tokens and tagged with its box. Also builds the unconditional tokens (boxes kept, descriptions zeroed). Runs once per "
                   "prompt, not per sampling step. Connect the tokens to Apply IFAdapter, with the same layout.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "The CLIP of a checkpoint of the adapter's family (SDXL: CLIP-L + "
                                         "OpenCLIP-G; SD1.5: CLIP-L), after any LoRA."}),
            "ifadapter": (IFADAPTER, {"tooltip": "From IFAdapter Loader."}),
            "layout": (LAYOUT, {"tooltip": "The layout; every enabled instance needs a description and a region "
                                           "(IFAdapter reads each instance's bounding box; at most 10 instances)."}),
        }, "optional": {
            "weight_syntax": (list(WEIGHT_SYNTAX), {
                "default": WEIGHT_SYNTAX[0],
                "tooltip": "How '(red:1.3)' or '\\(' in a description is read: as plain text through the CLIP "
                           "tokenizer like the official IFAdapter (keep as text, the default), or as ComfyUI "
                           "prompt-weight syntax that is removed, weights dropped (strip). Descriptions are cut "
                           "after 75 tokens either way, with a warning."}),
        }}

    RETURN_TYPES = (IFA_TOKENS,)
    RETURN_NAMES = ("tokens",)
    OUTPUT_TOOLTIPS = ("Per-instance appearance tokens (positive and unconditional) for Apply IFAdapter.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY_IFADAPTER

    def encode(self, clip, ifadapter, layout, weight_syntax=WEIGHT_SYNTAX[0]):
        layout = _layout_for_ifadapter(layout)
        texts = [inst.description for inst in layout.active()]  # as written: the official tokenises the raw text
        hidden, eot, mask = encode_descriptions(clip, texts, weight_syntax, ifadapter.family.name)
        if layout.timed:
            return (self._encode_frames(ifadapter, layout, texts, hidden, eot, mask),)
        boxes = layout.boxes_normalized()
        ref = ifadapter.text_proj_model.proj_in.weight
        with torch.no_grad():
            cond = ifadapter.encode_instances(hidden.to(ref.device, ref.dtype), mask.to(ref.device),
                                              eot.to(ref.device, ref.dtype), boxes.to(ref.device))
            uncond = ifadapter.encode_uncond(boxes.to(ref.device), seq_len=hidden.shape[2])
        return (InstanceTokens(cond.cpu(), uncond.cpu(), boxes, tuple(texts)),)

    @staticmethod
    def _encode_frames(ifadapter, layout, texts, hidden, eot, mask) -> FrameTokens:
        """Tokens of a layout over time: each description once; each frame's box embedding is added when the frame
        is sampled (FramesRuntime), so the cost does not grow with frames x instances."""
        tl = Timeline(layout, frame_span(layout))
        boxes = torch.stack([lay.boxes_normalized() for lay in tl.layouts])  # [U, n, 4]
        ref = ifadapter.text_proj_model.proj_in.weight
        with torch.no_grad():
            cond = ifadapter.encode_descriptions(hidden.to(ref.device, ref.dtype), mask.to(ref.device),
                                                 eot.to(ref.device, ref.dtype))
            uncond = ifadapter.encode_uncond_descriptions(len(texts), hidden.shape[2], ref.device)
        return FrameTokens(cond.cpu(), uncond.cpu(), boxes, tl.index, tl.visible, frame_count(layout), tuple(texts))


# --------------------------------------------------------------------------------------------------------------
# Instance semantic map preview

LEVELS = {"latent/4 (IFAdapter layers)": 2, "latent/2": 1, "latent": 0}


def layer_grid(latent_h: int, latent_w: int, downsamples: int) -> tuple[int, int]:
    """Token grid after ``downsamples`` SDXL down levels (each ``ceil(prev / 2)``)."""
    h, w = latent_h, latent_w
    for _ in range(downsamples):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


class BuildInstanceSemanticMap:
    DESCRIPTION = ("The per-instance masks IFAdapter uses inside the model: each box rasterised on a layer's token "
                   "grid with the official cell rule (default latent/4, the grid of all 16 IFAdapter layers), the "
                   "foreground (1 - M_bg), and a preview at canvas size. Use it to check what the adapter will "
                   "see (small boxes can vanish on the coarse grid); generation does not need it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "The layout connected to Apply IFAdapter."}),
                             "level": (list(LEVELS), {"default": next(iter(LEVELS)),
                                                      "tooltip": "Which token grid to rasterise on: latent/4 is "
                                                                 "the grid of all 16 IFAdapter layers."})},
                "optional": {"latent": ("LATENT", {"tooltip": "The latent you sample; its size wins over the "
                                                              "layout canvas / 8."})}}

    RETURN_TYPES = ("MASK", "IMAGE", "MASK")
    RETURN_NAMES = ("instance_masks", "preview", "foreground")
    OUTPUT_TOOLTIPS = ("One mask per enabled instance on the chosen grid.",
                       "The masks drawn in the instance colours at canvas size, with the grid cells outlined.",
                       "1 where any instance is (1 - M_bg), on the chosen grid.")
    FUNCTION = "build"
    CATEGORY = CATEGORY_IFADAPTER

    def build(self, layout, level, latent=None):
        layout = _layout_for_ifadapter(at_frame(layout, 0) if layout.timed else layout, descriptions=False)
        if latent is not None:
            lh, lw = latent["samples"].shape[-2:]
        else:
            lh, lw = max(1, layout.height // 8), max(1, layout.width // 8)
        h, w = layer_grid(int(lh), int(lw), LEVELS[level])
        geo = InstanceGeometry.from_boxes(layout.boxes_normalized()[None], h, w)
        masks = geo.cells[0].float()  # [n, h, w]
        fg = geo.foreground.float()  # [1, h, w]
        preview = self._preview(layout, masks)
        return {"ui": {"images": save_preview(preview, "ifa_ism")}, "result": (masks, preview, fg)}

    @staticmethod
    def _preview(layout: Layout, masks: torch.Tensor) -> torch.Tensor:
        n, h, w = masks.shape
        img = np.full((h, w, 3), 0.12, dtype=np.float32)
        for i, inst in enumerate(layout.active()):  # later instances on top; overlaps blend
            col = np.array(hex_to_rgb(inst.color or "#ff0000"), dtype=np.float32) / 255.0
            m = masks[i].numpy().astype(bool)
            img[m] = 0.35 * img[m] + 0.65 * col
        pw, ph = preview_size(layout.width, layout.height)  # the canvas size, scaled down past 2048 px
        big = torch.from_numpy(img).permute(2, 0, 1)[None]
        big = torch.nn.functional.interpolate(big, size=(ph, pw), mode="nearest")[0]
        big = big.permute(1, 2, 0).contiguous()
        ys = (torch.arange(ph) * h // ph)
        xs = (torch.arange(pw) * w // pw)
        edge_y = torch.cat([torch.tensor([False]), ys[1:] != ys[:-1]])
        edge_x = torch.cat([torch.tensor([False]), xs[1:] != xs[:-1]])
        if ph // h >= 6 and pw // w >= 6:  # cell borders when cells are large enough to see
            big[edge_y] *= 0.6
            big[:, edge_x] *= 0.6
        return big[None]


# --------------------------------------------------------------------------------------------------------------
# Model patch


def model_refusal(model, adapter: IFAdapter | None = None, family: str | None = None) -> str | None:
    """None if ``model`` (a ModelPatcher) is a UNet of the family the adapter was trained for (``family`` when no
    adapter is given) with the adapter's layers at its widths, else one message saying why not. Reads the model's
    ``unet_config`` (ComfyUI's model detection, the same on every supported ComfyUI version)."""
    cfg = getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}
    fam = adapter.family if adapter is not None else FAMILIES[family or DEFAULT_FAMILY]
    if adapter is not None:
        return unet_refusal(cfg, fam, adapter.layer_keys, adapter.hidden_size, adapter.heads)
    return unet_refusal(cfg, fam, fam.layers)


class IFAdapterLayer:
    """The contribution on one attn2 key: ``(q, out, extra_options) -> delta`` or None outside the window.

    Shares one :class:`IFAdapterRuntime` with the other 15 layers; deep copies return the object itself so that
    ``ModelPatcher.clone()`` never duplicates the adapter weights or the token caches.
    """

    def __init__(self, runtime: IFAdapterRuntime | FramesRuntime, key: tuple, window: StepWindow,
                 aspect: float | None = None, frames: FrameTable | None = None):
        self.runtime, self.key = runtime, tuple(key)
        self.window = window  # official: on while i < steps · control_ratio (end_percent), counted in steps
        self.frames = frames
        self.aspect = aspect
        self.calls = 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, q: torch.Tensor, out: torch.Tensor, extra_options: dict):
        if self.runtime.scale == 0.0:
            return None
        if not self.window.active(extra_options):
            return None
        shape = extra_options.get("original_shape")
        act = extra_options.get("activations_shape")
        grid = token_grid(q.shape[1], list(shape)[2:4] if shape is not None and len(shape) >= 4 else None,
                          list(act)[2:4] if act is not None and len(act) >= 4 else None, self.aspect)
        positive, chunk = rows_by_cond(extra_options, q.shape[0])
        self.calls += 1
        if self.frames is not None:  # a layout over time: row r of each chunk is a frame (or a window's frame)
            per = q.shape[0] // (chunk[-1] + 1)
            rows = self.frames.rows(chunk_frames(extra_options, per))
            return self.runtime.layer_delta(self.key, q, positive, grid, [rows[r - c * per] for r, c in enumerate(chunk)])
        return self.runtime.layer_delta(self.key, q, positive, grid)


class ApplyIFAdapter:
    DESCRIPTION = ("Patches a model with IFAdapter: in its cross-attention layers (SDXL: 16, middle block and output "
                   "blocks 0-2, transformer blocks 0-3; SD1.5 / SD2.x adapters: 4, middle block and output blocks "
                   "3-5) each instance's tokens build a semantic map inside its box, "
                   "fused by the gated, size-aware rule and added before the layer's output projection. Positive "
                   "rows get the description tokens, negative rows the box-only tokens. end_percent is the official "
                   "control_ratio: 1.0 with base SDXL, 0.3 recommended with LoRAs / community checkpoints. Chains "
                   "with IPAdapter and other attn2 patches applied before or after it. A model of another family than "
                   "the adapter's is refused.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A model of the adapter's family: SDXL base or a fine-tune (not the "
                                           "refiner) for the official weights; SD1.5 for an SD1.5 adapter; after "
                                           "any LoRA."}),
            "ifadapter": (IFADAPTER, {"tooltip": "From IFAdapter Loader."}),
            "tokens": (IFA_TOKENS, {"tooltip": "From Encode Appearance Tokens, encoded for the same layout."}),
            "layout": (LAYOUT, {"tooltip": "The same layout as connected to Encode Appearance Tokens."}),
            "scale": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 5.0, "step": 0.05,
                                "tooltip": "gamma (-2 to 5): multiplies the adapter's residual; official default 1, "
                                           "0 turns the adapter off."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "Fraction of the sampling (0-1) at which the adapter starts."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Fraction of the sampling (0-1) at which the adapter stops: the "
                                                 "official control_ratio, 1.0 for base SDXL, 0.3 with LoRAs or "
                                                 "community checkpoints."}),
        }, "optional": {
            "token_set": (list(TOKEN_SETS), {"default": OFFICIAL_TOKEN_SET,
                          "tooltip": "Which of each instance's 13 tokens the semantic map attends to: all (official), "
                                     "the 12 appearance tokens only (no EoT) or the EoT token only: the paper's "
                                     "Table 3 ablation, applied at inference."}),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("A patched copy of the model for your KSampler; the input model is unchanged.",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY_IFADAPTER

    def apply(self, model, ifadapter, tokens, layout, scale=1.0, start_percent=0.0, end_percent=1.0,
              token_set=OFFICIAL_TOKEN_SET):
        refusal = model_refusal(model, ifadapter)
        if refusal:
            raise ValueError(refusal)
        layout = _layout_for_ifadapter(layout)
        timed = isinstance(tokens, FrameTokens)
        if timed != layout.timed:
            raise ValueError("the appearance tokens and the layout disagree: one is a layout over time and the other "
                             "is not; connect the same layout to Encode Appearance Tokens and Apply IFAdapter")
        if timed:
            tl = Timeline(layout, frame_span(layout))
            boxes = torch.stack([lay.boxes_normalized() for lay in tl.layouts])
        else:
            boxes = layout.boxes_normalized()
        if boxes.shape != tokens.boxes.shape or not torch.allclose(boxes, tokens.boxes.float(), atol=1e-6):
            raise ValueError(
                f"the appearance tokens were encoded for a different layout ({len(tokens)} instances) than the one "
                f"connected here ({boxes.shape[0]} instances, or moved boxes); connect the same layout to Encode "
                "Appearance Tokens and Apply IFAdapter")
        if end_percent < start_percent:
            raise ValueError(f"end_percent {end_percent} is before start_percent {start_percent}")
        frames = None
        tokens = select_tokens(tokens, token_set)
        if timed:
            runtime = FramesRuntime(ifadapter, tokens, scale)
            frames = FrameTable(tokens.index, tokens.covered, "Apply IFAdapter")
        else:
            runtime = IFAdapterRuntime(ifadapter, tokens, scale)
        window = StepWindow.for_model(model, start_percent, end_percent, "ratio")
        m = model.clone()
        aspect = layout.width / layout.height
        for key in ifadapter.layer_keys:
            add_attn2_contribution(m, key, IFAdapterLayer(runtime, key, window, aspect, frames))
        return (m,)


NODE_CLASS_MAPPINGS = {
    "IFAAdapterLoader": IFAdapterLoader,
    "IFAAdapterConvert": IFAdapterConvert,
    "IFAEncodeAppearanceTokens": EncodeAppearanceTokens,
    "IFABuildSemanticMap": BuildInstanceSemanticMap,
    "IFAApplyIFAdapter": ApplyIFAdapter,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IFAAdapterLoader": "IFAdapter Loader",
    "IFAAdapterConvert": "IFAdapter Convert to safetensors",
    "IFAEncodeAppearanceTokens": "Encode Appearance Tokens (IFAdapter)",
    "IFABuildSemanticMap": "Build Instance Semantic Map (IFAdapter)",
    "IFAApplyIFAdapter": "Apply IFAdapter",
}
