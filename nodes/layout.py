"""Layout nodes: build, import, edit, preview and rasterise instance layouts.

Every node here is a few lines over ``core.layout`` / ``core.render``; the layout travels between nodes on the
``INSTANCE_LAYOUT`` socket as a :class:`core.layout.Layout` and is never modified in place (nodes copy it).
"""
from __future__ import annotations

import copy
import json

import numpy as np
import torch

from ..core.frame_outputs import check_output
from ..core.layout import MAX_JSON_CHARS, MAX_JSON_DEPTH, Instance, Layout, LayoutError, Region, from_masks
from ..core.layout.limits import over
from ..core.layout.timeline import at_frame
from ..core.paths import PathRefused
from ..core.render import render_layout, to_comfy_image
from . import paths
from .common import CATEGORY_LAYOUT, LAYOUT, save_preview

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
                   "stored in the node, so workflows and API-format prompts carry it. Connect the layout output to "
                   "Encode Appearance Tokens + Apply IFAdapter (SDXL), Apply InstanceDiffusion (SD1.5) or any layout "
                   "node; connect an image to underlay to draw over it. Returns the layout and a preview image.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8,
                                  "tooltip": "Canvas width in pixels (64-16384, step 8); use the width of the image "
                                             "you generate. A layout drawn at another size is scaled to it."}),
                "height": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8,
                                   "tooltip": "Canvas height in pixels (64-16384, step 8); use the height of the "
                                              "image you generate."}),
                "layout": ("STRING", {"default": EMPTY_LAYOUT, "multiline": True, "dynamicPrompts": False,
                                      "tooltip": "The layout as JSON (format instance-layout, version 1). The "
                                                 "editor writes it; you can also paste a layout exported elsewhere "
                                                 "(docs/layout-format.md)."}),
            },
            "optional": {"underlay": ("IMAGE", {"tooltip": "Optional picture to draw over (first image of the batch), "
                                                          "shown in the editor and below the preview."})},
        }

    RETURN_TYPES = (LAYOUT, "IMAGE")
    RETURN_NAMES = ("layout", "preview")
    OUTPUT_TOOLTIPS = ("The instance layout, at the width x height canvas.",
                       "The layout drawn as regions, numbers and a legend (the Layout Preview picture).")
    FUNCTION = "build"
    CATEGORY = CATEGORY_LAYOUT

    def build(self, width, height, layout, underlay=None):
        lay = Layout.from_json(layout or EMPTY_LAYOUT)
        ref = lay.extra.get("underlay")
        if ref is not None and not paths.input_ref_ok(ref):
            # only the browser fetches the underlay (through ComfyUI's /view); a reference that climbs out of
            # ComfyUI's folders is refused here so that no workflow carries one
            raise LayoutError("layout: 'underlay' must be {\"filename\", \"subfolder\", \"type\"} naming an image "
                              "inside ComfyUI's input, output or temp folder; upload the image again in the editor")
        lay = _resized(lay, width, height).validate()
        preview = render_layout(_static(lay), underlay=_underlay_np(underlay))
        # The editor draws what the node really received as its underlay (any upstream IMAGE, not only a
        # Load Image it can see); a custom UI key, so frontends do not show it as a node preview.
        ui = {"ifa_underlay": save_preview(underlay[:1], "ifa_underlay")} if underlay is not None else {}
        return {"ui": ui, "result": (lay, to_comfy_image(preview))}


def _too_long(n: int) -> LayoutError:
    return over("Layout from JSON", "the length of json_text in characters", n, MAX_JSON_CHARS)


