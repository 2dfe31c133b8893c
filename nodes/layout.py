"""Layout nodes: build, import, edit, preview and rasterise instance layouts.

Every node here is a few lines over ``core.layout`` / ``core.render``; the layout travels between nodes on the
``INSTANCE_LAYOUT`` socket as a :class:`core.layout.Layout` and is never modified in place (nodes copy it).
"""
from __future__ import annotations

import copy
import json
import os

import folder_paths
import numpy as np
import torch

from ..core.layout import Instance, Layout, LayoutError, Region, from_masks
from ..core.render import render_layout, to_comfy_image
from ..core.timeline import at_frame
from .common import CATEGORY, LAYOUT, save_preview

EMPTY_LAYOUT = json.dumps({"format": "instance-layout", "version": 1, "width": 1024, "height": 1024,
                           "prompt": "", "instances": []})


def _underlay_np(image: torch.Tensor | None) -> np.ndarray | None:
    return None if image is None else image[0, ..., :3].detach().cpu().float().numpy()


def _static(layout: Layout) -> Layout:
    """Frame 0 of a layout over time (nodes that show one picture), else the layout itself."""
    return at_frame(layout, 0) if layout.timed else layout


def _resized(layout: Layout, width: int, height: int) -> Layout:
    """The same layout on a ``width`` x ``height`` canvas (regions scaled), or ``layout`` itself if equal."""
    if (layout.width, layout.height) == (width, height):
        return layout
    return layout.scaled(width, height)


class InstanceLayout:
    """The layout drawn in the node's editor (or typed as JSON), at the given canvas size."""

    DESCRIPTION = ("An instance layout: where each object goes and what it looks like. Draw regions in the editor "
                   "(box, polygon, brush mask, scribble, point) and describe each instance. The whole layout is "
                   "stored in the node, so workflows and API-format prompts carry it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8}),
                "height": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8}),
                "layout": ("STRING", {"default": EMPTY_LAYOUT, "multiline": True, "dynamicPrompts": False}),
            },
            "optional": {"underlay": ("IMAGE",)},
        }

    RETURN_TYPES = (LAYOUT, "IMAGE")
    RETURN_NAMES = ("layout", "preview")
    FUNCTION = "build"
    CATEGORY = CATEGORY + "/layout"

    def build(self, width, height, layout, underlay=None):
        lay = Layout.from_json(layout or EMPTY_LAYOUT)
        lay = _resized(lay, width, height).validate()
        preview = render_layout(_static(lay), underlay=_underlay_np(underlay))
        # The editor draws what the node really received as its underlay (any upstream IMAGE, not only a
        # Load Image it can see); a custom UI key, so frontends do not show it as a node preview.
        ui = {"ifa_underlay": save_preview(underlay[:1], "ifa_underlay")} if underlay is not None else {}
        return {"ui": ui, "result": (lay, to_comfy_image(preview))}


class LayoutFromJSON:
    """A layout from JSON text or a ``.json`` file in ComfyUI's input folder (ours, InstanceDiffusion demo JSON,
    or an IFAdapter sample layout; the format is detected)."""

    @classmethod
    def INPUT_TYPES(cls):
        files = ["(none)"] + sorted(f for f in os.listdir(folder_paths.get_input_directory())
                                    if f.lower().endswith(".json")) if os.path.isdir(
            folder_paths.get_input_directory()) else ["(none)"]
        return {
            "required": {"json_text": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": False}),
                         "file": (files,)},
            "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8,
                                           "tooltip": "0 keeps the canvas of the JSON"}),
                         "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8})},
        }

    RETURN_TYPES = (LAYOUT,)
    FUNCTION = "load"
    CATEGORY = CATEGORY + "/layout"

    @classmethod
    def VALIDATE_INPUTS(cls, json_text, file, **kw):
        if not (json_text or "").strip() and file in ("(none)", "", None):
            return "give the layout as json_text or pick a file from the input folder"
        return True

    def load(self, json_text, file, width=0, height=0):
        if (json_text or "").strip():
            src, text = "json_text", json_text
        else:
            path = os.path.join(folder_paths.get_input_directory(), file)
            src = path
            with open(path, encoding="utf-8") as f:
                text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LayoutError(f"{src}: not valid JSON ({e})") from None
        lay = Layout.from_json(data)
        if width and height:
            lay = _resized(lay, width, height)
        return (lay.validate(),)


