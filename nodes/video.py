"""Layouts over time (video): one frame of a layout, previews and masks over frames, and the track importers.

A time-aware layout (version 2: instance keyframes and visible ranges, see docs/layout-format.md) travels on the same
``INSTANCE_LAYOUT`` socket; both Apply nodes read it frame by frame (batch row i = frame i). The maths lives in
``core.layout.timeline`` and ``core.layout.tracks``; these nodes only speak ComfyUI.
"""
from __future__ import annotations

import os
import random

import folder_paths
import numpy as np
import torch
from PIL import Image

from ..core.frame_outputs import MAX_OUTPUT_VALUES, mask_frames, preview_frames
from ..core.layout import MAX_FRAMES, MAX_JSON_CHARS, LayoutError
from ..core.layout.limits import over
from ..core.layout.timeline import at_frame, frame_count
from ..core.layout.tracks import check_tracking_size, from_box_tracks_json, from_mask_frames, from_tracking
from ..core.paths import PathRefused
from . import paths
from .common import CATEGORY_LAYOUT, LAYOUT

TRACKING = "TRACKING"  # logtd's socket type: {class: {tracker_id: [per-frame (x0, y0, x1, y1, W, H) or None]}}
MAX_PREVIEW_FRAMES = 256  # an animated preview is for looking at; longer clips: use Layout at Frame


def _frames(layout, frames: int) -> int:
    n = frames or frame_count(layout)
    if not 1 <= n <= MAX_FRAMES:
        raise LayoutError(f"frames is {n}; expected 1..{MAX_FRAMES} (0 = the layout's frame count)")
    return n


def save_animation(images: torch.Tensor, prefix: str, fps: float) -> list[dict]:
    """Write an IMAGE batch ``[F, H, W, 3]`` as one animated WEBP in ComfyUI's temp folder; the UI records."""
    out_dir = folder_paths.get_temp_directory()
    os.makedirs(out_dir, exist_ok=True)
    tag = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    name = f"{prefix}_{tag}.webp"
    frames = [Image.fromarray((img.detach().cpu().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8))
              for img in images]  # one frame at a time: no float copy of the whole batch
    frames[0].save(os.path.join(out_dir, name), save_all=True, append_images=frames[1:],
                   duration=max(1, round(1000 / fps)), loop=0, lossless=False, quality=80, method=4)
    return [{"filename": name, "subfolder": "", "type": "temp"}]


class LayoutAtFrame:
    DESCRIPTION = ("The static layout of one frame of a layout over time: keyframes interpolated, instances outside "
                   "their visible range disabled (kept, so numbers stay). A static layout passes through.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "a layout over time (a static one passes through)"}),
                             "frame": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES - 1,
                                               "tooltip": "frame index 0 to 1023; frame 0 is batch row 0"})}}

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("The static layout of that frame (absent instances disabled, numbering unchanged).",)
    FUNCTION = "frame"
    CATEGORY = CATEGORY_LAYOUT

    def frame(self, layout, frame):
        return (at_frame(layout, int(frame)),)


