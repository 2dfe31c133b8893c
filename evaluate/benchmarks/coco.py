"""COCO val2017 as a benchmark, by InstanceDiffusion's selection rules (``eval_local.py`` of frank-xwang/
InstanceDiffusion, commit 722900e; docs/evaluation.md, "Benchmarks").

The official rules, reproduced:

- images: every image of the instances file, ids sorted ascending (``coco.getImgIds()`` sorted); none is filtered
  out, images without annotations included (their prompt is the caption alone);
- instances: the image's annotations in file order (``coco.getAnnIds(imgIds=[id], iscrowd=None)``: crowd ones
  included), the first ``MAX_OBJS`` = 30 of them (``[:max_objs]``);
- instance text: the category name; with attributes (``--add_random_colors`` / ``--add_random_textures``) the colour
  ``COLOURS[ann_id % 8]`` and / or the texture ``TEXTURES[ann_id % 8]`` before it (texture first when both);
- global prompt: the first caption of the image in the captions file (``--use_captions``, on in every official
  command) directly followed, without a separator, by the names of *all* the image's annotations joined with ", "
  (``make_a_sentence``, not cut at 30);
- location inputs per setting (the official ``configs/test_*.yaml`` drop flags; the pack's InstanceDiffusion preset
  "auto" picks the same preset from the regions written):

  ===========  =====================================================  ==================
  setting      regions of each instance                               preset ("auto")
  ===========  =====================================================  ==================
  box          the COCO box                                            boxes
  mask         the annotation's mask (``annToMask``, the image's size) masks
  point        one point: the annotation's ``point`` if it has one,   points
               else the box centre (``get_point_from_box``)
  scribble     the mask and 20 of its pixels drawn at random           scribbles
               (``sample_random_points_from_mask`` on the mask resized
               to 512 x 512 by PIL NEAREST), as the scribble
  ===========  =====================================================  ==================

  Boxes and point of the mask / scribble settings are derived by the back-end from the mask (the box) and the box
  (its centre), as the official code derives the point. The official scribble draw uses numpy's unseeded global
  generator; here it is ``np.random.RandomState(item seed)``, so an import is reproducible.

The canvas is the image's own size (the official custom annotation file resizes every image to 512 x 512; a
layout's coordinates are relative to its canvas, so either file gives the same normalised inputs).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.layout import MAX_CANVAS, Instance, Layout, LayoutError, Region

from ..benchmark_file import BenchmarkError, BenchmarkItem
from ..metrics.attributes import COLOURS, TEXTURES
from ..metrics.masks import SCRIBBLE_POINTS, sample_mask_points
from .sources import check_base_seed, check_count, check_limit, read_json, unique_ids

SETTINGS = ("box", "mask", "point", "scribble")
ATTRIBUTES = {"colors": COLOURS, "textures": TEXTURES}
MAX_OBJS = 30  # eval_local.py max_objs
SCRIBBLE_GRID = 512  # the official scribble pixels are drawn on the mask resized to 512 x 512 (PIL NEAREST)
MAX_ANNOTATIONS_PER_IMAGE = 10_000  # all of an image's names go into its prompt; COCO's busiest image has < 100
MAX_CAPTION_CHARS = 2000


def make_a_sentence(names: Sequence[str]) -> str:
    """The official ``make_a_sentence``: the names joined with ", "."""
    return ", ".join(names)


def _where(number: int, img: dict) -> str:
    return f"item {number} (image {img.get('id')!r}, {str(img.get('file_name', ''))[:80]!r})"


def _int(v: object, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise BenchmarkError(f"{where} must be an integer, got {str(v)[:60]!r}")
    return v


def _finite(v: object, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BenchmarkError(f"{where} must be a finite number, got {str(v)[:60]!r}")
    return float(v)


def _check_dataset(d: object, path: str) -> dict:
    """The instances file's structure, checked before pycocotools indexes it (it would raise KeyErrors)."""
    if not isinstance(d, dict):
        raise BenchmarkError(f"COCO instances file {path!r} must hold a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(d.get(key), list):
            raise BenchmarkError(f"COCO instances file {path!r}: {key!r} must be a list")
    check_count(len(d["images"]), f"COCO instances file {path!r}")
    cats = {}
    for k, c in enumerate(d["categories"], start=1):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise BenchmarkError(f"COCO instances file: category {k} must be an object with a string 'name'")
        cats[_int(c.get("id"), f"COCO instances file: category {k} 'id'")] = c["name"]
    ids = set()
    for k, img in enumerate(d["images"], start=1):
        if not isinstance(img, dict):
            raise BenchmarkError(f"COCO instances file: image {k} must be an object")
        ids.add(_int(img.get("id"), f"COCO instances file: image {k} 'id'"))
    for k, a in enumerate(d["annotations"], start=1):
        where = f"COCO instances file: annotation {k}"
        if not isinstance(a, dict):
            raise BenchmarkError(f"{where} must be an object")
        _int(a.get("id"), f"{where} 'id'")
        if _int(a.get("image_id"), f"{where} 'image_id'") not in ids:
            raise BenchmarkError(f"{where} (id {a['id']}): 'image_id' {a['image_id']} is no image of the file")
        if _int(a.get("category_id"), f"{where} 'category_id'") not in cats:
            raise BenchmarkError(f"{where} (id {a['id']}): 'category_id' {a['category_id']} is no category")
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4:
            raise BenchmarkError(f"{where} (id {a['id']}): 'bbox' must be [x, y, width, height]")
        for v, n in zip(b, ("x", "y", "width", "height")):
            _finite(v, f"{where} (id {a['id']}): bbox {n}")
    return d


def _coco(d: dict):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = d
        coco.createIndex()
    return coco


def _first_captions(path: str) -> dict[int, str]:
    """image id -> its first caption in file order (``coco_caption.loadAnns(getAnnIds(imgIds=[id]))[0]``)."""
    d = read_json(path, "COCO captions file")
    if not isinstance(d, dict) or not isinstance(d.get("annotations"), list):
        raise BenchmarkError(f"COCO captions file {path!r} must be an object with an 'annotations' list")
    check_count(len(d["annotations"]) // 10, f"COCO captions file {path!r}")
    first: dict[int, str] = {}
    for k, a in enumerate(d["annotations"], start=1):
        where = f"COCO captions file: annotation {k}"
        if not isinstance(a, dict) or not isinstance(a.get("caption"), str):
            raise BenchmarkError(f"{where} must be an object with a string 'caption'")
        if len(a["caption"]) > MAX_CAPTION_CHARS:
            raise BenchmarkError(f"{where}: the caption has {len(a['caption'])} characters; at most "
                                 f"{MAX_CAPTION_CHARS}")
        first.setdefault(_int(a.get("image_id"), f"{where} 'image_id'"), a["caption"])
    return first


def _phrase(name: str, ann_id: int, attributes: Sequence[str]) -> str:
    """The official instance text: colour, then texture, put before the category name when asked for."""
    if "colors" in attributes:
        name = COLOURS[ann_id % len(COLOURS)] + " " + name
    if "textures" in attributes:
        name = TEXTURES[ann_id % len(TEXTURES)] + " " + name
    return name


def _box(a: dict, W: int, H: int, where: str) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in a["bbox"])
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(W)), min(y + h, float(H))
    if not (x1 > x0 and y1 > y0):
        raise BenchmarkError(f"{where}: bbox {a['bbox']} has no area inside the {W}x{H} image")
    return x0, y0, x1, y1