class AddInstance:
    """Add one instance (a box given in pixels, or a MASK) to a layout; chain several to build a layout."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "description": ("STRING", {"default": "", "multiline": True}),
                "x": ("INT", {"default": 0, "min": 0, "max": 16384}),
                "y": ("INT", {"default": 0, "min": 0, "max": 16384}),
                "w": ("INT", {"default": 256, "min": 0, "max": 16384}),
                "h": ("INT", {"default": 256, "min": 0, "max": 16384}),
            },
            "optional": {
                "layout": (LAYOUT,),
                "mask": ("MASK",),
                "label": ("STRING", {"default": ""}),
                "weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05}),
                "z": ("INT", {"default": 0, "min": -1000, "max": 1000}),
                "canvas_width": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8,
                                         "tooltip": "canvas size when no layout is connected"}),
                "canvas_height": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8}),
            },
        }

    RETURN_TYPES = (LAYOUT,)
    FUNCTION = "add"
    CATEGORY = CATEGORY + "/layout"

    def add(self, description, x, y, w, h, layout=None, mask=None, label="", weight=1.0, z=0,
            canvas_width=1024, canvas_height=1024):
        lay = copy.deepcopy(layout) if layout is not None else Layout(width=canvas_width, height=canvas_height)
        regions = []
        if mask is not None:
            m = mask[0] if mask.ndim == 3 else mask
            regions.append(Region(kind="mask", mask=(m.detach().cpu().numpy() > 0.5)))
        if w > 0 and h > 0:
            regions.append(Region(kind="box", box=(float(x), float(y), float(x + w), float(y + h))))
        if not regions:
            raise LayoutError(f"instance {len(lay.instances) + 1} ({description[:40]!r}): give a box with w > 0 "
                              "and h > 0, or connect a mask")
        lay.instances.append(Instance(description=description, label=label, regions=regions, z=z, weight=weight))
        return (lay.validate(),)


class LayoutFromMasks:
    """One instance per mask of a MASK batch, with one description per line."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"masks": ("MASK",), "descriptions": ("STRING", {"default": "", "multiline": True}),
                             "prompt": ("STRING", {"default": "", "multiline": True})}}

    RETURN_TYPES = (LAYOUT,)
    FUNCTION = "build"
    CATEGORY = CATEGORY + "/layout"

    def build(self, masks, descriptions, prompt):
        m = masks if masks.ndim == 3 else masks[None]
        lines = [ln.strip() for ln in descriptions.splitlines() if ln.strip()]
        if len(lines) != m.shape[0]:
            raise LayoutError(f"{m.shape[0]} masks but {len(lines)} non-empty description lines; give one "
                              "description per mask, one per line")
        return (from_masks(m, lines, prompt=prompt).validate(),)


class LayoutPreview:
    """See a layout: coloured regions, numbered labels and a legend, over an optional underlay image."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT,),
                             "opacity": ("FLOAT", {"default": 0.45, "min": 0.0, "max": 1.0, "step": 0.05}),
                             "legend": ("BOOLEAN", {"default": True})},
                "optional": {"underlay": ("IMAGE",),
                             "instancediffusion_view": (["off", "auto", "boxes", "masks", "points", "scribbles"], {
                                 "default": "off",
                                 "tooltip": "overlay exactly what InstanceDiffusion receives with this preset: "
                                            "boxes, points, the 20 resampled scribble points and (every other "
                                            "one of) the 256 mask-polygon points after normalisation"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY + "/layout"

    def preview(self, layout, opacity, legend, underlay=None, instancediffusion_view="off"):
        layout = _static(layout)
        overlays = None
        if instancediffusion_view != "off" and layout.active():
            from ..core.instancediffusion.inputs import received_overlays

            overlays = received_overlays(layout, preset=instancediffusion_view)
        img = to_comfy_image(render_layout(layout, underlay=_underlay_np(underlay), opacity=opacity, legend=legend,
                                           overlays=overlays))
        return {"ui": {"images": save_preview(img, "ifa_layout")}, "result": (img,)}


class LayoutToMasks:
    """Rasterise a layout to a MASK batch (one mask per enabled instance) at the canvas size or a given size."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT,)},
                "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1,
                                               "tooltip": "0 = canvas width"}),
                             "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1})}}

    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("instances", "background")
    FUNCTION = "masks"
    CATEGORY = CATEGORY + "/layout"

    def masks(self, layout, width=0, height=0):
        layout = _static(layout)
        h, w = (height or layout.height), (width or layout.width)
        masks = layout.rasterize(h, w)
        if masks.shape[0] == 0:
            masks = torch.zeros(1, h, w)
        return (masks, layout.background_mask(h, w)[None])


NODE_CLASS_MAPPINGS = {
    "IFAInstanceLayout": InstanceLayout,
    "IFALayoutFromJSON": LayoutFromJSON,
    "IFAAddInstance": AddInstance,
    "IFALayoutFromMasks": LayoutFromMasks,
    "IFALayoutPreview": LayoutPreview,
    "IFALayoutToMasks": LayoutToMasks,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IFAInstanceLayout": "Instance Layout",
    "IFALayoutFromJSON": "Layout from JSON",
    "IFAAddInstance": "Add Instance",
    "IFALayoutFromMasks": "Layout from Masks",
    "IFALayoutPreview": "Layout Preview",
    "IFALayoutToMasks": "Layout to Masks",
}
