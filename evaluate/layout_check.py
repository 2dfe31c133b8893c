"""Score generated images against the layout they were generated from, instance by instance (the Evaluate Layout
node; docs/evaluation.md, "The Evaluate Layout node").

Given images and, for each, its static layout, and any of three models, this runs the metrics of
``evaluate/metrics`` and says for each enabled instance whether it came out:

- a **detector** (``GroundedDetector``: Grounding DINO / OWLv2), prompted with each image's instance categories:
  box AP / AP50 / AP75 over the images (pycocotools), and per instance the IFS localisation (the detection of its
  category of highest IoU with its box, localised at IoU >= ``ifs.LOCALISATION_IOU``);
- a **CLIP** model (``ClipEmbedder``): the instance CLIP score (its box crop vs its description), the image CLIP
  score (image vs the layout's prompt, when there is one) and attribute binding for instances whose description
  starts with a candidate colour or texture;
- a **VLM** (``VlmVerifier``, needs the detector): the IFS verification of each localised instance's detected
  crop; the IFS rate.

An instance is a **hit** when it is localised and, with a VLM, verified; a **miss** otherwise; unknown (None)
without a detector. Bounds: at most ``MAX_IMAGES`` images per call, each within ``MAX_EVAL_PIXELS``; an image
whose aspect ratio differs from its layout's canvas by more than ``ASPECT_TOLERANCE`` is refused (a ValueError
naming the image, from 1), since the layout would be stretched onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics.attributes import CANDIDATES, attribute_of, binding_correct, candidate_prompts
from .metrics.clip_scores import clip_score, instance_clip_scores
from .metrics.crops import crop_box, instance_crops
from .metrics.detection import Detection, coco_ap
from .metrics.ground_truth import GroundTruth, ground_truth, image_size
from .metrics.ifs import LOCALISATION_IOU, PARSER_VERSION, PROMPT_VERSION, ifs_rates, localise, parse_yes_no

try:  # inside the node pack (see metrics/ground_truth.py)
    from ..core.layout import Layout
except ImportError:  # `evaluate` as a top-level package
    from core.layout import Layout

MAX_IMAGES = 64  # a ComfyUI batch scored in one call; the runner scores benchmarks image by image
ASPECT_TOLERANCE = 0.02  # relative difference of width / height between an image and its layout's canvas


@dataclass
class InstanceResult:
    """One enabled instance of one image."""

    image: int  # from 1
    number: int  # the instance's place in the layout, from 1
    category: str
    description: str
    box: tuple[float, float, float, float]  # xyxy image pixels
    detection: Detection | None = None  # the matched detection (highest IoU among its category's)
    iou: float | None = None
    localised: bool | None = None
    clip: float | None = None
    answer: str | None = None  # the VLM's raw answer
    verified: bool | None = None
    hit: bool | None = None

    def to_dict(self) -> dict:
        det = None
        if self.detection is not None:
            det = {"box": [round(float(v), 2) for v in self.detection.box], "score": _num(self.detection.score)}
        return {"image": self.image, "instance": self.number, "category": self.category,
                "description": self.description, "box": [round(float(v), 2) for v in self.box], "detection": det,
                "iou": _num(self.iou), "localised": self.localised, "clip": _num(self.clip), "answer": self.answer,
                "verified": self.verified, "hit": self.hit}  # fmt: skip


def _num(v: float | None) -> float | None:
    """A JSON-safe number: None for a missing or NaN value, else rounded to 4 places."""
    if v is None or not math.isfinite(float(v)):
        return None
    return round(float(v), 4)


def check_size(layout: Layout, size: tuple[int, int], number: int) -> tuple[int, int]:
    """The image size, refused (ValueError naming image ``number``) when too large or not of the canvas's shape."""
    w, h = image_size(size, f"image {number} size")
    canvas, image = layout.width / layout.height, w / h
    if abs(image / canvas - 1.0) > ASPECT_TOLERANCE:
        raise ValueError(f"image {number} is {w}x{h} but its layout's canvas is {layout.width}x{layout.height} "
                         f"(aspect ratio {image:.3f} vs {canvas:.3f}); score an image generated from this layout, "
                         f"or a layout of the image's shape")
    return w, h


