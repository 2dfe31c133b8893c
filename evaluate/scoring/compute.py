"""The one scoring path: every metric of a set of generated images against the layouts they came from.

``score_images`` is what all three callers run: ``python -m evaluate score`` over a run folder
(``scoring/cli.py``), the Evaluate Layout node over a batch (``layout_check.py``) and the trainer's ``[eval]``
section over its generated images (``train/engine/eval_metrics.py``). Per image, in order: the detector's boxes for
the layout's categories (``ap``, localisation), YOLO-seg masks (``mask_ap``, ``miou``, ``pim``), then per instance:
localisation (the detection of its category with the highest IoU, localised at IoU >= 0.5, ``ifs.localise``), the
VLM answers on the matched crop (``ifs``), the CLIP score of its box crop (``clip``), its colour / texture binding
(``attr_colour`` / ``attr_texture``); per image the global CLIP score (``clip_image``, images with a prompt;
over all of them at once, as torchmetrics does); over all images box / mask AP (pycocotools), the localisation and
IFS rates, FID / KID against reference images (``fid`` / ``kid``). Definitions and sources: docs/evaluation.md.

One verdict per instance (:func:`instance_hit`): a **hit** when it is localised and every VLM asked said yes, a
**miss** (``failed``) otherwise; unknown (None) when no detector ran.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics import attributes, clip_scores, detection, distribution, ifs, masks
from ..metrics.crops import crop_box, instance_crops
from ..metrics.detection import Detection
from ..metrics.ground_truth import ground_truth

METRICS = ("ap", "mask_ap", "miou", "pim", "ifs", "clip", "clip_image", "attr_colour", "attr_texture", "fid", "kid")
NEEDS = {  # metric -> the model kinds it needs (any one of a tuple)
    "ap": (("detection", "yolo"),), "mask_ap": (("yolo",),), "miou": (("yolo",),), "pim": (("yolo",),),
    "ifs": (("detection", "yolo"), ("vlm",)), "clip": (("clip",),), "clip_image": (("clip",),),
    "attr_colour": (("clip",),), "attr_texture": (("clip",),), "fid": (("inception",),), "kid": (("inception",),),
}
# The summary as flat keys (see flat_summary): key -> path in the summary.
FLAT_KEYS = {
    "box_AP": "box.AP", "box_AP50": "box.AP50", "box_AP75": "box.AP75", "mask_AP": "mask.AP",
    "mask_AP50": "mask.AP50", "mask_AP75": "mask.AP75", "localised": "localised", "hit_rate": "hit_rate",
    "ifs": "ifs.mean", "clip": "clip", "clip_image": "clip_image", "attr_colour": "attr_colour",
    "attr_texture": "attr_texture", "miou": "miou", "pim_point": "pim_point", "pim_scribble": "pim_scribble",
    "fid": "fid", "kid": "kid.mean",
}


@dataclass
class Models:
    """The loaded models (None where not given); ``vlms`` by name. Each needs only the methods the scorer calls:
    ``detection.detect(images, queries)``, ``yolo.detect(images)``, ``clip.images`` / ``clip.texts``,
    ``vlm.answers(crops, descriptions)``, ``inception.features(images)``."""

    detection: object | None = None
    yolo: object | None = None
    clip: object | None = None
    inception: object | None = None
    vlms: dict = field(default_factory=dict)


def check_metrics(metrics: Sequence[str], given: set[str], reference: bool | str | None) -> list[str]:
    """The metric names, checked: known, with the models they need given; ValueError naming what is missing."""
    out = []
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
        for alternatives in NEEDS[m]:
            if not given & set(alternatives):
                raise ValueError(f"metric {m!r} needs a {' or '.join(alternatives)} model: add "
                                 f"--models {alternatives[0]}=NAME")
        if m in ("fid", "kid") and not reference:
            raise ValueError(f"metric {m!r} needs --reference DIR (a folder of real images)")
        out.append(m)
    return list(dict.fromkeys(out))


def instance_hit(localised: bool | None, verdicts: Sequence[bool | None] = ()) -> bool | None:
    """The one per-instance verdict: None when not checked (no detector), else localised and every VLM said yes."""
    if localised is None:
        return None
    return bool(localised and all(v is True for v in verdicts))


def _nan_to_none(v):
    return None if isinstance(v, float) and math.isnan(v) else v


@dataclass
class ImageScore:
    """One image's results: its instances' records, its detections, its image-level values."""

    item: dict
    instances: list[dict]
    detections: list[dict]
    values: dict


def score_images(entries: Sequence[tuple[dict, object, np.ndarray]], metrics: Sequence[str], models: Models,
                 reference: Sequence[np.ndarray] | None = None) -> tuple[dict, list[ImageScore]]:  # fmt: skip
    """``entries``: (item dict with ``id`` and ``number``, layout, uint8 image [H, W, 3]) per image; the layout is
    scaled to its image. Returns (summary over all images, per-image scores); undefined values are None.

    Per-instance records: ``item``, ``number``, ``instance`` (from 1), ``category``, ``description``, ``box``
    (image pixels), with a detector ``iou``, ``localised``, ``detection`` (index in the image's detections, or
    None), ``hit`` and ``failed``; with VLMs ``vlm`` (name -> True / False / None) and ``answers`` (name -> raw
    text); ``clip``, ``attr_colour``, ``attr_texture``, ``mask_iou``, ``pim_point``, ``pim_scribble`` where scored.
    """
    metrics = set(metrics)
    images = [im for _, _, im in entries]
    layouts = [lay for _, lay, _ in entries]
    sizes = [(im.shape[1], im.shape[0]) for im in images]
    gts = [ground_truth(lay, size) for lay, size in zip(layouts, sizes)]
    box_dets = yolo_dets = None
    if models.detection is not None and metrics & {"ap", "ifs"}:
        todo = [i for i, gt in enumerate(gts) if gt]  # an image without instances has nothing to look for
        box_dets = [[] for _ in images]
        if todo:
            found = models.detection.detect([images[i] for i in todo], [sorted({g.category for g in gts[i]})
                                                                        for i in todo])  # fmt: skip
            for i, dets in zip(todo, found):
                box_dets[i] = list(dets)
    if models.yolo is not None and metrics & {"ap", "ifs", "mask_ap", "miou", "pim"}:
        yolo_dets = models.yolo.detect(images)
    loc_dets = box_dets if box_dets is not None else yolo_dets
    summary: dict = {}
    pairs = list(zip(layouts, sizes))
    if "ap" in metrics:
        summary["box"] = {k: _nan_to_none(v) for k, v in detection.coco_ap(pairs, loc_dets, "bbox").items()}
    if "mask_ap" in metrics:
        summary["mask"] = {k: _nan_to_none(v) for k, v in detection.coco_ap(pairs, yolo_dets, "segm").items()}
    results: list[ImageScore] = []
    all_loc: list[bool] = []
    all_verdicts: dict[str, list] = {name: [] for name in models.vlms}
    image_values: dict[str, list[float]] = {k: [] for k in ("clip", "attr_colour", "attr_texture", "miou",
                                                             "pim_point", "pim_scribble")}
    image_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (image, prompt) embeddings, for clip_image
    clip_cands = {}
    if models.clip is not None:
        for kind, key in (("colour", "attr_colour"), ("texture", "attr_texture")):
            if key in metrics:
                clip_cands[key] = (kind, models.clip.texts(attributes.candidate_prompts(kind)))
    for idx, (item, lay, im) in enumerate(entries):
        gt = gts[idx]
        recs = [{"item": item["id"], "number": item["number"], "instance": g.number, "category": g.category,
                 "description": g.description, "box": [round(v, 2) for v in g.box]} for g in gt]
        dets = loc_dets[idx] if loc_dets is not None else []
        values: dict = {}
        if loc_dets is not None:
            for r, g in zip(recs, gt):
                cands = [(j, d) for j, d in enumerate(dets) if d.category == g.category]
                loc = ifs.localise(g.box, [d.box for _, d in cands])
                r["iou"] = round(loc.iou, 4)
                r["localised"] = loc.ok
                r["detection"] = None if loc.index is None else cands[loc.index][0]
                all_loc.append(loc.ok)
        if "ifs" in metrics and models.vlms:
            crops, asked = [], []
            for r, g in zip(recs, gt):
                if r.get("localised"):
                    c = crop_box(im, dets[r["detection"]].box)
                    if c.size:
                        crops.append(c)
                        asked.append((r, g.description or g.category))
            for name, vlm in models.vlms.items():
                answers = vlm.answers(crops, [d for _, d in asked]) if crops else []
                got = {id(r): a for (r, _), a in zip(asked, answers)}
                for r in recs:
                    a = got.get(id(r))
                    v = None if a is None else ifs.parse_yes_no(a)
                    r.setdefault("vlm", {})[name] = v
                    r.setdefault("answers", {})[name] = a
                    all_verdicts[name].append(v)
        if metrics & {"clip", "attr_colour", "attr_texture"}:
            crops = instance_crops(lay, im)
            kept = [(r, g, c) for r, g, c in zip(recs, gt, crops) if c is not None]
            emb = models.clip.images([c for _, _, c in kept]) if kept else None
            if "clip" in metrics and kept:
                txt = models.clip.texts([g.description or g.category for _, g, _ in kept])
                sc = clip_scores.instance_clip_scores(emb, txt)
                for (r, _, _), s in zip(kept, sc):
                    r["clip"] = round(float(s), 5)
                image_values["clip"].append(clip_scores.image_instance_clip_score(emb, txt))
            for key, (kind, cand) in clip_cands.items():
                if not kept:
                    continue
                asked = [attributes.attribute_of(g.description, kind) for _, g, _ in kept]
                correct = attributes.binding_correct(emb, cand, asked)
                for (r, _, _), c in zip(kept, correct):
                    r[key] = c
                image_values[key].append(attributes.image_binding_accuracy(correct))
        if metrics & {"miou", "pim"} and yolo_dets is not None:
            pm = [d.mask for d in yolo_dets[idx] if d.mask is not None]
            if "miou" in metrics:
                s = masks.instance_mask_iou(gt, pm)
                for r, v in zip(recs, s.per_instance):
                    r["mask_iou"] = v
                image_values["miou"].append(s.image)
            if "pim" in metrics:
                for kind in ("point", "scribble"):
                    s = masks.pim(gt, pm, kind)
                    for r, v in zip(recs, s.per_instance):
                        if v is not None:
                            r[f"pim_{kind}"] = v
                    image_values[f"pim_{kind}"].append(s.image)
        if "clip_image" in metrics and lay.prompt.strip():  # no prompt: nothing to score the image against
            pair = (models.clip.images([im]), models.clip.texts([lay.prompt]))
            values["clip_image"] = round(clip_scores.clip_score(*pair), 4)
            image_pairs.append(pair)
        for r in recs:
            r["hit"] = instance_hit(r.get("localised"), list((r.get("vlm") or {}).values()))
            r["failed"] = r["hit"] is False
        values["failed"] = sum(r["failed"] for r in recs)
        values["n_instances"] = len(recs)
        results.append(ImageScore(item, recs, [_det_json(d) for d in dets], values))
    if "ifs" in metrics and models.vlms:
        summary["ifs"] = {k: _nan_to_none(v) for k, v in ifs.ifs_rates(all_loc, all_verdicts).items()}
        summary["ifs_versions"] = {"prompt": ifs.PROMPT_VERSION, "parser": ifs.PARSER_VERSION,
                                   "localisation_iou": ifs.LOCALISATION_IOU}
    if loc_dets is not None:
        summary["localised"] = _nan_to_none(float(np.mean(all_loc)) if all_loc else float("nan"))
        summary["detections"] = sum(len(d) for d in loc_dets)
        summary["hits"] = sum(r["hit"] is True for im in results for r in im.instances)
        summary["hit_rate"] = _nan_to_none(summary["hits"] / len(all_loc) if all_loc else float("nan"))
    for key, vals in image_values.items():
        if vals and (key in metrics or key.split("_")[0] in metrics):
            summary[key] = _nan_to_none(masks.mean_over_images(vals))
    if image_pairs:  # over all pairs at once, as torchmetrics' CLIPScore: max(mean(100 cos), 0)
        summary["clip_image"] = clip_scores.clip_score(np.concatenate([i for i, _ in image_pairs]),
                                                       np.concatenate([t for _, t in image_pairs]))
    if metrics & {"fid", "kid"}:
        f_gen = models.inception.features(images)
        f_ref = models.inception.features(list(reference))
        if "fid" in metrics:
            summary["fid"] = distribution.fid(f_gen, f_ref)
        if "kid" in metrics:
            k = distribution.kid(f_gen, f_ref)
            summary["kid"] = {"mean": k.mean, "std": k.std}
    summary["images"] = len(entries)
    summary["instances"] = sum(len(g) for g in gts)
    summary["failed_instances"] = sum(r.values["failed"] for r in results)
    return summary, results


def flat_summary(summary: dict) -> dict:
    """The summary's metric values as flat keys (``FLAT_KEYS``: ``box_AP``, ``ifs`` for the mean over VLMs, ...),
    only those the summary holds."""
    out = {}
    for key, path in FLAT_KEYS.items():
        v = summary
        for part in path.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if path.split(".")[0] in summary:
            out[key] = v
    return out


def _det_json(d: Detection) -> dict:
    return {"box": [round(float(v), 2) for v in d.box], "score": round(float(d.score), 4), "category": d.category}