def _mask(coco, a: dict, where: str) -> np.ndarray:
    seg = a.get("segmentation")
    if not isinstance(seg, (list, dict)) or not seg:
        raise BenchmarkError(f"{where}: 'segmentation' must be COCO polygons or RLE, got {str(seg)[:60]!r}")
    try:
        m = coco.annToMask(a).astype(bool)
    except Exception as e:  # malformed polygons / RLE inside pycocotools
        raise BenchmarkError(f"{where}: 'segmentation' cannot be decoded ({type(e).__name__}: {str(e)[:120]})") \
            from None
    if not m.any():
        raise BenchmarkError(f"{where}: its mask is empty")
    return m


def _point(a: dict, W: int, H: int, where: str) -> tuple[float, float]:
    p = a.get("point")
    if p is not None:  # the official custom annotation file may carry points (image pixels)
        if not isinstance(p, list) or len(p) != 2:
            raise BenchmarkError(f"{where}: 'point' must be [x, y]")
        x, y = (_finite(v, f"{where}: point") for v in p)
    else:
        x0, y0, x1, y1 = (float(v) for v in (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                               a["bbox"][1] + a["bbox"][3]))  # fmt: skip
        x, y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return min(max(x, 0.0), float(W)), min(max(y, 0.0), float(H))


def official_scribble(mask: np.ndarray, rng: np.random.RandomState) -> list[tuple[float, float]]:
    """20 pixels of ``mask`` [H, W] drawn the official way, in image pixels: the mask resized to 512 x 512 (PIL
    NEAREST), pixels drawn by ``rng.choice`` (with replacement only when fewer than 20), sorted by distance to
    (0, 0), each (column, row) of the 512 grid scaled back to the image (``col / 512 * W``)."""
    H, W = mask.shape
    small = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((SCRIBBLE_GRID, SCRIBBLE_GRID),
                                                                      Image.Resampling.NEAREST)) > 0  # fmt: skip
    pts = sample_mask_points(small, SCRIBBLE_POINTS, rng)
    if len(pts) == 0:  # the resize dropped every pixel of a thin mask: the official code gives zeros
        pts = np.zeros((SCRIBBLE_POINTS, 2), dtype=np.int64)
    order = sorted(range(len(pts)), key=lambda i: float(np.linalg.norm(pts[i])))
    return [(float(pts[i][0]) / SCRIBBLE_GRID * W, float(pts[i][1]) / SCRIBBLE_GRID * H) for i in order]


