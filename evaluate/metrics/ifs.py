"""The IFS rate (Instance Feature Success) of IFAdapter's COCO-IFG benchmark: localisation, then VLM verification.

Source: IFAdapter (Wu et al., arXiv 2409.08240 v3), Sec. 4 / Table 1, as summarised in the pack's spec
(ifadapter.md, section 7): run Grounding-DINO on the generated image; match each detection to the instance box of
highest IoU; an instance whose best IoU is below **0.5** fails; otherwise crop the matched region and ask a VLM
whether the crop matches the instance description; IFS = successful instances / all instances, reported per VLM
(QwenVL, InternVL, CogVLM). The paper gives neither the detector prompt, the VLM prompt, the crop rule nor the
answer parsing; the choices below are this pack's, documented and versioned (docs/evaluation.md, "IFS rate"):

- localisation (:func:`localise`): the grounded detector is prompted with the instance's category (label, else
  description) and returns boxes; the instance is localised when the box of highest IoU with the instance's box
  (the first on ties) has IoU >= ``LOCALISATION_IOU`` = 0.5. IoU of xyxy pixel boxes on continuous coordinates
  (as pycocotools: no +1);
- the verification crop is the matched detection's box cut by :func:`evaluate.metrics.crops.crop_box`;
- the VLM prompt is ``PROMPTS[PROMPT_VERSION]`` with the description filled in; its answer is read by
  :func:`parse_yes_no` (parser ``PARSER_VERSION``); an answer that is neither counts as a failure;
- aggregation (:func:`ifs_rates`): per VLM, successes over all instances (pooled over the images, not a mean of
  per-image rates; an instance that is not localised fails without asking the VLM), and their mean over the VLMs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LOCALISATION_IOU = 0.5
PROMPT_VERSION = "ifs-v1"
PROMPTS = {
    "ifs-v1": 'Does this image show {description}? Answer with one word, "yes" or "no".',
}
PARSER_VERSION = "yesno-v1"
MAX_ANSWER_CHARS = 10000  # longer VLM answers are refused (the parser reads every word)

_WORD = re.compile(r"[a-z]+")


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy pixel boxes (0 when they do not overlap or both have no area)."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = max(min(ax1, bx1) - max(ax0, bx0), 0.0)
    ih = max(min(ay1, by1) - max(ay0, by0), 0.0)
    inter = iw * ih
    union = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0) + max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Localisation:
    """The detection matched to an instance (``index`` into the detector's boxes, or None), its IoU and verdict."""

    index: int | None
    iou: float
    ok: bool


def localise(instance_box: Sequence[float], detected_boxes: Sequence[Sequence[float]],
             iou_threshold: float = LOCALISATION_IOU) -> Localisation:  # fmt: skip
    """Match the detector's boxes (for this instance's prompt) to the instance's box: the box of highest IoU,
    localised when that IoU is >= ``iou_threshold``."""
    best, best_i = -1.0, None
    for i, box in enumerate(detected_boxes):
        iou = box_iou(instance_box, box)
        if iou > best:
            best, best_i = iou, i
    if best_i is None:
        return Localisation(None, 0.0, False)
    return Localisation(best_i, best, best >= iou_threshold)


def verification_prompt(description: str, version: str = PROMPT_VERSION) -> str:
    """The VLM question for one instance, from the versioned template."""
    if version not in PROMPTS:
        raise ValueError(f"IFS prompt version must be one of {tuple(PROMPTS)}, got {version!r}")
    return PROMPTS[version].format(description=description.strip())


def parse_yes_no(answer: str) -> bool | None:
    """Read a VLM's answer (parser ``yesno-v1``): True for yes, False for no, None when it says neither.

    Lower-cased words (runs of a-z; punctuation, quotes and markdown are separators). If the first word is "yes" or
    "no", that is the answer ("Yes, it is.", "**No**"). Otherwise, if exactly one of the two words occurs anywhere
    ("The answer is no."), that is the answer; if both or neither occur, None ("I can't tell"). Words that merely
    start with them ("yesterday", "none", "not") do not count.
    """
    if not isinstance(answer, str):
        raise ValueError(f"VLM answer must be a string, got {type(answer).__name__}")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValueError(f"VLM answer has {len(answer)} characters; at most {MAX_ANSWER_CHARS} are read")
    words = _WORD.findall(answer.lower())
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    found = {w for w in words if w in ("yes", "no")}
    return (found.pop() == "yes") if len(found) == 1 else None


def ifs_rates(localised: Sequence[bool], verdicts: Mapping[str, Sequence[bool | None]]) -> dict[str, float]:
    """IFS rate per VLM and their mean ("mean") over the instances of all images.

    ``localised``: per instance, whether :func:`localise` passed; ``verdicts``: per VLM name, per instance the
    parsed answer (True / False / None; ignored where not localised). An instance succeeds for a VLM when it is
    localised and that VLM said yes. Rates are in 0..1, NaN when there is no instance.
    """
    loc = np.asarray(list(localised), dtype=bool)
    if not verdicts:
        raise ValueError("verdicts: give the answers of at least one VLM")
    out: dict[str, float] = {}
    for name, v in verdicts.items():
        v = list(v)
        if len(v) != len(loc):
            raise ValueError(f"verdicts[{name!r}]: {len(v)} answers for {len(loc)} instances; give one per instance")
        ok = np.asarray([a is True for a in v], dtype=bool) & loc
        out[name] = float(ok.mean()) if len(loc) else float("nan")
    out["mean"] = float(np.mean([out[k] for k in verdicts]))
    return out
