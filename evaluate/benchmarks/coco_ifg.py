"""COCO-IFG-style benchmark files: per image a global prompt and ``[x, y, w, h]`` + description tuples.

IFAdapter's COCO-IFG benchmark (1,000 layouts from COCO 2014 val, each instance with a detailed description; the
pack's spec ifadapter.md §7) is not published as a file; this reader takes the shapes such files come in:

- the file: a JSON list of items, a JSON object holding the list under ``items``, ``images``, ``data`` or
  ``annotations``, or JSONL (one item a line);
- an item: an object with the prompt under ``caption``, ``prompt`` or ``global_caption``; the instances under
  ``annotations``, ``instances``, ``objects`` or ``boxes``; optional ``width`` / ``height`` (else the reader's,
  1024 x 1024 by default: the benchmark's output size) and ``id`` / ``image_id`` / ``file_name``;
- an instance: ``{"box" | "bbox": [x, y, w, h], "caption" | "description": str or [str]}`` (IFAdapter's sample
  layout format; a list caption uses its first entry) or a pair ``[[x, y, w, h], "description"]``, pixels of the
  item's canvas, clipped to it.

Each item becomes a layout through the pack's IFAdapter importer (``core.layout.from_ifadapter_json``) and is
validated. Ids: the item's own (``id``, else ``image_id``, else ``file_name`` without its extension), else
``ifg-<position from 1, 6 digits>``.
"""

from __future__ import annotations

import json
import os

from core.layout import MAX_CANVAS, LayoutError, from_ifadapter_json

from ..benchmark_file import BenchmarkError, BenchmarkItem, check_id
from .sources import check_base_seed, check_count, check_limit, read_text, unique_ids

PROMPT_KEYS = ("caption", "prompt", "global_caption")
INSTANCE_KEYS = ("annotations", "instances", "objects", "boxes")
LIST_KEYS = ("items", "images", "data", "annotations")
DEFAULT_SIZE = 1024


def _items(text: str, path: str) -> list:
    try:
        d = json.loads(text)
    except ValueError:
        d = None
        lines = [ln for ln in text.splitlines() if ln.strip()]
        out = []
        for k, ln in enumerate(lines, start=1):
            try:
                out.append(json.loads(ln))
            except ValueError as e:
                raise BenchmarkError(f"COCO-IFG file {path!r}: line {k} is not JSON ({e}); the file must be a JSON "
                                     f"list, an object holding one, or JSON lines") from None
            except RecursionError:
                raise BenchmarkError(f"COCO-IFG file {path!r}: line {k} is nested too deeply") from None
        return out
    except RecursionError:
        raise BenchmarkError(f"COCO-IFG file {path!r} is nested too deeply") from None
    if isinstance(d, dict):
        for key in LIST_KEYS:
            if isinstance(d.get(key), list):
                return d[key]
        if any(k in d for k in PROMPT_KEYS):  # one item alone
            return [d]
        raise BenchmarkError(f"COCO-IFG file {path!r}: an object must hold the items under one of "
                             f"{', '.join(LIST_KEYS)}")
    if not isinstance(d, list):
        raise BenchmarkError(f"COCO-IFG file {path!r} must hold a list of items, got {type(d).__name__}")
    return d


def _first(d: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in d:
            return d[k]
    return None


def _instance(a: object, where: str) -> dict:
    """One instance as IFAdapter's ``{"box", "caption"}``."""
    if isinstance(a, dict):
        box = a.get("box", a.get("bbox"))
        cap = a.get("caption", a.get("description"))
        rest = {k: v for k, v in a.items() if k not in ("box", "bbox", "caption", "description")}
        return {"box": box, "caption": cap, **rest}
    if isinstance(a, (list, tuple)) and len(a) == 2:
        box, cap = (a[0], a[1]) if isinstance(a[0], (list, tuple)) else (a[1], a[0])
        return {"box": box, "caption": cap}
    raise BenchmarkError(f"{where} must be an object with 'box' and 'caption' or a pair [[x, y, w, h], text]")


def _item_id(d: dict, number: int) -> str:
    for key in ("id", "image_id"):
        v = d.get(key)
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return check_id(str(v), number)
    v = d.get("file_name")
    if isinstance(v, str):
        return check_id(os.path.splitext(os.path.basename(v))[0], number)
    return f"ifg-{number:06d}"


def coco_ifg_items(path: str, width: int = DEFAULT_SIZE, height: int = DEFAULT_SIZE, limit: int | None = None,
                   seed: int = 0) -> list[BenchmarkItem]:  # fmt: skip
    """The benchmark items of COCO-IFG-style file ``path`` on a ``width`` x ``height`` canvas unless an item
    gives its own; item ``i`` (from 0, file order) gets seed ``seed + i``."""
    check_base_seed(seed)
    check_limit(limit)
    for v, n in ((width, "width"), (height, "height")):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CANVAS:
            raise BenchmarkError(f"{n} must be an integer in 1..{MAX_CANVAS}, got {v!r}")
    raw = _items(read_text(path, "COCO-IFG file"), path)
    check_count(len(raw), f"COCO-IFG file {path!r}")
    items = []
    for pos, d in enumerate(raw[:limit] if limit else raw):
        number = pos + 1
        if not isinstance(d, dict):
            raise BenchmarkError(f"item {number} must be an object, got {type(d).__name__}")
        item_id = _item_id(d, number)
        where = f"item {number} ({item_id!r})"
        prompt = _first(d, PROMPT_KEYS)
        if prompt is None:
            prompt = ""
        insts = _first(d, INSTANCE_KEYS)
        if not isinstance(insts, list):
            raise BenchmarkError(f"{where}: the instances must be a list under one of {', '.join(INSTANCE_KEYS)}")
        doc = {"caption": prompt, "width": d.get("width", width), "height": d.get("height", height),
               "annotations": [_instance(a, f"{where}: instance {k}") for k, a in enumerate(insts, start=1)]}
        try:
            layout = from_ifadapter_json(doc).validate()
        except LayoutError as e:
            raise BenchmarkError(f"{where}: {e}") from None
        source = {"dataset": "coco-ifg", "file": os.path.basename(path), "position": number}
        items.append(BenchmarkItem(item_id, seed + pos, layout, {"source": source}))
    return unique_ids(items)