def _regions(setting: str, coco, a: dict, W: int, H: int, rng: np.random.RandomState, where: str) -> list[Region]:
    if setting == "box":
        return [Region("box", box=_box(a, W, H, where))]
    if setting == "point":
        return [Region("point", points=[_point(a, W, H, where)])]
    mask = _mask(coco, a, where)
    if mask.shape != (H, W):
        raise BenchmarkError(f"{where}: its mask is {mask.shape[1]}x{mask.shape[0]} but the image is {W}x{H}")
    regions = [Region("mask", mask=mask)]
    if setting == "scribble":
        regions.append(Region("scribble", points=official_scribble(mask, rng)))
    return regions


def coco_items(instances: str, captions: str | None = None, setting: str = "box",
               attributes: Sequence[str] = (), limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:  # fmt: skip
    """The benchmark items of COCO file ``instances`` (and ``captions``, or None for no caption) in ``setting``.

    Item ``i`` (images sorted by id, counted from 0) has the id of its file name without the extension (so the
    generated images can be named as COCO's, which ``yolo val`` needs) and seed ``seed + i``.
    """
    if setting not in SETTINGS:
        raise BenchmarkError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    attributes = tuple(attributes)
    for at in attributes:
        if at not in ATTRIBUTES:
            raise BenchmarkError(f"attributes must be among {', '.join(ATTRIBUTES)}, got {at!r}")
    check_base_seed(seed)
    check_limit(limit)
    d = _check_dataset(read_json(instances, "COCO instances file"), instances)
    first_caption = _first_captions(captions) if captions else None
    coco = _coco(d)
    image_ids = sorted(coco.getImgIds())
    items = []
    for pos, img_id in enumerate(image_ids[:limit] if limit else image_ids):
        number = pos + 1
        img = coco.loadImgs([img_id])[0]
        where = _where(number, img)
        W = _int(img.get("width"), f"{where}: 'width'")
        H = _int(img.get("height"), f"{where}: 'height'")
        if not (1 <= W <= MAX_CANVAS and 1 <= H <= MAX_CANVAS):
            raise BenchmarkError(f"{where}: size {W}x{H} must have both sides in 1..{MAX_CANVAS}")
        name = img.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise BenchmarkError(f"{where}: 'file_name' must be a non-empty string")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
        if len(anns) > MAX_ANNOTATIONS_PER_IMAGE:
            raise BenchmarkError(f"{where}: {len(anns)} annotations; at most {MAX_ANNOTATIONS_PER_IMAGE}")
        cat_names = coco.loadCats([a["category_id"] for a in anns]) if anns else []
        phrases = [_phrase(c["name"], a["id"], attributes) for c, a in zip(cat_names, anns)]
        prompt = make_a_sentence(phrases)
        if first_caption is not None:
            if img_id not in first_caption:
                raise BenchmarkError(f"{where}: the captions file has no caption for this image")
            prompt = first_caption[img_id] + prompt  # official: caption + sentence, no separator
        rng = np.random.RandomState(seed + pos)
        instances_ = []
        for k, (a, c, phrase) in enumerate(zip(anns[:MAX_OBJS], cat_names, phrases), start=1):
            w_ann = f"{where}, instance {k} (annotation {a['id']}, {phrase!r})"
            regions = _regions(setting, coco, a, W, H, rng, w_ann)
            extra = {"coco": {"annotation_id": a["id"], "category_id": a["category_id"],
                              "iscrowd": int(a.get("iscrowd", 0) or 0)}}  # fmt: skip
            instances_.append(Instance(phrase, c["name"], regions, extra=extra))
        try:
            layout = Layout(W, H, prompt, instances_).validate()
        except LayoutError as e:
            raise BenchmarkError(f"{where}: {e}") from None
        item_id = os.path.splitext(os.path.basename(name))[0] or str(img_id)
        source = {"dataset": "coco", "image_id": img_id, "file_name": name, "setting": setting,
                  "attributes": list(attributes), "captions": first_caption is not None,
                  "annotations": len(anns)}  # fmt: skip
        items.append(BenchmarkItem(item_id, seed + pos, layout, {"source": source}))
    return unique_ids(items)
