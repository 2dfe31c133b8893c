"""Zero-shot grounded detection: Grounding DINO and OWLv2 from a local folder, text queries = instance categories.

- Grounding DINO (``model_type`` ``grounding-dino``, ``mm-grounding-dino``): ``AutoModelForZeroShotObjectDetection``;
  the queries are merged into one prompt the processor's way ("a cat. a dog.", lower-cased); boxes and scores come
  from the processor's ``post_process_grounded_object_detection`` (``threshold`` on the box score,
  ``text_threshold`` on its tokens); each kept box's category is the query whose tokens hold its highest token
  logit (the processor itself only decodes token phrases, which need not equal a query).
- OWLv2 (``owlv2``): ``Owlv2ForObjectDetection`` with one text query per category; boxes, scores and the query
  index from ``post_process_object_detection`` (boxes scaled to the padded square, as the processor defines).

Images are ``[H, W, 3]`` uint8 arrays; one query list per image (or one shared list). The result is one list of
:class:`evaluate.metrics.detection.Detection` per image, in the model's order, boxes in pixel xyxy clipped to the
image: what ``evaluate.metrics.detection.coco_ap`` and ``evaluate.metrics.ifs.localise`` take. No masks (box
detectors); a detection's category is the query string exactly as given, so it matches the layout's categories.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..metrics.detection import Detection
from .clip import _images
from .paths import Placement, check_model_type, placement, resolve_model

GROUNDING_DINO_TYPES = ("grounding-dino", "mm-grounding-dino")
OWLV2_TYPES = ("owlv2",)
MODEL_TYPES = GROUNDING_DINO_TYPES + OWLV2_TYPES
DEFAULT_BATCH = 4
MAX_QUERIES = 64
MAX_QUERY_CHARS = 200


def _queries(queries: Sequence[Sequence[str]] | Sequence[str], n: int) -> list[list[str]]:
    if len(queries) and all(isinstance(q, str) for q in queries):
        queries = [list(queries)] * n
    if len(queries) != n:
        raise ValueError(f"queries: {len(queries)} lists for {n} images; give one list per image or one shared list")
    out = []
    for i, qs in enumerate(queries, start=1):
        qs = list(qs)
        if not 1 <= len(qs) <= MAX_QUERIES:
            raise ValueError(f"image {i}: between 1 and {MAX_QUERIES} queries, got {len(qs)}")
        for k, q in enumerate(qs, start=1):
            if not isinstance(q, str) or not q.strip() or len(q) > MAX_QUERY_CHARS:
                raise ValueError(f"image {i}, query {k}: a non-empty string of at most {MAX_QUERY_CHARS} characters")
        out.append(qs)
    return out


class GroundedDetector:
    """A Grounding DINO or OWLv2 model from a folder; :meth:`detect` gives one list of Detections per image."""

    def __init__(self, name: str, models_root: str | None = None, allow_path: bool = False,
                 allow_download: bool = False, device: str | None = None, fp16: bool | None = None,
                 batch_size: int = DEFAULT_BATCH, threshold: float = 0.1, text_threshold: float = 0.1):  # fmt: skip
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, Owlv2ForObjectDetection

        folder = resolve_model(name, "detection", models_root, allow_path, allow_download)
        self.model_type = check_model_type(folder, "detection", name, MODEL_TYPES)
        self.place: Placement = placement(device, fp16)
        self.processor = AutoProcessor.from_pretrained(folder)
        cls = Owlv2ForObjectDetection if self.model_type in OWLV2_TYPES else AutoModelForZeroShotObjectDetection
        self.model = cls.from_pretrained(folder, dtype=self.place.dtype).to(self.place.device).eval()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for field, v in (("threshold", threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{field} must be in [0, 1], got {v}")
        self.batch_size, self.threshold, self.text_threshold = int(batch_size), float(threshold), float(text_threshold)

    def detect(self, images: Sequence[np.ndarray],
               queries: Sequence[Sequence[str]] | Sequence[str]) -> list[list[Detection]]:  # fmt: skip
        """Detections per image for its text queries (categories), each with the query string as category."""
        ims = _images(images)
        qs = _queries(queries, len(ims))
        out: list[list[Detection]] = []
        for s in range(0, len(ims), self.batch_size):
            batch, bq = ims[s:s + self.batch_size], qs[s:s + self.batch_size]
            run = self._owlv2 if self.model_type in OWLV2_TYPES else self._grounding_dino
            out.extend(run(batch, bq))
        return out

    def _inputs(self, enc) -> dict:
        return {k: (v.to(self.place.device, self.place.dtype) if v.is_floating_point() else v.to(self.place.device))
                for k, v in enc.items()}  # fmt: skip

    @torch.inference_mode()
    def _owlv2(self, images: list[np.ndarray], queries: list[list[str]]) -> list[list[Detection]]:
        enc = self.processor(text=queries, images=images, return_tensors="pt")
        outputs = self.model(**self._inputs(enc))
        logits = outputs.logits.float()
        for i, qs in enumerate(queries):  # queries the processor padded in are no candidates (as with one image)
            logits[i, :, len(qs):] = torch.finfo(logits.dtype).min
        outputs.logits, outputs.pred_boxes = logits, outputs.pred_boxes.float()
        sizes = [im.shape[:2] for im in images]
        res = self.processor.image_processor.post_process_object_detection(
            outputs, threshold=self.threshold, target_sizes=sizes)
        result = []
        for r, qs, (h, w) in zip(res, queries, sizes):
            dets = []
            for box, score, label in zip(r["boxes"].tolist(), r["scores"].tolist(), r["labels"].tolist()):
                dets.append(Detection(_clip_box(box, w, h), float(score), qs[label]))
            result.append(dets)
        return result

    @torch.inference_mode()
    def _grounding_dino(self, images: list[np.ndarray], queries: list[list[str]]) -> list[list[Detection]]:
        texts = [". ".join(q.strip().lower() for q in qs) + "." for qs in queries]
        enc = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        outputs = self.model(**self._inputs(enc))
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        sizes = [im.shape[:2] for im in images]
        res = self.processor.post_process_grounded_object_detection(
            outputs, input_ids=enc["input_ids"], threshold=self.threshold, text_threshold=self.text_threshold,
            target_sizes=sizes)
        probs = outputs.logits.sigmoid()
        result = []
        for i, (r, qs, (h, w)) in enumerate(zip(res, queries, sizes)):
            keep = probs[i].max(dim=-1).values > self.threshold  # the post-processor's own selection, in order
            spans = self._query_spans(texts[i], qs, enc["input_ids"].shape[1])
            kept = outputs.logits[i][keep]  # logits, not saturated probabilities: fewer ties
            dets = []
            for k, (box, score) in enumerate(zip(r["boxes"].tolist(), r["scores"].tolist())):
                q = int(np.argmax([float(kept[k, a:b].max()) if b > a else -np.inf for a, b in spans]))
                dets.append(Detection(_clip_box(box, w, h), float(score), qs[q]))
            result.append(dets)
        return result

    def _query_spans(self, text: str, queries: list[str], length: int) -> list[tuple[int, int]]:
        """Token ranges [a, b) of each query in the merged prompt (by the tokenizer's character offsets)."""
        offsets = self.processor.tokenizer(text, return_offsets_mapping=True)["offset_mapping"][:length]
        spans, pos = [], 0
        for q in queries:
            start = text.index(q.strip().lower(), pos)
            end = start + len(q.strip())
            pos = end
            toks = [t for t, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]
            spans.append((toks[0], toks[-1] + 1) if toks else (0, 0))
        return spans


def _clip_box(box: Sequence[float], w: int, h: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))
