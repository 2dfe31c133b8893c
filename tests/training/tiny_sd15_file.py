"""A tiny random-weight SD1.5 as a *single-file checkpoint*, loadable by ComfyUI's own ``load_checkpoint_guess_config``
(the SD1.5 counterpart of :mod:`tiny_sdxl_file`: the real SD1.5 block structure with 32 base channels, the real
tokenizer, a small CLIP-L stack of the real width, TAESD as the VAE; registered as one more supported model)."""
from __future__ import annotations

import comfy.latent_formats
import comfy.sd1_clip
import comfy.supported_models
import comfy.supported_models_base
from comfy_testnodes.tiny_models import BASE_CHANNELS, TinySD1Clip, write_single_file


class TinySD15Latent(comfy.latent_formats.SD15):
    """SD1.5's latent format with the scale that brings the tiny random VAE's latents (std about 0.47) to about unit
    variance, as 0.18215 does for the real SD1.5 VAE (with 0.18215 they would be 0.09: next to the noise, nothing
    an instance input could tell about the image would show in the loss)."""

    def __init__(self):
        super().__init__(scale_factor=2.0)


class TinySD15(comfy.supported_models.SD15):
    """SD1.5 with 32 base channels (the tiny test layout)."""

    unet_config = dict(comfy.supported_models.SD15.unet_config, model_channels=BASE_CHANNELS)
    latent_format = TinySD15Latent

    def model_type(self, state_dict, prefix=""):
        """ε-prediction, or v-prediction when the file has a ``v_pred`` key (ComfyUI reads that key for SDXL only;
        a real SD1.5 v-model is detected from its UNet, which random weights cannot reproduce)."""
        import comfy.model_base

        return comfy.model_base.ModelType.V_PREDICTION if "v_pred" in state_dict else comfy.model_base.ModelType.EPS

    def clip_target(self, state_dict=None):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD1Clip)


def register() -> None:
    """Let ComfyUI's checkpoint detection recognise the tiny SD1.5 layout (idempotent)."""
    if not any(m is TinySD15 for m in comfy.supported_models.models):
        comfy.supported_models.models.insert(0, TinySD15)


def write_tiny_sd15_checkpoint(path: str, seed: int = 0, v_prediction: bool = False, unet_std: float = 0.02) -> str:
    """Save UNet + CLIP + VAE of the tiny SD1.5 (random weights from ``seed``) as one ``.safetensors`` file;
    ``unet_std`` as in :func:`tiny_sdxl_file.write_tiny_sdxl_checkpoint`."""
    register()
    return write_single_file("sd15", path, seed, v_prediction, unet_std)
