"""Turn existing annotations into the trainer's dataset folder (image + layout JSON per image).

- COCO: ``instances_*.json`` (boxes, categories) + ``captions_*.json`` (the first caption becomes the global
  prompt). COCO has no per-instance descriptions, so each instance is described as ``"a <category>"``; crowd boxes
  are skipped.
- The official IFAdapter sample layouts (``{"caption", "annotations": [{"box": [x, y, w, h], "caption"}]}``, pixel
  boxes on a 768 canvas unless ``width`` / ``height`` say otherwise), paired with the image of the same name.

Images are linked (symlink) into the output folder by default, or copied with ``--copy``. Command line::

    python -m train.importers coco --instances instances_train2014.json --captions captions_train2014.json \\
        --images train2014/ --out dataset/ [--limit N] [--copy]
    python -m train.importers official --layouts samples/ --images images/ --out dataset/ [--copy]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

from PIL import Image

from core.layout import Instance, Layout, LayoutError, Region, from_ifadapter_json

from .engine.data import IMAGE_EXTENSIONS


def _place_image(src: str, out_dir: str, stem: str, copy: bool) -> str:
    dst = os.path.join(out_dir, stem + os.path.splitext(src)[1].lower())
    if os.path.lexists(dst):
        os.remove(dst)
    if copy:
        shutil.copyfile(src, dst)
    else:
        os.symlink(os.path.abspath(src), dst)
    return dst


def _write_layout(layout: Layout, out_dir: str, stem: str) -> None:
    layout.validate()
    with open(os.path.join(out_dir, stem + ".json"), "w", encoding="utf-8") as f:
        f.write(layout.to_json(indent=1))


def coco_layouts(instances: dict, captions: dict | None) -> list[tuple[dict, Layout]]:
    """``(image record, layout)`` for every COCO image with at least one non-crowd box."""
    cats = {c["id"]: c["name"] for c in instances.get("categories", [])}
    caps: dict[int, str] = {}
    for a in (captions or {}).get("annotations", []):
        caps.setdefault(a["image_id"], a["caption"].strip())
    anns: dict[int, list] = {}
    for a in instances.get("annotations", []):
        if not a.get("iscrowd", 0):
            anns.setdefault(a["image_id"], []).append(a)
    out = []
    for img in sorted(instances.get("images", []), key=lambda r: r["id"]):
        w, h = int(img["width"]), int(img["height"])
        insts = []
        for a in anns.get(img["id"], []):
            x, y, bw, bh = (float(v) for v in a["bbox"])
            box = (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            if box[2] > box[0] and box[3] > box[1]:
                insts.append(Instance(f"a {cats.get(a['category_id'], 'object')}", cats.get(a["category_id"], ""),
                                      [Region("box", box=box)]))
        if insts:
            out.append((img, Layout(w, h, caps.get(img["id"], ""), insts)))
    return out


def import_coco(instances_path: str, captions_path: str | None, images_dir: str, out_dir: str,
                limit: int = 0, copy: bool = False) -> int:
    """Write the COCO images with their layouts into ``out_dir``; returns how many samples were written."""
    with open(instances_path, encoding="utf-8") as f:
        instances = json.load(f)
    captions = None
    if captions_path:
        with open(captions_path, encoding="utf-8") as f:
            captions = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    for img, layout in coco_layouts(instances, captions):
        src = os.path.join(images_dir, img["file_name"])
        if not os.path.isfile(src):
            print(f"[import] {img['file_name']}: image not found in {images_dir}, skipped")
            continue
        stem = os.path.splitext(img["file_name"])[0]
        _place_image(src, out_dir, stem, copy)
        _write_layout(layout, out_dir, stem)
        n += 1
        if limit and n >= limit:
            break
    return n


def import_official(layout_paths: list[str], images_dir: str, out_dir: str, copy: bool = False) -> int:
    """Write official sample layouts (scaled to their images) with the image of the same name into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    for path in layout_paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        image = next((p for ext in IMAGE_EXTENSIONS for p in glob.glob(os.path.join(images_dir, stem + ext))), None)
        if image is None:
            print(f"[import] {path}: no image named {stem}.png/.jpg/... in {images_dir}, skipped")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                layout = from_ifadapter_json(json.load(f))
            with Image.open(image) as im:
                w, h = im.size
        except (OSError, ValueError, LayoutError) as e:
            print(f"[import] {path}: {e}, skipped")
            continue
        _place_image(image, out_dir, stem, copy)
        _write_layout(layout.scaled(w, h) if (layout.width, layout.height) != (w, h) else layout, out_dir, stem)
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.importers", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    c = sub.add_parser("coco", help="COCO instances + captions")
    c.add_argument("--instances", required=True)
    c.add_argument("--captions")
    c.add_argument("--images", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--copy", action="store_true")
    o = sub.add_parser("official", help="official IFAdapter sample layout JSON files")
    o.add_argument("--layouts", required=True, nargs="+", help="JSON files or folders holding them")
    o.add_argument("--images", required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--copy", action="store_true")
    a = p.parse_args(argv)
    if a.kind == "coco":
        n = import_coco(a.instances, a.captions, a.images, a.out, a.limit, a.copy)
    else:
        paths = []
        for item in a.layouts:
            paths += sorted(glob.glob(os.path.join(item, "*.json"))) if os.path.isdir(item) else [item]
        n = import_official(paths, a.images, a.out, a.copy)
    print(f"wrote {n} samples to {a.out}")


if __name__ == "__main__":
    main()
