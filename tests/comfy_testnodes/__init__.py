"""Test-only ComfyUI nodes: tiny random-weight models and an IPAdapter-protocol attn2 patch.

Loaded next to the pack by the test harness (``tests/comfy_env.py``); never shipped to users.
"""
from __future__ import annotations

from .attn2_protocol import apply_ipadapter_style_patch
from .context_windows import NODE_CLASS_MAPPINGS as _WINDOWS
from .ifa_helpers import NODE_CLASS_MAPPINGS as _IFA_HELPERS
from .tiny_models import tiny_checkpoint, tiny_controlnet


class TinyCheckpointLoader:
    """MODEL, CLIP and VAE with the real SD1.5 or SDXL block layout and random weights."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"arch": (["sd15", "sdxl"],), "seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, arch, seed):
        return tiny_checkpoint(arch, seed)


class TinyControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"arch": (["sd15", "sdxl"],), "seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, arch, seed):
        return (tiny_controlnet(arch, seed),)


class IPAdapterStyleAttn2:
    """Adds an IPAdapter-``Attn2Replace``-style patch (with ``.add`` chaining) on the given attn2 keys.

    The extra tokens are random features of the model's context width; ``weight`` scales their contribution.
    """

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "weight": ("FLOAT", {"default": 1.0, "min": -10, "max": 10}),
                             "keys": (["ifadapter16", "all"],), "seed": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = "testing"

    def apply(self, model, weight, keys, seed):
        return (apply_ipadapter_style_patch(model, weight, keys, seed),)


NODE_CLASS_MAPPINGS = {
    "IFATest_TinyCheckpointLoader": TinyCheckpointLoader,
    "IFATest_TinyControlNetLoader": TinyControlNetLoader,
    "IFATest_IPAdapterStyleAttn2": IPAdapterStyleAttn2,
}
NODE_CLASS_MAPPINGS.update(_IFA_HELPERS)
NODE_CLASS_MAPPINGS.update(_WINDOWS)
