"""Test-only helpers for the IFAdapter integration tests: exact latent capture, cache-busting passthrough, model
capture, and a writer for a tiny random-weight IFAdapter file.

- ``IFATest_SaveLatentTensor`` writes a LATENT's samples unquantised (safetensors) so tests can compare bit for bit.
- ``IFATest_ModelNonce`` returns its MODEL unchanged; a different ``nonce`` changes the node's input signature, so
  ComfyUI's output cache re-runs everything downstream (a "fresh" sampling of the same model object).
- ``IFATest_CaptureModel`` keeps a reference to the MODEL it receives in ``CAPTURED[tag]``.
"""
from __future__ import annotations

import os

import folder_paths
import torch

CAPTURED: dict = {}
_COUNTER = {"n": 0}


class SaveLatentTensor:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "prefix": ("STRING", {"default": "latent"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def save(self, samples, prefix):
        from safetensors.torch import save_file

        _COUNTER["n"] += 1
        name = f"{prefix}_{os.getpid()}_{_COUNTER['n']:05d}.safetensors"
        path = os.path.join(folder_paths.get_output_directory(), name)
        save_file({"samples": samples["samples"].detach().cpu().contiguous()}, path)
        return {"ui": {"text": [path]}}


class ModelNonce:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "nonce": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "passthrough"
    CATEGORY = "testing"

    def passthrough(self, model, nonce):
        return (model,)


class CaptureModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": "m"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "capture"
    CATEGORY = "testing"

    def capture(self, model, tag):
        CAPTURED[tag] = model
        return (model,)


def write_tiny_ifadapter(path: str, seed: int = 0, alpha: float = 0.5, fmt: str = "safetensors",
                         family: str = "sdxl") -> None:
    """A random-weight IFAdapter sized for the tiny SDXL (16 layers of 128 channels, 2 heads x 64 like the tiny SDXL;
    a small resampler) or, ``family="sd15"``, for the tiny SD1.5 (4 layers of 128 channels, 8 heads x 16, CLIP-L 768
    tokens), written as ``.safetensors`` with its config in the metadata, or as an official-style nested ``.bin``
    pickle (``fmt="bin"``, no metadata: the loader reads the sizes and the family from the tensor shapes).

    Every gate ``lambda`` is set to ``alpha`` (0 gives the zero-gate adapter, which must not change the image).
    """
    from core.ifadapter import IFAdapter, save_ifadapter  # the repository root is on sys.path under pytest

    kwargs = dict(hidden_size=128, heads=2 if family == "sdxl" else 8, family=family)  # the tiny UNets' layers
    kwargs["resampler_kwargs"] = dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = IFAdapter(**kwargs)
        with torch.no_grad():
            for proc in model.processors().values():
                proc.alpha.fill_(alpha)
                proc.q_norm.weight.normal_(0, 0.1)
                proc.k_norm.weight.normal_(0, 0.1)
    if fmt == "safetensors":
        save_ifadapter(model, path)
    else:
        sd = model.state_dict()
        nested = {sec: {k[len(sec) + 1:]: v for k, v in sd.items() if k.startswith(sec + ".")}
                  for sec in ("text_proj_model", "adapter_modules", "pos_net")}
        torch.save(nested, path)


NODE_CLASS_MAPPINGS = {
    "IFATest_SaveLatentTensor": SaveLatentTensor,
    "IFATest_ModelNonce": ModelNonce,
    "IFATest_CaptureModel": CaptureModel,
}