class LayoutPreviewFrames:
    DESCRIPTION = ("A layout over time drawn frame by frame (regions, numbers, legend) as an IMAGE batch, shown on "
                   "the node as an animation. Optional underlay: an IMAGE batch (frame i over image i; the last "
                   "image repeats).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "the layout over time to draw"}),
                             "frames": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES,
                                                "tooltip": "how many frames to draw, 0 to 1024; 0 = the layout's "
                                                           "frame count. The whole batch holds at most "
                                                           f"{MAX_OUTPUT_VALUES:,} values (frames x height x width "
                                                           "x 3; e.g. 80 frames of 1024 x 1024 with the legend)"}),
                             "fps": ("FLOAT", {"default": 8.0, "min": 0.5, "max": 60.0, "step": 0.5,
                                               "tooltip": "playback speed of the animation on the node, 0.5 to 60 "
                                                          "frames per second"}),
                             "opacity": ("FLOAT", {"default": 0.45, "min": 0.0, "max": 1.0, "step": 0.05,
                                                   "tooltip": "fill opacity of the regions, 0 to 1"}),
                             "legend": ("BOOLEAN", {"default": True,
                                                    "tooltip": "add the numbered legend strip under the picture"})},
                "optional": {"underlay": ("IMAGE", {"tooltip": "pictures to draw on: image i under frame i, the "
                                                               "last one repeats"})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("One picture per frame (IMAGE batch), all the same size.",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY_LAYOUT

    def preview(self, layout, frames, fps, opacity, legend, underlay=None):
        n = _frames(layout, frames)
        under = None if underlay is None else (
            lambda f: underlay[min(f, underlay.shape[0] - 1), ..., :3].cpu().float().numpy())
        batch = preview_frames(layout, n, under, opacity=opacity, legend=legend)
        shown = batch[:MAX_PREVIEW_FRAMES]
        return {"ui": {"images": save_animation(shown, "ifa_layout_frames", fps), "animated": (True,)},
                "result": (batch,)}


class LayoutToMasksFrames:
    DESCRIPTION = ("One instance's mask on every frame of a layout over time (MASK batch, one per frame; instance 0 "
                   "= every enabled instance together), and the background mask per frame. Absent frames are empty.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (LAYOUT, {"tooltip": "the layout over time to rasterise"}),
                             "instance": ("INT", {"default": 0, "min": 0, "max": 1000,
                                                  "tooltip": "instance number 1 to 1000 as in the legend; 0 = every "
                                                             "enabled instance together"}),
                             "frames": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES,
                                                "tooltip": "how many frames, 0 to 1024; 0 = the layout's frame count"})},
                "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384,
                                               "tooltip": "mask width in pixels, 0 to 16384; 0 = the canvas width. "
                                                          "Both outputs together hold at most "
                                                          f"{MAX_OUTPUT_VALUES:,} values (2 x frames x height x "
                                                          "width; e.g. 128 frames of 1024 x 1024)"}),
                             "height": ("INT", {"default": 0, "min": 0, "max": 16384,
                                                "tooltip": "mask height in pixels, 0 to 16384; 0 = the canvas "
                                                           "height. Both outputs together hold at most "
                                                           f"{MAX_OUTPUT_VALUES:,} values (2 x frames x height x "
                                                           "width)"})}}

    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("masks", "background")
    OUTPUT_TOOLTIPS = ("The instance's mask on each frame (empty where it is absent), one per frame.",
                       "1 where no enabled instance is, per frame.")
    FUNCTION = "masks"
    CATEGORY = CATEGORY_LAYOUT

    def masks(self, layout, instance, frames, width=0, height=0):
        n = _frames(layout, frames)
        return mask_frames(layout, int(instance), n, int(height or layout.height), int(width or layout.width))


class LayoutFromTracking:
    DESCRIPTION = ("A layout over time from a TRACKING input (logtd's tracking nodes, KJNodes' spline editor): one "
                   "instance per tracked object, a keyframe per frame, visible from its first to its last box. "
                   'Captions as in logtd\'s node: lines "<id>.<class>": "<caption>" (id -1 = every id of that '
                   "class); an object without one is described by its class name.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tracking": (TRACKING, {"tooltip": "per-frame boxes of tracked objects (logtd's "
                                                                "TRACKING: {class: {id: [(x0, y0, x1, y1, W, H) "
                                                                "or None per frame]}})"}),
                             "captions": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": False,
                                                     "tooltip": 'one line per object: "<id>.<class>": "<caption>"; '
                                                                "id -1 = every id of that class"}),
                             "prompt": ("STRING", {"default": "", "multiline": True,
                                                   "tooltip": "the layout's global prompt"})}}

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("A layout over time: one instance per tracked object, a keyframe per tracked frame.",)
    FUNCTION = "build"
    CATEGORY = CATEGORY_LAYOUT

    @classmethod
    def VALIDATE_INPUTS(cls, tracking=None):
        # a TRACKING dict written into the prompt is counted here, before ComfyUI hashes it for its cache (seconds
        # per MB on 0.8.0); a linked one (None here) is counted by from_tracking before anything is built
        if tracking is not None:
            try:
                check_tracking_size(tracking)
            except LayoutError as e:
                return str(e)
        return True

    def build(self, tracking, captions, prompt):
        return (from_tracking(tracking, captions, prompt=prompt),)