class LayoutFromJSON:
    """A layout from JSON text or a ``.json`` file in ComfyUI's input folder (ours, InstanceDiffusion demo JSON,
    or an IFAdapter sample layout; the format is detected).

    Only regular files inside the input folder (or its subfolders) of at most 16 MB are read, symlinks resolved;
    any other name is refused at validation, before anything is opened (see nodes/paths.py)."""

    NO_FILE = "(none)"

    DESCRIPTION = ("Reads a layout from JSON text or from a .json file in ComfyUI's input folder (nothing outside "
                   "it is ever read): this pack's format, "
                   "InstanceDiffusion demo JSON (caption, annos with bbox, COCO RLE mask, point, scribble) or an "
                   "IFAdapter sample layout (annotations with [x, y, w, h] boxes); the format is detected. Returns "
                   "the layout, optionally scaled to width x height, for any node with a layout input.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"json_text": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": False,
                                                  "tooltip": "Layout JSON to read (at most 16,777,216 "
                                                             "characters); when empty, the file below is read "
                                                             "instead."}),
                         "file": ([cls.NO_FILE] + paths.input_files(".json"), {
                             "tooltip": "A .json file in ComfyUI's input folder or its subfolders (at most 16 MB), "
                                        "used when json_text is empty."})},
            "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8,
                                           "tooltip": "Scale the layout to this canvas width (0-16384, step 8); "
                                                      "0 keeps the canvas of the JSON. Scaling needs both width "
                                                      "and height."}),
                         "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8,
                                            "tooltip": "Scale the layout to this canvas height (0-16384, step 8); "
                                                       "0 keeps the canvas of the JSON."})},
        }

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("The layout read from the JSON, checked.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY_LAYOUT

    @classmethod
    def VALIDATE_INPUTS(cls, json_text, file):
        # Naming `file` here makes ComfyUI skip its own list check for it, so the rule the list is built with runs
        # here instead (a .json regular file inside the input folder); no **kwargs, so ComfyUI still checks the
        # other inputs.
        if isinstance(json_text, str) and len(json_text) > MAX_JSON_CHARS:  # before anything reads it
            return str(_too_long(len(json_text)))
        if json_text is None or (json_text or "").strip():  # None: linked from another node, checked at run time
            return True
        if file in (cls.NO_FILE, "", None):
            return "give the layout as json_text or pick a file from the input folder"
        try:
            paths.check_input_file(file, extension=".json")
        except PathRefused as e:
            return str(e)
        return True

    def load(self, json_text, file, width=0, height=0):
        if isinstance(json_text, str) and len(json_text) > MAX_JSON_CHARS:  # a linked text is only seen here
            raise _too_long(len(json_text))
        if (json_text or "").strip():
            src, text = "json_text", json_text
        else:
            if file in (self.NO_FILE, "", None):
                raise LayoutError("give the layout as json_text or pick a file from the input folder")
            src = f"file {file!r}"
            try:
                raw = paths.read_input_file(file, extension=".json")
            except PathRefused as e:
                raise LayoutError(str(e)) from None
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise LayoutError(f"{src}: not UTF-8 text; a layout file is JSON") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LayoutError(f"{src}: not valid JSON ({e})") from None
        except RecursionError:
            raise LayoutError(f"{src}: JSON nested too deeply to read; a layout nests at most {MAX_JSON_DEPTH} "
                              "levels") from None
        lay = Layout.from_json(data)
        if width and height:
            lay = _resized(lay, width, height)
        return (lay.validate(),)


class AddInstance:
    """Add one instance (a box given in pixels, or a MASK) to a layout; chain several to build a layout."""

    DESCRIPTION = ("Adds one instance to a layout: a description and a box in canvas pixels, or a MASK (or both). "
                   "Chain several to build a layout without the editor, e.g. from detections. Connect a layout to "
                   "extend it, or leave it empty to start a new canvas of canvas_width x canvas_height. Returns the "
                   "layout with the new instance last; the input layout is not changed.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "description": ("STRING", {"default": "", "multiline": True,
                                           "tooltip": "What this instance looks like, e.g. 'a red vintage car'."}),
                "x": ("INT", {"default": 0, "min": 0, "max": 16384,
                              "tooltip": "Left edge of the box in canvas pixels (0-16384)."}),
                "y": ("INT", {"default": 0, "min": 0, "max": 16384,
                              "tooltip": "Top edge of the box in canvas pixels (0-16384)."}),
                "w": ("INT", {"default": 256, "min": 0, "max": 16384,
                              "tooltip": "Box width in pixels (0-16384); 0 adds no box (then connect a mask). "
                                         "The box must lie inside the canvas."}),
                "h": ("INT", {"default": 256, "min": 0, "max": 16384,
                              "tooltip": "Box height in pixels (0-16384); 0 adds no box (then connect a mask)."}),
            },
            "optional": {
                "layout": (LAYOUT, {"tooltip": "The layout to add to; without one a new empty canvas of "
                                               "canvas_width x canvas_height is started."}),
                "mask": ("MASK", {"tooltip": "A mask region for the instance (first mask of the batch, > 0.5 is "
                                             "inside), at the canvas size."}),
                "label": ("STRING", {"default": "", "tooltip": "Short name shown in the preview legend; empty "
                                                               "uses the description."}),
                "weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                     "tooltip": "Instance weight stored in the layout (0-10, 1 = normal); "
                                                "IFAdapter and InstanceDiffusion do not read it."}),
                "z": ("INT", {"default": 0, "min": -1000, "max": 1000,
                              "tooltip": "Stacking order (-1000 to 1000): higher z is drawn on top in the editor "
                                         "and preview; negative z for background objects."}),
                "canvas_width": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8,
                                         "tooltip": "Canvas width (64-16384, step 8) when no layout is connected."}),
                "canvas_height": ("INT", {"default": 1024, "min": 64, "max": 16384, "step": 8,
                                          "tooltip": "Canvas height (64-16384, step 8) when no layout is "
                                                     "connected."}),
            },
        }

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("The layout with the new instance added last.",)
    FUNCTION = "add"
    CATEGORY = CATEGORY_LAYOUT

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

    DESCRIPTION = ("Builds a layout from a MASK batch (e.g. from a segmentation node): one instance per mask, "
                   "described by the matching line of descriptions. The canvas is the mask size. Returns the layout.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "masks": ("MASK", {"tooltip": "One mask per instance (a MASK batch); > 0.5 is inside."}),
            "descriptions": ("STRING", {"default": "", "multiline": True,
                                        "tooltip": "One description per mask, one per line, in mask order; blank "
                                                   "lines are skipped."}),
            "prompt": ("STRING", {"default": "", "multiline": True,
                                  "tooltip": "Optional global prompt stored in the layout (the whole scene)."})}}

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("The layout: instance i is mask i with description line i.",)
    FUNCTION = "build"
    CATEGORY = CATEGORY_LAYOUT

    def build(self, masks, descriptions, prompt):
        m = masks if masks.ndim == 3 else masks[None]
        lines = [ln.strip() for ln in descriptions.splitlines() if ln.strip()]
        if not lines:  # not described yet: the layout previews and rasterises; text encoders ask for descriptions
            lines = [""] * m.shape[0]
        if len(lines) != m.shape[0]:
            raise LayoutError(f"{m.shape[0]} masks but {len(lines)} non-empty description lines; give one "
                              "description per mask, one per line")
        return (from_masks(m, lines, prompt=prompt).validate(),)