def score(layouts: Sequence[Layout], images: Sequence[np.ndarray], detector=None, clip=None, vlm=None,
          names: dict[str, str] | None = None) -> dict:  # fmt: skip
    """Score ``images`` (uint8 [H, W, 3]) against their static ``layouts`` (one each) with the given models.

    Returns the JSON-ready report: ``summary`` (the metrics over all images), ``instances`` (one record per
    enabled instance, see :class:`InstanceResult`), ``detections`` (per image, everything the detector found),
    ``models`` (``names``), ``versions`` (the IFS prompt and
    parser, the localisation IoU). NaN / undefined values are None.
    """
    if len(layouts) != len(images):
        raise ValueError(f"{len(images)} images but {len(layouts)} layouts; give one layout per image")
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(f"score 1..{MAX_IMAGES} images at a time, got {len(images)}")
    if vlm is not None and detector is None:
        raise ValueError("IFS verification needs a detector to localise each instance first; choose a detector "
                         "or no VLM")
    sizes = [check_size(lay, (im.shape[1], im.shape[0]), i) for i, (lay, im) in enumerate(zip(layouts, images), 1)]
    gts = [ground_truth(lay, size) for lay, size in zip(layouts, sizes)]
    results = [[InstanceResult(i, g.number, g.category, g.description, g.box) for g in gt]
               for i, gt in enumerate(gts, start=1)]  # fmt: skip
    summary: dict = {"images": len(images), "instances": sum(len(r) for r in results)}
    if detector is not None:
        summary.update(_detect(detector, layouts, images, sizes, gts, results))
    if clip is not None:
        summary.update(_clip(clip, layouts, images, results))
    if vlm is not None:
        summary.update(_verify(vlm, images, results, (names or {}).get("vlm", "vlm")))
    flat = [r for rs in results for r in rs]
    if detector is not None:
        for r in flat:
            r.hit = bool(r.localised and (vlm is None or r.verified is True))
        summary["hits"] = sum(r.hit for r in flat)
        summary["hit_rate"] = _num(summary["hits"] / len(flat)) if flat else None
    found = summary.pop("_found", [[] for _ in images])
    return {"summary": summary, "instances": [r.to_dict() for r in flat], "detections": found,
            "models": dict(names or {}),
            "versions": {"ifs_prompt": PROMPT_VERSION, "yes_no_parser": PARSER_VERSION,
                         "localisation_iou": LOCALISATION_IOU}}  # fmt: skip


def _detect(detector, layouts, images, sizes, gts: list[list[GroundTruth]], results) -> dict:
    todo = [i for i, gt in enumerate(gts) if gt]
    dets: list[list[Detection]] = [[] for _ in images]
    if todo:
        queries = [list(dict.fromkeys(g.category for g in gts[i])) for i in todo]
        for i, found in zip(todo, detector.detect([images[i] for i in todo], queries)):
            dets[i] = found
    for i, gt in enumerate(gts):
        for g, r in zip(gt, results[i]):
            mine = [d for d in dets[i] if d.category == g.category]
            loc = localise(g.box, [d.box for d in mine])
            r.localised, r.iou = loc.ok, loc.iou
            r.detection = mine[loc.index] if loc.index is not None else None
    out: dict = {"detections": sum(len(d) for d in dets),
                 "_found": [[{"box": [round(float(v), 2) for v in d.box], "score": _num(d.score), "category": d.category}
                             for d in found] for found in dets]}  # fmt: skip
    if todo:
        ap = coco_ap([(layouts[i], sizes[i]) for i in todo], [dets[i] for i in todo])
        out.update({f"box_{k}": _num(ap[k]) for k in ("AP", "AP50", "AP75")})
    flat = [r for rs in results for r in rs]
    out["localisation_rate"] = _num(np.mean([r.localised for r in flat])) if flat else None
    return out


