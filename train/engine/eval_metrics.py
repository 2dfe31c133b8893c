"""The ``[eval]`` metrics (engine): the evaluation suite's metrics (``evaluate/metrics``) on images the model being
trained generates, logged with the loss.

Every ``[eval] every`` steps (and at the start and the end), rank 0 generates one image per eval layout through the
preview path (the recipe's Apply-node patch, ComfyUI's sampler with the ``[samples]`` steps / cfg / seed / sampler /
scheduler) and scores the images against their layouts with the chosen metrics. The layouts are the ``[samples]``
preview layouts, the held-out samples' layouts (scaled to their bucket), or both (``[eval] layouts``), at most
``[eval] max_layouts``. Models are loaded from ``[eval] models_dir`` (``<kind>/<name>`` folders, as
``evaluate/models`` finds them; downloads only with ``allow_download``) for each evaluation and freed afterwards.

Metrics (``metrics.jsonl`` keys ``eval/<key>``; definitions and sources in docs/evaluation.md):

==================== ============== =====================================================================
name                 models         keys
==================== ============== =====================================================================
clip_score           clip           ``clip_score``: image vs global prompt, max(100 cos, 0), mean
instance_clip_score  clip           ``instance_clip_score``: crop vs description, per image then mean
colour_binding       clip           ``colour_binding``: attribute-binding accuracy, colour candidates
texture_binding      clip           ``texture_binding``: attribute-binding accuracy, texture candidates
box_ap               detector       ``box_AP``, ``box_AP50``: COCO box AP of the grounded detector's boxes
ifs                  detector, vlm  ``ifs``: IFS rate (localised at IoU 0.5 and the VLM says yes)
mask_ap              yolo           ``mask_AP``, ``mask_AP50``: COCO mask AP of YOLO-seg masks
mask_iou             yolo           ``mask_iou``: instance mask IoU (official greedy matching)
pim_point            yolo           ``pim_point``: points in mask
pim_scribble         yolo           ``pim_scribble``: scribble points in mask
==================== ============== =====================================================================

A metric that is undefined on these images (e.g. colour binding when no description starts with a colour) is NaN.
"""
from __future__ import annotations

import gc
from collections.abc import Sequence

import numpy as np

METRICS: dict[str, tuple[str, ...]] = {
    "clip_score": ("clip",), "instance_clip_score": ("clip",), "colour_binding": ("clip",),
    "texture_binding": ("clip",), "box_ap": ("detector",), "ifs": ("detector", "vlm"), "mask_ap": ("yolo",),
    "mask_iou": ("yolo",), "pim_point": ("yolo",), "pim_scribble": ("yolo",),
}
LAYOUT_SOURCES = ("samples", "holdout", "both")


def _mean(values: Sequence[float]) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


