"""The Evaluate Layout node's scoring: a batch of images against their layouts through the one scoring path
(``evaluate.scoring.compute.score_images``), reported per instance as hit / miss (docs/evaluation.md, "The Evaluate
Layout node").

The models the user chose decide the metrics: a **detector** (``GroundedDetector``: Grounding DINO / OWLv2) gives
``ap`` and the localisation of each instance; a **CLIP** model (``ClipEmbedder``) ``clip``, ``clip_image``,
``attr_colour`` and ``attr_texture``; a **VLM** (``VlmVerifier``, needs the detector) ``ifs``. Hit / miss is
``compute.instance_hit``. Bounds: at most ``MAX_IMAGES`` images per call, each within ``MAX_EVAL_PIXELS``; an image
whose aspect ratio differs from its layout's canvas by more than ``ASPECT_TOLERANCE`` is refused (a ValueError
naming the image, from 1), since the layout would be stretched onto it.

The report keeps the node's JSON names, aliases of the scoring names (docs/evaluation.md): ``box_AP`` / ``box_AP50``
/ ``box_AP75`` (``box``), ``localisation_rate`` (``localised``), ``instance_clip`` (``clip``), ``image_clip``
(``clip_image``), ``attribute_binding_colour`` / ``_texture`` (``attr_colour`` / ``attr_texture``); per instance
``image`` (from 1), ``answer`` and ``verified`` (the one VLM's raw answer and verdict) and ``detection`` as its box
and score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .metrics.ground_truth import image_size
from .metrics.ifs import LOCALISATION_IOU, PARSER_VERSION, PROMPT_VERSION
from .scoring.compute import Models, score_images

try:  # inside the node pack (see metrics/ground_truth.py)
    from ..core.layout import Layout
except ImportError:  # `evaluate` as a top-level package
    from core.layout import Layout

MAX_IMAGES = 64  # a ComfyUI batch scored in one call; the runner scores benchmarks image by image
ASPECT_TOLERANCE = 0.02  # relative difference of width / height between an image and its layout's canvas
# node report key -> scoring summary key ("box.AP": the AP entry of the box summary)
NODE_KEYS = {"box_AP": "box.AP", "box_AP50": "box.AP50", "box_AP75": "box.AP75", "localisation_rate": "localised",
             "hits": "hits", "hit_rate": "hit_rate", "detections": "detections", "instance_clip": "clip",
             "image_clip": "clip_image", "attribute_binding_colour": "attr_colour",
             "attribute_binding_texture": "attr_texture", "ifs": "ifs"}  # fmt: skip


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

    Returns the JSON-ready report: ``summary`` (the metrics over all images, under ``NODE_KEYS``), ``instances``
    (one record per enabled instance), ``detections`` (per image, everything the detector found), ``models``
    (``names``), ``versions`` (the IFS prompt and parser, the localisation IoU). NaN / undefined values are None.
    """
    if len(layouts) != len(images):
        raise ValueError(f"{len(images)} images but {len(layouts)} layouts; give one layout per image")
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(f"score 1..{MAX_IMAGES} images at a time, got {len(images)}")
    if vlm is not None and detector is None:
        raise ValueError("IFS verification needs a detector to localise each instance first; choose a detector "
                         "or no VLM")
    for i, (lay, im) in enumerate(zip(layouts, images), 1):
        check_size(lay, (im.shape[1], im.shape[0]), i)
    vlm_name = (names or {}).get("vlm", "vlm")
    models = Models(detection=detector, clip=clip, vlms={vlm_name: vlm} if vlm is not None else {})
    metrics = (["ap"] if detector is not None else []) + (["ifs"] if vlm is not None else []) + (
        ["clip", "clip_image", "attr_colour", "attr_texture"] if clip is not None else [])
    entries = [({"id": str(i), "number": i}, lay, im) for i, (lay, im) in enumerate(zip(layouts, images), 1)]
    summary, scored = score_images(entries, metrics, models)
    out: dict = {"images": summary["images"], "instances": summary["instances"]}
    for key, path in NODE_KEYS.items():
        head, _, tail = path.partition(".")
        if head in summary:
            v = summary[head].get(tail) if tail else summary[head]
            out[key] = {k: _num(x) for k, x in v.items()} if isinstance(v, dict) else (
                v if isinstance(v, int) else _num(v))
    instances = [_node_record(r, im.item["number"], im.detections, vlm_name) for im in scored for r in im.instances]
    return {"summary": out, "instances": instances, "detections": [im.detections for im in scored],
            "models": dict(names or {}),
            "versions": {"ifs_prompt": PROMPT_VERSION, "yes_no_parser": PARSER_VERSION,
                         "localisation_iou": LOCALISATION_IOU}}  # fmt: skip


def _node_record(r: dict, image: int, detections: list[dict], vlm: str) -> dict:
    """A scoring record in the node's JSON shape (what ``overlay.draw_overlay`` and ``summary_text`` read)."""
    j = r.get("detection")
    return {"image": image, "instance": r["instance"], "category": r["category"], "description": r["description"],
            "box": r["box"], "detection": None if j is None else {k: detections[j][k] for k in ("box", "score")},
            "iou": _num(r.get("iou")), "localised": r.get("localised"), "clip": _num(r.get("clip")),
            "answer": (r.get("answers") or {}).get(vlm), "verified": (r.get("vlm") or {}).get(vlm),
            "hit": r["hit"]}  # fmt: skip


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
