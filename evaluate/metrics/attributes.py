"""Attribute-binding accuracy: is the attribute asked for the one CLIP reads from the instance's crop?

Source: InstanceDiffusion, Sec. 5 (attribute binding, colours and textures) and the official
``eval/eval_attribute_binding.py``, whose rules are matched here:

- candidates: 8 colours ``black white red green yellow blue pink purple`` or 8 textures
  ``rubber fluffy metallic wooden plastic fabric leather glass``, each embedded from the prompt "a {} object";
- the COCO protocol gives instance annotation ``id`` the attribute ``candidates[id % 8]`` and the phrase
  "{attribute} {category}" (:func:`official_attribute`);
- the attribute asked for is the phrase's first word (``phrase.split(" ")[0]``, exact, case-sensitive); an instance
  whose first word is no candidate cannot be scored (the official script's ``list.index`` raises and its
  ``except`` drops the instance): :func:`attribute_of` gives None and it is left out;
- prediction: the candidate whose normalised prompt embedding has the largest dot product with the normalised crop
  embedding (``argmax``: the first on ties); correct = 1 when it is the one asked for, else 0;
- aggregation: the mean over an image's scored instances, then over images (as the instance CLIP score).

The embedding model is pluggable (the official one is open_clip ViT-L-14, laion2b_s32b_b82k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .clip_scores import normalize

COLOURS = ("black", "white", "red", "green", "yellow", "blue", "pink", "purple")
TEXTURES = ("rubber", "fluffy", "metallic", "wooden", "plastic", "fabric", "leather", "glass")
CANDIDATES = {"colour": COLOURS, "texture": TEXTURES}
PROMPT_TEMPLATE = "a {} object"


def candidate_prompts(kind: str) -> list[str]:
    """The texts to embed for the candidates of ``kind`` ("colour" or "texture"), in candidate order."""
    return [PROMPT_TEMPLATE.format(c) for c in _candidates(kind)]


def _candidates(kind: str) -> tuple[str, ...]:
    if kind not in CANDIDATES:
        raise ValueError(f"attribute kind must be one of {tuple(CANDIDATES)}, got {kind!r}")
    return CANDIDATES[kind]


def official_attribute(annotation_id: int, kind: str) -> str:
    """The attribute the COCO protocol assigns to annotation ``annotation_id``: candidates[id % 8]."""
    cands = _candidates(kind)
    return cands[int(annotation_id) % len(cands)]


def attribute_of(description: str, kind: str) -> int | None:
    """Index of the attribute a description asks for (its first space-separated word), or None if no candidate."""
    first = description.split(" ")[0]
    cands = _candidates(kind)
    return cands.index(first) if first in cands else None


def predict_attributes(crop_embeds: np.ndarray, candidate_embeds: np.ndarray) -> np.ndarray:
    """int64 [n]: the index of the candidate each crop embedding [n, d] is most similar to (candidates [k, d])."""
    crops = normalize(crop_embeds, "crop embeddings")
    cands = normalize(candidate_embeds, "candidate embeddings")
    if crops.shape[1] != cands.shape[1]:
        raise ValueError(f"crop embeddings have {crops.shape[1]} dims, candidate embeddings {cands.shape[1]}")
    return np.argmax(crops @ cands.T, axis=1).astype(np.int64)


def binding_correct(crop_embeds: np.ndarray, candidate_embeds: np.ndarray,
                    asked: Sequence[int | None]) -> list[int | None]:  # fmt: skip
    """Per instance: 1 when the predicted attribute is the one ``asked`` (candidate index), 0 if not, None when
    nothing was asked (not scored)."""
    asked = list(asked)
    crops = np.asarray(crop_embeds)
    if crops.ndim != 2 or len(crops) != len(asked):
        raise ValueError(f"asked: {len(asked)} entries for crop embeddings of shape {crops.shape}; give [n, d] "
                         "embeddings and one entry per row")
    if not asked:
        return []
    pred = predict_attributes(crop_embeds, candidate_embeds)
    return [None if a is None else int(pred[i] == a) for i, a in enumerate(asked)]


def image_binding_accuracy(correct: Sequence[int | None]) -> float:
    """An image's attribute-binding accuracy: the mean over its scored instances (NaN when none is scored)."""
    scored = [c for c in correct if c is not None]
    return float(np.mean(scored)) if scored else float("nan")
