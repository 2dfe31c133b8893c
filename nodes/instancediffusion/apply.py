"""Apply InstanceDiffusion: ground an SD1.5 MODEL clone on a layout (fusers, ScaleU, alpha)."""
from __future__ import annotations

import torch

from ...core.instancediffusion import MISSING_BOX, PRESET_NAMES, from_layout
from ...core.instancediffusion.frames import FrameInputs
from ...core.layout import LayoutError
from ...core.layout.timeline import Timeline, frame_count, frame_span
from ..common import CATEGORY_INSTANCEDIFFUSION, LAYOUT
from ..frames import FrameTable
from ..steps import StepWindow
from .adapter import ADAPTER, Adapter, check_model, load_adapter  # noqa: F401  (load_adapter: tests, benchmarks)
from .frame_grounding import FrameGroundingState
from .grounding import FuserPatch, GroundingState, ScaleUPatch, find_state  # noqa: F401  (find_state: tests)


class ApplyInstanceDiffusion:
    """Ground an SD1.5 MODEL on a layout: each instance's description goes where its box / mask / scribble / point
    is. Returns a patched clone; the input MODEL is untouched."""

    DESCRIPTION = ("Grounds an SD1.5 model on a layout with InstanceDiffusion: each instance's description is placed "
                   "where its box, mask, scribble or point is, through the UniFusion layers, with ScaleU on the "
                   "decoder. Connect an SD1.5 MODEL and CLIP, the loaded weights and a layout; sample the returned "
                   "model with KSampler (InstanceDiffusion MIS), or a plain KSampler.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.5 model (base or a fine-tune), after any LoRA."}),
            "instancediffusion": (ADAPTER, {"tooltip": "From Load InstanceDiffusion."}),
            "clip": ("CLIP", {"tooltip": "The SD1.5 CLIP that encodes each instance's description."}),
            "layout": (LAYOUT, {"tooltip": "The layout; every enabled instance needs a description."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.05,
                                   "tooltip": "Scales the fusers' contribution (0-5; 1 = as trained)."}),
            "alpha": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.01,
                                "tooltip": "The fusers are on for the first int(alpha x steps) steps, counted "
                                           "exactly (0-1; 0.8 as the official README demos: 40 of 50 steps; the "
                                           "official inference.py's own default is 0.75)."}),
            "preset": (list(PRESET_NAMES), {"default": "auto",
                                            "tooltip": "Which input kinds the model uses (the official test "
                                                       "configs): boxes, masks, points or scribbles; auto picks "
                                                       "from what the layout has."}),
            "scaleu": ("BOOLEAN", {"default": True,
                                   "tooltip": "Apply the learned ScaleU scaling of the decoder's skip and backbone "
                                              "features (on in the official model)."}),
        }, "optional": {
            "missing_box": (list(MISSING_BOX), {"default": MISSING_BOX[0],
                                                "tooltip": "An instance drawn without a box: use the bounding box "
                                                           "of its mask / scribble / point (from regions), or "
                                                           "[0, 0, 0, 0] as the official inference.py."}),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("A patched copy of the model for KSampler (InstanceDiffusion MIS); the input model is "
                       "unchanged.",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY_INSTANCEDIFFUSION

    def apply(self, model, instancediffusion, clip, layout, strength, alpha, preset, scaleu,
              missing_box=MISSING_BOX[0]):
        adapter: Adapter = instancediffusion
        check_model(model, adapter)
        active = layout.active()
        if not active:
            raise LayoutError("InstanceDiffusion: the layout has no active instances; add at least one")
        layout.require_descriptions("InstanceDiffusion")
        pooled, captions = [], []
        for i, inst in zip(layout.active_numbers(), active):
            tokens = clip.tokenize(inst.description)
            cond, pool = clip.encode_from_tokens(tokens, return_pooled="unprojected")
            if pool is None or pool.shape[-1] != 768:
                raise ValueError(f'InstanceDiffusion: instance {i} ("{inst.description}"): the CLIP gave a pooled '
                                 f"embedding of shape {None if pool is None else tuple(pool.shape)}; an SD1.5 CLIP "
                                 "(CLIP-L, 768) is needed")
            pooled.append(pool.reshape(-1).float().cpu())
            captions.append(cond.float().cpu())
        return (apply_with_embeddings(model, adapter, layout, pooled, captions, strength, alpha, preset, scaleu,
                                      missing_box),)


def apply_with_embeddings(model, adapter: Adapter, layout, pooled: list, captions: list, strength: float,
                          alpha: float, preset: str, scaleu: bool, missing_box: str = MISSING_BOX[0]):
    """The patched clone Apply InstanceDiffusion returns, from already encoded texts: ``pooled`` [768] per active
    instance (CLIP-L pooled, un-projected), ``captions`` each instance's hidden states [1, 77·k, 768] (for MIS).
    Also used by the trainer's previews, so they sample exactly what the node would."""
    active = layout.active()
    window = StepWindow.for_model(model, 0.0, alpha, "int")
    names = [inst.description for inst in active]
    if layout.timed:  # batch row i is frame i; each distinct frame's input is built when a UNet call holds it
        timeline = Timeline(layout, frame_span(layout))
        inputs = FrameInputs(timeline, torch.stack(pooled), preset=preset, missing_box=missing_box)
        frames = FrameTable(timeline.index, frame_count(layout), "Apply InstanceDiffusion")
        state = FrameGroundingState(adapter, inputs, captions, strength, alpha, window, scaleu, names,
                                    frames=frames)
    else:
        inputs = from_layout(layout, torch.stack(pooled), preset=preset, missing_box=missing_box)
        state = GroundingState(adapter, inputs, captions, strength, alpha, window, scaleu, names)
    m = model.clone()
    m.set_model_patch(FuserPatch(state), "middle_patch")
    if scaleu:
        m.set_model_output_block_patch(ScaleUPatch(state))
    if hasattr(m, "set_additional_models"):  # v0.3+: the adapter is loaded/offloaded with the UNet
        m.set_additional_models("ifa_instancediffusion", [adapter.patcher()])
    return m
