"""CLIP scores from given embeddings: the instance CLIP score (crop vs description) and the image-level score.

The CLIP model that produces the embeddings is pluggable (it comes with the runner); this module holds the scoring
math only. Embeddings are L2-normalised here as the official scripts do (``x / ||x||``), so raw model outputs can
be passed.

- **Instance CLIP score** (InstanceDiffusion, Sec. 5, attribute binding; official ``eval/eval_attribute_binding.py``):
  per instance, the cosine similarity between the embedding of its crop (:mod:`.crops`) and of its text (the
  official text is the instance phrase, e.g. "red dog"; for a layout the description). Not scaled, not clipped.
  An image's score is the mean over its scored instances, the benchmark's the mean over images
  (:func:`evaluate.metrics.masks.mean_over_images`). The official model is open_clip ViT-L-14 (laion2b_s32b_b82k).
- **Image-level CLIP score** (IFAdapter, Table 1 "CLIP": the global caption vs the image; model not given): the
  torchmetrics ``CLIPScore`` definition, ``max(100 * cos(E_image, E_caption), 0)``, averaged over the images
  (torchmetrics clamps the mean at 0; for CLIP embeddings the cosine is positive in practice, so the two readings
  agree).
"""

from __future__ import annotations

import numpy as np


def _rows(x: np.ndarray, field: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{field} must be numeric embeddings [n, d] (or one [d]), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{field} holds a NaN or infinite value")
    return x.astype(np.result_type(x.dtype, np.float32))


def normalize(x: np.ndarray, field: str = "embeddings") -> np.ndarray:
    """Rows divided by their L2 norm (the official ``x / torch.linalg.norm(x, axis=-1, keepdims=True)``)."""
    x = _rows(x, field)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"{field}: an embedding of norm 0 has no direction")
    return x / norm


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings a [n, d] and b [n, d] -> [n]."""
    a, b = normalize(a, "first embeddings"), normalize(b, "second embeddings")
    if a.shape != b.shape:
        raise ValueError(f"paired embeddings must have one shape, got {a.shape} and {b.shape}")
    return (a * b).sum(axis=-1)


def instance_clip_scores(crop_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
    """Per-instance CLIP score [n]: cos(crop embedding, text embedding) for each instance of one image."""
    return cosine(crop_embeds, text_embeds)


def image_instance_clip_score(crop_embeds: np.ndarray, text_embeds: np.ndarray) -> float:
    """An image's instance CLIP score: the mean of its per-instance scores (NaN without instances)."""
    if len(np.asarray(crop_embeds)) == 0:
        return float("nan")
    return float(instance_clip_scores(crop_embeds, text_embeds).mean())


def clip_score(image_embeds: np.ndarray, caption_embeds: np.ndarray) -> float:
    """Image-level CLIP score of paired image / caption embeddings [n, d]: max(mean(100 * cos), 0)."""
    return float(max(float((100.0 * cosine(image_embeds, caption_embeds)).mean()), 0.0))
