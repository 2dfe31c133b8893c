"""CLIP / SigLIP image and text embeddings for the CLIP scores and attribute binding.

Any CLIP-family model ``transformers`` loads with ``AutoModel`` + ``AutoProcessor`` (``clip``, ``siglip``,
``siglip2``) from a local folder. Images are ``[H, W, 3]`` uint8 arrays (the crops of
:func:`evaluate.metrics.crops.crop_box`); texts are strings. Both are embedded in batches on the model's device
and returned as float32 ``[n, d]`` numpy arrays, unnormalised: what ``evaluate.metrics.clip_scores`` and
``evaluate.metrics.attributes`` take (they normalise). SigLIP text is padded to ``max_length`` as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .paths import Placement, check_model_type, placement, resolve_model

MODEL_TYPES = ("clip", "siglip", "siglip2")
DEFAULT_BATCH = 32
MAX_TEXT_CHARS = 2000


def _images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, im in enumerate(images, start=1):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.dtype != np.uint8:
            raise ValueError(f"image {i}: must be a non-empty [H, W, 3] uint8 array, got {a.dtype} {a.shape}")
        out.append(a)
    return out


class ClipEmbedder:
    """A CLIP / SigLIP model from a folder: :meth:`images` and :meth:`texts` give ``[n, d]`` float32 embeddings."""

    def __init__(self, name: str, models_root: str | None = None, allow_path: bool = False,
                 allow_download: bool = False, device: str | None = None, fp16: bool | None = None,
                 batch_size: int = DEFAULT_BATCH):  # fmt: skip
        from transformers import AutoModel, AutoProcessor

        folder = resolve_model(name, "clip", models_root, allow_path, allow_download)
        self.model_type = check_model_type(folder, "clip", name, MODEL_TYPES)
        self.place: Placement = placement(device, fp16)
        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=self.place.dtype).to(self.place.device).eval()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @torch.inference_mode()
    def images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Image embeddings ``[n, d]`` of ``[H, W, 3]`` uint8 images (each resized by the processor)."""
        ims = _images(images)
        out = []
        for s in range(0, len(ims), self.batch_size):
            px = self.processor(images=ims[s:s + self.batch_size], return_tensors="pt")["pixel_values"]
            feats = self.model.get_image_features(pixel_values=px.to(self.place.device, self.place.dtype))
            out.append(_pooled(feats).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self._dim()), np.float32)

    @torch.inference_mode()
    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings ``[n, d]`` (CLIP: truncated to the model's context; SigLIP: padded to it)."""
        texts = list(texts)
        for i, t in enumerate(texts, start=1):
            if not isinstance(t, str) or len(t) > MAX_TEXT_CHARS:
                raise ValueError(f"text {i}: must be a string of at most {MAX_TEXT_CHARS} characters")
        pad = "max_length" if self.model_type.startswith("siglip") else True
        out = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.processor(text=texts[s:s + self.batch_size], padding=pad, truncation=True, return_tensors="pt")
            kw = {k: v.to(self.place.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out.append(_pooled(self.model.get_text_features(**kw)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self._dim()), np.float32)

    def _dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "projection_dim", None) or cfg.text_config.hidden_size)


def _pooled(feats) -> torch.Tensor:
    """The embedding tensor of ``get_*_features`` (a tensor, or in newer transformers an output with a pooler)."""
    if isinstance(feats, torch.Tensor):
        return feats
    return feats.pooler_output