class LayoutFromBoxTracks:
    DESCRIPTION = ('A layout over time from per-frame box lists: {"width", "height", "prompt", "box_format": "xyxy" '
                   '| "xywh", "tracks": [{"description", "label", "boxes": [[x0, y0, x1, y1] or null, ...]}]} '
                   "as JSON text or a .json file in the input folder.")

    @classmethod
    def INPUT_TYPES(cls):
        files = ["(none)"] + paths.input_files(".json")
        return {"required": {"json_text": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": False,
                                                      "tooltip": "the box tracks as JSON text, at most 16,777,216 "
                                                                 "characters and 64 tracks (wins over file)"}),
                             "file": (files, {"tooltip": "or a .json file in ComfyUI's input folder"})}}

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("A layout over time: one instance per track, a keyframe per frame with a box.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY_LAYOUT

    @classmethod
    def VALIDATE_INPUTS(cls, json_text, file):
        if isinstance(json_text, str) and len(json_text) > MAX_JSON_CHARS:  # refused before anything reads it
            return str(over("box tracks", "the length of json_text in characters", len(json_text), MAX_JSON_CHARS))
        if json_text is None or (json_text or "").strip():  # linked, or text given: checked at run time
            return True
        if file in ("(none)", "", None):
            return "give the box tracks as json_text or pick a file from the input folder"
        return paths.input_file_problem(file, ".json") or True

    def load(self, json_text, file):
        if (json_text or "").strip():
            return (from_box_tracks_json(json_text),)
        if file in ("(none)", "", None):
            raise LayoutError("give the box tracks as json_text or pick a file from the input folder")
        try:  # the input folder's rules (nodes/paths.py): a regular .json file inside it, at most 16 MB
            text = paths.read_input_text(file, extension=".json")
        except PathRefused as e:
            raise LayoutError(str(e)) from None
        return (from_box_tracks_json(text),)


class LayoutFromMaskFrames:
    DESCRIPTION = ("One instance over time from a MASK batch: mask i is the instance on frame i (empty = absent). "
                   "Appended to the connected layout (its canvas wins), else a new layout at the masks' size.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"masks": ("MASK", {"tooltip": "mask i = the instance on frame i (empty = absent)"}),
                             "description": ("STRING", {"default": "", "multiline": True,
                                                        "tooltip": "what the instance is"})},
                "optional": {"layout": (LAYOUT, {"tooltip": "append to this layout (its canvas wins); else a new "
                                                            "layout at the masks' size"})}}

    RETURN_TYPES = (LAYOUT,)
    OUTPUT_TOOLTIPS = ("The layout with the instance added, over time (a keyframe per non-empty mask).",)
    FUNCTION = "build"
    CATEGORY = CATEGORY_LAYOUT

    def build(self, masks, description, layout=None):
        return (from_mask_frames(masks, description, layout=layout),)


NODE_CLASS_MAPPINGS = {
    "IFALayoutAtFrame": LayoutAtFrame,
    "IFALayoutPreviewFrames": LayoutPreviewFrames,
    "IFALayoutToMasksFrames": LayoutToMasksFrames,
    "IFALayoutFromTracking": LayoutFromTracking,
    "IFALayoutFromBoxTracks": LayoutFromBoxTracks,
    "IFALayoutFromMaskFrames": LayoutFromMaskFrames,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IFALayoutAtFrame": "Layout at Frame",
    "IFALayoutPreviewFrames": "Layout Preview over Frames",
    "IFALayoutToMasksFrames": "Layout to Masks over Frames",
    "IFALayoutFromTracking": "Layout from Tracking",
    "IFALayoutFromBoxTracks": "Layout from Box Tracks (JSON)",
    "IFALayoutFromMaskFrames": "Layout from Mask Frames",
}
