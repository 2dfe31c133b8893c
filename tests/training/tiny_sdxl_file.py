"""A tiny random-weight SDXL as a *single-file checkpoint*, loadable by ComfyUI's own ``load_checkpoint_guess_config``.

ComfyUI detects a checkpoint's family from its UNet shapes and only knows real sizes (320 base channels), so the
tiny layout (``tests/comfy_testnodes/tiny_models.py``: 32 base channels, the real SDXL block structure, real
tokenizers, small CLIP stacks of the real widths, TAESD as the VAE) is registered as one more supported model with
:func:`register`. Everything else (detection, UNet / CLIP / VAE loading, eps vs v-prediction) is ComfyUI's code.
"""
from __future__ import annotations

import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
from comfy_testnodes.tiny_models import BASE_CHANNELS, TinySDXLClip, write_single_file


class TinySDXL(comfy.supported_models.SDXL):
    """SDXL with 32 base channels (the tiny test layout)."""

    unet_config = dict(comfy.supported_models.SDXL.unet_config, model_channels=BASE_CHANNELS)

    def clip_target(self, state_dict=None):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClip)


def register() -> None:
    """Let ComfyUI's checkpoint detection recognise the tiny SDXL layout (idempotent)."""
    if not any(m is TinySDXL for m in comfy.supported_models.models):
        comfy.supported_models.models.insert(0, TinySDXL)


def write_tiny_sdxl_checkpoint(path: str, seed: int = 0, v_prediction: bool = False, unet_std: float = 0.02) -> str:
    """Save UNet + CLIP + VAE of the tiny SDXL (random weights from ``seed``) as one ``.safetensors`` file.

    ``unet_std`` sets the spread of the UNet's random weights (larger: the adapter's residual reaches the output
    with more weight, so a few training steps show).
    """
    register()
    return write_single_file("sdxl", path, seed, v_prediction, unet_std)