class LayoutPreview:
    """See a layout: coloured regions, numbered labels and a legend, over an optional underlay image."""

    DESCRIPTION = ("Draws a layout so you can check it: each instance's regions filled in its colour, numbered from "
                   "1, with a legend of the descriptions, over an optional underlay (e.g. the generated image). "
                   "Shows the picture on the node and returns it as an IMAGE.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "The layout to draw."}),
                             "opacity": ("FLOAT", {"default": 0.45, "min": 0.0, "max": 1.0, "step": 0.05,
                                                   "tooltip": "Fill opacity of the regions (0-1); outlines and "
                                                              "numbers are always opaque."}),
                             "legend": ("BOOLEAN", {"default": True,
                                                    "tooltip": "Add a strip below the canvas listing each "
                                                               "instance's number, colour and description."})},
                "optional": {"underlay": ("IMAGE", {"tooltip": "Optional picture drawn below the regions (first "
                                                              "image of the batch, resized to the canvas)."}),
                             "instancediffusion_view": (["off", "auto", "boxes", "masks", "points", "scribbles"], {
                                 "default": "off",
                                 "tooltip": "overlay exactly what InstanceDiffusion receives with this preset: "
                                            "boxes, points, the 20 resampled scribble points and (every other "
                                            "one of) the 256 mask-polygon points after normalisation"})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The preview picture: canvas size, taller by the legend strip when legend is on.",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_LAYOUT

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

    DESCRIPTION = ("Turns a layout into masks for other nodes (inpainting, regional conditioning, ControlNet): one "
                   "mask per enabled instance, in order, and the background (what no instance covers), at the "
                   "canvas size or the given size.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "The layout to rasterise."})},
                "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1,
                                               "tooltip": "Mask width in pixels (0-16384); 0 = the canvas width."}),
                             "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 1,
                                                "tooltip": "Mask height in pixels (0-16384); 0 = the canvas "
                                                           "height."})}}

    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("instances", "background")
    OUTPUT_TOOLTIPS = ("One mask per enabled instance, in layout order (one empty mask if there is none).",
                       "1 where no instance is, 0 elsewhere.")
    FUNCTION = "masks"
    CATEGORY = CATEGORY_LAYOUT

    def masks(self, layout, width=0, height=0):
        layout = _static(layout)
        h, w = (height or layout.height), (width or layout.width)
        n = max(1, len(layout.active()))
        # both outputs together: the instance masks and the background
        check_output("Layout to Masks", f"{n} masks and the background of {w}x{h}", (n + 1, h, w),
                     hint=": ask for a smaller size")
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
