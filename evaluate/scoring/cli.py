"""``python -m evaluate score --run DIR --metrics ap,ifs,clip --models detection=NAME,vlm=NAME,clip=NAME``.

Models: ``kind=name`` pairs (kinds ``detection``, ``yolo``, ``clip``, ``vlm`` (repeatable), ``inception``), each
``name`` a folder under ``<models root>/<kind>/`` (``--models-root``: a ComfyUI ``models`` folder; a hub name
``owner/name`` as ``owner--name``) or a path. A hub name is downloaded there only with ``--allow-download``.

Writes ``<run>/scores/``: ``summary.json`` (the run's metrics, the models, the prompt / parser versions),
``instances.jsonl`` (one record per instance), ``images.jsonl`` (per image: its values, instances and detections).
Images whose size is not their layout's are reported (item number and id) and left out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..benchmark_file import parse_item, write_atomic
from ..runner.manifest import RunFolder, read_lines
from .compute import METRICS, Models, check_metrics, score_images

KINDS = ("detection", "yolo", "clip", "vlm", "inception")
MAX_REFERENCE_IMAGES = 100_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the run folder (from python -m evaluate run)")
    p.add_argument("--metrics", required=True, help=f"comma-separated: {', '.join(METRICS)}")
    p.add_argument("--models", default="", help="kind=name pairs, comma-separated (kinds: " + ", ".join(KINDS) + ")")
    p.add_argument("--models-root", help="a ComfyUI models folder (names are looked up in <root>/<kind>/)")
    p.add_argument("--allow-download", action="store_true",
                   help="download a hub name into the models root on first use (off by default)")
    p.add_argument("--reference", help="a folder of real images, for fid / kid")
    p.add_argument("--device", help="cuda / cpu (default: cuda with fp16 when there is a GPU)")
    p.add_argument("--batch-size", type=int, default=8)


def parse_models(text: str) -> list[tuple[str, str]]:
    """``kind=name,kind=name`` -> [(kind, name)]; ValueError naming a bad pair."""
    out = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        kind, sep, name = part.partition("=")
        if not sep or kind not in KINDS or not name:
            raise ValueError(f"--models {part!r}: write kind=name with kind one of {', '.join(KINDS)}")
        if kind != "vlm" and any(k == kind for k, _ in out):
            raise ValueError(f"--models: give one {kind} model (only vlm may be repeated)")
        out.append((kind, name))
    return out


def load_models(pairs: list[tuple[str, str]], root: str | None, allow_download: bool, device: str | None,
                batch: int) -> Models:  # fmt: skip
    m = Models()
    for kind, name in pairs:
        common = dict(models_root=root, allow_path=True, device=device)
        if kind == "detection":
            from ..models.detector import GroundedDetector

            m.detection = GroundedDetector(name, allow_download=allow_download, batch_size=batch, **common)
        elif kind == "clip":
            from ..models.clip import ClipEmbedder

            m.clip = ClipEmbedder(name, allow_download=allow_download, batch_size=batch, **common)
        elif kind == "vlm":
            from ..models.vlm import VlmVerifier

            m.vlms[name] = VlmVerifier(name, allow_download=allow_download, batch_size=batch, **common)
        elif kind == "yolo":
            from ..models.yolo import YoloSegmenter

            m.yolo = YoloSegmenter(name, **common)
        elif kind == "inception":
            from ..models.inception import InceptionFeatures

            m.inception = InceptionFeatures(name, batch_size=batch, **common)
    return m


def _rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def run_entries(run: str, log=print) -> list[tuple[dict, object, np.ndarray]]:
    """(item dict with id / number / image, layout, uint8 image) for every generated image of a run, in benchmark
    order; an image whose size is not its layout's is reported and left out."""
    folder = RunFolder(run)
    items = {d["id"]: d for d in read_lines(folder.path("benchmark.jsonl"))}
    if not items:
        raise ValueError(f"{run}: no benchmark.jsonl; is it a run folder (python -m evaluate run --out)?")
    out = []
    for e in sorted(folder.entries(), key=lambda e: e.get("number", 0)):
        d = items.get(e["id"])
        if d is None:
            log(f"item {e.get('number')} ({e['id']!r}): in the manifest but not in the run's benchmark; left out")
            continue
        item = parse_item(d.get("number", e.get("number", 0)), {k: d[k] for k in ("id", "seed", "layout")})
        im = _rgb(folder.path(e["image"]))
        if (im.shape[1], im.shape[0]) != (item.layout.width, item.layout.height):
            log(f"{item.label()}: the image is {im.shape[1]}x{im.shape[0]} but its layout is "
                f"{item.layout.width}x{item.layout.height}; left out of the scores")
            continue
        out.append(({"id": item.id, "number": item.number, "seed": item.seed, "image": e["image"]}, item.layout, im))
    return out


def reference_images(folder: str) -> list[np.ndarray]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    if not names:
        raise ValueError(f"--reference {folder}: no .png / .jpg / .webp images there")
    if len(names) > MAX_REFERENCE_IMAGES:
        raise ValueError(f"--reference {folder}: {len(names)} images; at most {MAX_REFERENCE_IMAGES}")
    return [_rgb(os.path.join(folder, n)) for n in names]


def score_run(run: str, metrics: list[str], pairs: list[tuple[str, str]], root: str | None = None,
              allow_download: bool = False, reference: str | None = None, device: str | None = None,
              batch: int = 8, log=print, models: Models | None = None) -> dict:  # fmt: skip
    """Score a run folder and write ``<run>/scores/``; returns the summary. ``models``: already loaded models
    (any objects with the model classes' methods), instead of loading ``pairs`` (which then only name them)."""
    metrics = check_metrics(metrics, {k for k, _ in pairs}, reference)
    entries = run_entries(run, log)
    if not entries:
        raise ValueError(f"{run}: no generated image to score")
    models = models or load_models(pairs, root, allow_download, device, batch)
    ref = reference_images(reference) if reference else None
    summary, images = score_images(entries, metrics, models, ref)
    summary = _finite({"metrics": metrics, "models": [f"{k}={n}" for k, n in pairs], **summary})
    out = os.path.join(run, "scores")
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "instances.jsonl"), "".join(
        json.dumps(_finite(r), allow_nan=False) + "\n" for im in images for r in im.instances).encode())
    write_atomic(os.path.join(out, "images.jsonl"), "".join(
        json.dumps(_finite({**im.item, **im.values, "instances": im.instances, "detections": im.detections}),
                   allow_nan=False) + "\n" for im in images).encode())
    write_atomic(os.path.join(out, "summary.json"), json.dumps(summary, indent=1, allow_nan=False).encode())
    return summary


def _finite(v):
    """NaN (undefined: e.g. AP without ground truth) -> None, so the files are strict JSON."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def score_command(a: argparse.Namespace) -> int:
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    summary = score_run(a.run, metrics, parse_models(a.models), a.models_root, a.allow_download, a.reference,
                        a.device, a.batch_size, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(summary, indent=1))
    return 0
