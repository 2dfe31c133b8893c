"""Inception-v3 pool3 features (2048-d) for FID / KID, from a local weights file.

The architecture is torchvision's ``inception_v3`` (``aux_logits=False``, ``init_weights=False``); the weights are
a local ``.pth`` / ``.pt`` / ``.safetensors`` state dict (torchvision's ImageNet weights, or the FID
``pt_inception-2015-12-05`` weights converted to torchvision's key names) under ``<models root>/inception/`` or at a
path. Loading is strict: a file of another model is refused naming it. Images ``[H, W, 3]`` uint8 are resized
bilinearly to 299² and normalised as torchvision's weights expect (``transform_input``); the features are the
global average pool before the classifier, float32 ``[n, 2048]``: what ``evaluate.metrics.distribution`` takes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .clip import _images
from .paths import Placement, WrongModelKind, placement, resolve_model

SIZE = 299
FEATURES = 2048
DEFAULT_BATCH = 32
SUFFIXES = (".pth", ".pt", ".safetensors")


def load_state_dict(path: str, name: str) -> dict[str, torch.Tensor]:
    if not path.endswith(SUFFIXES) or not os.path.isfile(path):
        raise WrongModelKind(f"inception model {name!r} at {path} must be a {'/'.join(SUFFIXES)} weights file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise WrongModelKind(f"inception model {name!r} at {path} holds no state dict")
    return sd


class InceptionFeatures:
    """torchvision Inception-v3 with local weights; :meth:`features` gives ``[n, 2048]`` pool3 features."""

    def __init__(self, name: str, models_root: str | None = None, allow_path: bool = False,
                 device: str | None = None, fp16: bool | None = None, batch_size: int = DEFAULT_BATCH):  # fmt: skip
        from torchvision.models import inception_v3

        path = resolve_model(name, "inception", models_root, allow_path, allow_download=False)
        sd = load_state_dict(path, name)
        sd = {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")}
        model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            shown = (missing + unexpected)[:3]
            raise WrongModelKind(f"inception model {name!r} at {path} is not Inception-v3 weights in torchvision's "
                                 f"layout ({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {shown})")
        model.fc = torch.nn.Identity()
        self.place: Placement = placement(device, fp16)
        self.model = model.to(self.place.device, self.place.dtype).eval()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @torch.inference_mode()
    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """float32 ``[n, 2048]`` pool3 features of ``[H, W, 3]`` uint8 images."""
        ims = _images(images)
        out = []
        for s in range(0, len(ims), self.batch_size):
            x = torch.stack([F.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float(), size=(SIZE, SIZE),
                                           mode="bilinear", align_corners=False)[0] for im in ims[s:s + self.batch_size]])
            x = (x / 255.0).to(self.place.device, self.place.dtype)
            x = (x - torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype)[:, None, None]) / \
                torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype)[:, None, None]
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURES), np.float32)
