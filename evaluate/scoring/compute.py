"""Every selected metric over a run's images, from the models given: what ``python -m evaluate score`` computes.

Per image, in order: the detector's boxes for the layout's categories (``ap``, localisation), YOLO-seg masks
(``mask_ap``, ``miou``, ``pim``), then per instance: localisation (the detection of its category with the highest
IoU, localised at IoU >= 0.5, ``ifs.localise``), the VLM verdicts on the matched crop (``ifs``), the CLIP score of
its box crop (``clip``), its colour / texture binding (``attr_colour`` / ``attr_texture``); per image the global CLIP
score (``clip_image``); over the run FID / KID against a reference folder (``fid`` / ``kid``). Definitions and
sources: docs/evaluation.md. An instance **fails** when it is not localised, or a VLM did not say yes.
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


@dataclass
class Models:
    """The loaded models (None where not given); ``vlms`` by name."""

    detection: object | None = None
    yolo: object | None = None
    clip: object | None = None
    inception: object | None = None
    vlms: dict = field(default_factory=dict)


def check_metrics(metrics: Sequence[str], given: set[str], reference: str | None) -> list[str]:
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
    """``entries``: (manifest item dict, layout, uint8 image) per image. Returns (run summary, per-image scores)."""
    metrics = set(metrics)
    images = [im for _, _, im in entries]
    layouts = [lay for _, lay, _ in entries]
    sizes = [(im.shape[1], im.shape[0]) for im in images]
    gts = [ground_truth(lay, size) for lay, size in zip(layouts, sizes)]
    box_dets = yolo_dets = None
    if models.detection is not None and metrics & {"ap", "ifs"}:
        queries = [sorted({g.category for g in gt}) or ["object"] for gt in gts]
        box_dets = models.detection.detect(images, queries)
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
                                                             "pim_point", "pim_scribble", "clip_image")}
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
                verdicts = vlm.verdicts([c for c in crops], [d for _, d in asked]) if crops else []
                got = {id(r): v for (r, _), v in zip(asked, verdicts)}
                for r in recs:
                    v = got.get(id(r))
                    r.setdefault("vlm", {})[name] = v
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
                image_values["clip"].append(float(np.mean(sc)))
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
        if "clip_image" in metrics:
            v = clip_scores.clip_score(models.clip.images([im]), models.clip.texts([lay.prompt or " "]))
            values["clip_image"] = round(v, 4)
            image_values["clip_image"].append(v)
        for r in recs:
            r["failed"] = bool(r.get("localised") is False or any(v is not True for v in (r.get("vlm") or {}).values()))
        values["failed"] = sum(r["failed"] for r in recs)
        values["n_instances"] = len(recs)
        results.append(ImageScore(item, recs, [_det_json(d) for d in dets], values))
    if "ifs" in metrics and models.vlms:
        summary["ifs"] = {k: _nan_to_none(v) for k, v in ifs.ifs_rates(all_loc, all_verdicts).items()}
        summary["ifs_versions"] = {"prompt": ifs.PROMPT_VERSION, "parser": ifs.PARSER_VERSION,
                                   "localisation_iou": ifs.LOCALISATION_IOU}
    if loc_dets is not None:
        summary["localised"] = _nan_to_none(float(np.mean(all_loc)) if all_loc else float("nan"))
    for key, vals in image_values.items():
        if vals and (key in metrics or key.split("_")[0] in metrics):
            summary[key] = _nan_to_none(masks.mean_over_images(vals))
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


def _det_json(d: Detection) -> dict:
    return {"box": [round(float(v), 2) for v in d.box], "score": round(float(d.score), 4), "category": d.category}