class MetricScorer:
    """Scores ``(layout, image uint8 [H, W, 3])`` pairs with the metrics of an ``[eval]`` table."""

    def __init__(self, ecfg, device: str | None = None):
        self.cfg, self.device = ecfg, device
        self.metrics = list(ecfg.metrics)

    def _kw(self) -> dict:
        return {"models_root": self.cfg.models_dir, "allow_path": True, "allow_download": self.cfg.allow_download,
                "device": self.device}

    def score(self, items: Sequence[tuple]) -> dict[str, float]:
        """``{key: value}`` over all items (see the module docstring for the keys)."""
        from evaluate.metrics.ground_truth import ground_truth

        layouts = [lay for lay, _ in items]
        images = [np.ascontiguousarray(im) for _, im in items]
        sizes = [(im.shape[1], im.shape[0]) for im in images]
        gts = [ground_truth(lay, size) for lay, size in zip(layouts, sizes)]
        out: dict[str, float] = {}
        wanted = set(self.metrics)
        if wanted & {"clip_score", "instance_clip_score", "colour_binding", "texture_binding"}:
            out.update(self._clip(layouts, images, gts, wanted))
        if wanted & {"box_ap", "ifs"}:
            out.update(self._detector(layouts, images, sizes, gts, wanted))
        if wanted & {"mask_ap", "mask_iou", "pim_point", "pim_scribble"}:
            out.update(self._yolo(layouts, images, sizes, gts, wanted))
        gc.collect()
        return out

    def _clip(self, layouts, images, gts, wanted) -> dict:
        from evaluate.metrics import attributes, clip_scores
        from evaluate.metrics.crops import crop_box
        from evaluate.models.clip import ClipEmbedder

        clip = ClipEmbedder(self.cfg.clip, batch_size=self.cfg.batch_size, **self._kw())
        out = {}
        if "clip_score" in wanted:
            out["clip_score"] = clip_scores.clip_score(clip.images(images), clip.texts([lay.prompt for lay in layouts]))
        crops_of = []
        for im, g in zip(images, gts):
            crops = [(crop_box(im, x.box), x.description) for x in g]
            crops_of.append([(c, d) for c, d in crops if c.size])
        per_image = [(clip.images([c for c, _ in cs]), [d for _, d in cs]) if cs else (None, []) for cs in crops_of]
        if "instance_clip_score" in wanted:
            out["instance_clip_score"] = _mean([clip_scores.image_instance_clip_score(e, clip.texts(d))
                                                for e, d in per_image if e is not None])
        for kind, key in (("colour", "colour_binding"), ("texture", "texture_binding")):
            if key in wanted:
                cands = clip.texts(attributes.candidate_prompts(kind))
                out[key] = _mean([attributes.image_binding_accuracy(attributes.binding_correct(
                    e, cands, [attributes.attribute_of(x, kind) for x in d])) for e, d in per_image if e is not None])
        del clip
        return out

    def _detector(self, layouts, images, sizes, gts, wanted) -> dict:
        from evaluate.models.detector import GroundedDetector

        det = GroundedDetector(self.cfg.detector, batch_size=self.cfg.batch_size, threshold=self.cfg.detector_threshold,
                               text_threshold=self.cfg.detector_threshold, **self._kw())
        queries = [sorted({x.category for x in g}) or [lay.prompt] for g, lay in zip(gts, layouts)]
        found = det.detect(images, queries)
        del det
        return self.detection_metrics(layouts, images, gts, found, wanted)

    def detection_metrics(self, layouts, images, gts, found, wanted) -> dict:
        """``box_ap`` / ``ifs`` from the grounded detector's output ``found`` (one Detection list per image, each
        with the instance category it was prompted with)."""
        from evaluate.metrics import detection, ifs
        from evaluate.metrics.crops import crop_box

        sizes = [(im.shape[1], im.shape[0]) for im in images]
        out = {}
        if "box_ap" in wanted:
            ap = detection.coco_ap(list(zip(layouts, sizes)), found, "bbox")
            out["box_AP"], out["box_AP50"] = ap["AP"], ap["AP50"]
        if "ifs" in wanted:
            from evaluate.models.vlm import VlmVerifier

            localised, crops, descriptions = [], [], []
            for im, g, dets in zip(images, gts, found):
                for x in g:
                    boxes = [d.box for d in dets if d.category == x.category]
                    loc = ifs.localise(x.box, boxes)
                    localised.append(loc.ok)
                    crop = crop_box(im, boxes[loc.index]) if loc.ok else None
                    if crop is not None and crop.size:
                        crops.append(crop)
                        descriptions.append(x.description)
                    elif loc.ok:
                        localised[-1] = False  # an empty crop cannot be verified
            vlm = VlmVerifier(self.cfg.vlm, batch_size=self.cfg.batch_size, **self._kw())
            said = iter(vlm.verdicts(crops, descriptions) if crops else [])
            verdicts = [next(said) if ok else None for ok in localised]
            del vlm
            out["ifs"] = ifs.ifs_rates(localised, {"vlm": verdicts})["mean"] if localised else float("nan")
        return out

    def _yolo(self, layouts, images, sizes, gts, wanted) -> dict:
        from evaluate.metrics import detection, masks
        from evaluate.models.yolo import YoloSegmenter

        seg = YoloSegmenter(self.cfg.yolo, models_root=self.cfg.models_dir, allow_path=True, device=self.device)
        found = seg.detect(images)
        del seg
        out = {}
        if "mask_ap" in wanted:
            ap = detection.coco_ap(list(zip(layouts, sizes)), found, "segm")
            out["mask_AP"], out["mask_AP50"] = ap["AP"], ap["AP50"]
        pred = [[d.mask for d in dets] for dets in found]
        if "mask_iou" in wanted:
            out["mask_iou"] = masks.mean_over_images([masks.instance_mask_iou(g, p).image for g, p in zip(gts, pred)])
        for kind in ("point", "scribble"):
            if f"pim_{kind}" in wanted:
                out[f"pim_{kind}"] = masks.mean_over_images([masks.pim(g, p, kind).image for g, p in zip(gts, pred)])
        return out