def _clip(clip, layouts, images, results) -> dict:
    out: dict = {}
    crop_embeds, per_image_crops = [], []
    for lay, im, rs in zip(layouts, images, results):
        crops = instance_crops(lay, im)
        per_image_crops.append(crops)
        keep = [k for k, c in enumerate(crops) if c is not None]
        if keep:
            emb = clip.images([crops[k] for k in keep])
            txt = clip.texts([rs[k].description or rs[k].category for k in keep])
            for k, s in zip(keep, instance_clip_scores(emb, txt)):
                rs[k].clip = float(s)
            crop_embeds.append((keep, emb, rs))
    scores = [r.clip for rs in results for r in rs if r.clip is not None]
    per_image = [np.mean([r.clip for r in rs if r.clip is not None]) for rs in results
                 if any(r.clip is not None for r in rs)]  # fmt: skip
    out["instance_clip"] = _num(np.mean(per_image)) if scores else None
    prompted = [(lay.prompt, im) for lay, im in zip(layouts, images) if lay.prompt.strip()]
    if prompted:
        out["image_clip"] = _num(clip_score(clip.images([im for _, im in prompted]),
                                            clip.texts([p for p, _ in prompted])))  # fmt: skip
    for kind in CANDIDATES:
        correct = []
        cands = None
        for keep, emb, rs in crop_embeds:
            asked = [attribute_of(rs[k].description, kind) for k in keep]
            if any(a is not None for a in asked):
                cands = clip.texts(candidate_prompts(kind)) if cands is None else cands
                correct.extend(c for c in binding_correct(emb, cands, asked) if c is not None)
        if correct:
            out[f"attribute_binding_{kind}"] = _num(np.mean(correct))
    return out


def _verify(vlm, images, results, name: str) -> dict:
    asks = [(r, crop_box(images[r.image - 1], r.detection.box)) for rs in results for r in rs if r.localised]
    asks = [(r, c) for r, c in asks if c.size]
    if asks:
        answers = vlm.answers([c for _, c in asks], [r.description or r.category for r, _ in asks])
        for (r, _), a in zip(asks, answers):
            r.answer, r.verified = a, parse_yes_no(a)
    flat = [r for rs in results for r in rs]
    rates = ifs_rates([bool(r.localised) for r in flat], {name: [r.verified for r in flat]})
    return {"ifs": {k: _num(v) for k, v in rates.items()}}


def summary_text(report: dict) -> str:
    """The report as a few human lines: the summary metrics, then one line per instance."""
    s = report["summary"]
    lines = [f"{s['images']} image(s), {s['instances']} instance(s)"
             + (f", {s['hits']} hit(s) ({_pct(s['hit_rate'])})" if "hits" in s else "")]  # fmt: skip
    for key in ("box_AP", "box_AP50", "box_AP75", "localisation_rate", "instance_clip", "image_clip",
                "attribute_binding_colour", "attribute_binding_texture"):  # fmt: skip
        if key in s:
            lines.append(f"{key}: {'n/a' if s[key] is None else s[key]}")
    if "ifs" in s:
        lines.append("IFS: " + ", ".join(f"{k} {_pct(v)}" for k, v in s["ifs"].items()))
    for r in report["instances"]:
        mark = {True: "hit", False: "miss", None: "-"}[r["hit"]]
        parts = [f"image {r['image']} instance {r['instance']} ({r['category'][:40]}): {mark}"]
        if r["iou"] is not None:
            parts.append(f"IoU {r['iou']:.2f}")
        if r["clip"] is not None:
            parts.append(f"CLIP {r['clip']:.3f}")
        if r["answer"] is not None:
            parts.append(f"VLM {r['answer'].strip()[:20]!r}")
        lines.append(", ".join(parts))
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"
