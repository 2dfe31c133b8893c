"""The ``[eval]`` metrics (engine): the evaluation suite's scoring path (``evaluate.scoring.compute.score_images``,
the same as ``python -m evaluate score`` and the Evaluate Layout node) on images the model being trained
generates, logged with the loss.

Every ``[eval] every`` steps (and at the start and the end), rank 0 generates one image per eval layout through the
preview path (the recipe's Apply-node patch, ComfyUI's sampler with the ``[samples]`` steps / cfg / seed / sampler /
scheduler) and scores the images against their layouts with the chosen metrics. The layouts are the ``[samples]``
preview layouts, the held-out samples' layouts (scaled to their bucket), or both (``[eval] layouts``), at most
``[eval] max_layouts``. Models are loaded from ``[eval] models_dir`` (``<kind>/<name>`` folders, as
``evaluate/models`` finds them; downloads only with ``allow_download``) for each evaluation and freed afterwards.

The ``[eval] metrics`` names and the logged keys (``metrics.jsonl`` keys ``eval/<key>``) are the trainer's names
for the scoring metrics (docs/training.md, docs/evaluation.md):

==================== ============ ============== ==========================================================
name                 scoring      models         keys
==================== ============ ============== ==========================================================
clip_score           clip_image   clip           ``clip_score``: image vs global prompt, max(mean 100 cos, 0)
instance_clip_score  clip         clip           ``instance_clip_score``: crop vs description
colour_binding       attr_colour  clip           ``colour_binding``: attribute-binding accuracy, colours
texture_binding      attr_texture clip           ``texture_binding``: attribute-binding accuracy, textures
box_ap               ap           detector       ``box_AP``, ``box_AP50``: COCO box AP of the detector's boxes
ifs                  ifs          detector, vlm  ``ifs``: IFS rate (localised at IoU 0.5 and the VLM says yes)
mask_ap              mask_ap      yolo           ``mask_AP``, ``mask_AP50``: COCO mask AP of YOLO-seg masks
mask_iou             miou         yolo           ``mask_iou``: instance mask IoU (official greedy matching)
pim_point            pim          yolo           ``pim_point``: points in mask
pim_scribble         pim          yolo           ``pim_scribble``: scribble points in mask
==================== ============ ============== ==========================================================

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
# [eval] name -> (the scoring metric, {logged key: flat summary key (evaluate.scoring.compute.FLAT_KEYS)})
SCORING = {
    "clip_score": ("clip_image", {"clip_score": "clip_image"}),
    "instance_clip_score": ("clip", {"instance_clip_score": "clip"}),
    "colour_binding": ("attr_colour", {"colour_binding": "attr_colour"}),
    "texture_binding": ("attr_texture", {"texture_binding": "attr_texture"}),
    "box_ap": ("ap", {"box_AP": "box_AP", "box_AP50": "box_AP50"}),
    "ifs": ("ifs", {"ifs": "ifs"}),
    "mask_ap": ("mask_ap", {"mask_AP": "mask_AP", "mask_AP50": "mask_AP50"}),
    "mask_iou": ("miou", {"mask_iou": "miou"}),
    "pim_point": ("pim", {"pim_point": "pim_point"}),
    "pim_scribble": ("pim", {"pim_scribble": "pim_scribble"}),
}
LAYOUT_SOURCES = ("samples", "holdout", "both")


class MetricScorer:
    """Scores ``(layout, image uint8 [H, W, 3])`` pairs with the metrics of an ``[eval]`` table."""

    def __init__(self, ecfg, device: str | None = None):
        self.cfg, self.device = ecfg, device
        self.metrics = list(ecfg.metrics)

    def load_models(self):
        """The models the metrics need, from ``[eval]`` (an ``evaluate.scoring.compute.Models``)."""
        from evaluate.scoring.compute import Models

        kw = {"models_root": self.cfg.models_dir, "allow_path": True, "device": self.device}
        dl = {"allow_download": self.cfg.allow_download, "batch_size": self.cfg.batch_size}
        need = {k for m in self.metrics for k in METRICS[m]}
        m = Models()
        if "clip" in need:
            from evaluate.models.clip import ClipEmbedder

            m.clip = ClipEmbedder(self.cfg.clip, **dl, **kw)
        if "detector" in need:
            from evaluate.models.detector import GroundedDetector

            m.detection = GroundedDetector(self.cfg.detector, threshold=self.cfg.detector_threshold,
                                           text_threshold=self.cfg.detector_threshold, **dl, **kw)
        if "vlm" in need:
            from evaluate.models.vlm import VlmVerifier

            m.vlms["vlm"] = VlmVerifier(self.cfg.vlm, **dl, **kw)
        if "yolo" in need:
            from evaluate.models.yolo import YoloSegmenter

            m.yolo = YoloSegmenter(self.cfg.yolo, **kw)
        return m

    def score(self, items: Sequence[tuple], models=None) -> dict[str, float]:
        """``{key: value}`` over all items (see the module docstring for the keys). ``models``: already loaded
        models (``evaluate.scoring.compute.Models``) instead of those ``[eval]`` names, which are then freed."""
        from evaluate.scoring.compute import flat_summary, score_images

        entries = [({"id": str(i), "number": i}, lay, np.ascontiguousarray(im))
                   for i, (lay, im) in enumerate(items, start=1)]  # fmt: skip
        metrics = list(dict.fromkeys(SCORING[m][0] for m in self.metrics))
        loaded = models is None
        models = self.load_models() if loaded else models
        try:
            flat = flat_summary(score_images(entries, metrics, models)[0])
        finally:
            if loaded:
                del models
                gc.collect()
        out: dict[str, float] = {}
        for m in self.metrics:
            for key, src in SCORING[m][1].items():
                v = flat.get(src)
                out[key] = float("nan") if v is None else float(v)
        return out
