"""Benchmark files: one JSON object a line, ``{"id": str, "seed": int, "layout": <layout JSON>, ...}``; the one
module that reads them (the runner) and writes them (the importers, the stress pairs).

The format (docs/evaluation.md, "Benchmark files"): ``id`` names the item (1..``MAX_ID_CHARS`` characters, no
control character, unique in the file), ``seed`` is the sampler seed (0..2^64-1, ComfyUI's seed range), ``layout``
is a layout in the pack's JSON format (docs/layout-format.md), as an object or as a JSON string; any other field
(e.g. ``source``: where an importer took the item from) is kept and ignored. Blank lines are skipped. Items are
numbered from 1 by their place among the non-blank lines, and every message names that number and the id.

:func:`read_benchmark` never stops at a bad line: it returns the good items and one :class:`BadItem` per bad line,
so a run goes on without them. Bounds, the same for reading and writing: at most ``MAX_ITEMS`` items (COCO val2017
has 5,000 images, COCO-IFG 1,000 layouts, COCO train2017 118,287 images), a line at most ``MAX_LINE_CHARS``
characters, ids at most ``MAX_ID_CHARS`` characters. A refusal is a :class:`BenchmarkError` (a ValueError).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.layout import MAX_JSON_CHARS, Layout, LayoutError

MAX_ITEMS = 200_000
MAX_LINE_CHARS = MAX_JSON_CHARS + 4096
MAX_ID_CHARS = 200
MAX_SEED = 0xFFFFFFFFFFFFFFFF


class BenchmarkError(ValueError):
    """A benchmark item or source that cannot be read or written; the message names the item (from 1) and the
    field."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark item. ``extra``: the other fields of its line; ``number``: its place in the file, from 1 (0
    for an item not read from a file)."""

    id: str
    seed: int
    layout: Layout
    extra: dict = field(default_factory=dict)
    number: int = 0

    def label(self) -> str:
        """How messages name the item: ``item 3 ("coco-139")``."""
        return f"item {self.number} ({self.id!r})"

    def to_dict(self) -> dict:
        return {"id": self.id, "seed": self.seed, "layout": self.layout.to_dict(), **self.extra}


@dataclass(frozen=True)
class BadItem:
    """A line that is not a valid item, with the message that says why."""

    number: int
    id: str | None
    message: str


def item_label(number: int, item_id: str | None) -> str:
    return f"item {number}" + (f" ({item_id!r})" if item_id is not None else "")


def check_id(item_id, number: int) -> str:
    """An item id: a string of 1..``MAX_ID_CHARS`` characters without control characters; BenchmarkError naming
    item ``number`` otherwise."""
    if not isinstance(item_id, str) or not 1 <= len(item_id) <= MAX_ID_CHARS or not item_id.strip():
        raise BenchmarkError(f"item {number}: id must be a string of 1 to {MAX_ID_CHARS} characters, "
                             f"got {item_id!r:.80}")
    if any(ord(c) < 32 for c in item_id):
        raise BenchmarkError(f"item {number}: the id {item_id[:80]!r} holds a control character")
    return item_id


def parse_item(number: int, line: str | dict) -> BenchmarkItem:
    """One line -> :class:`BenchmarkItem`; BenchmarkError naming the item (from 1) and the field otherwise."""
    if isinstance(line, str):
        if len(line) > MAX_LINE_CHARS:
            raise BenchmarkError(f"item {number}: the line has {len(line)} characters; at most {MAX_LINE_CHARS}")
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            raise BenchmarkError(f"item {number}: not valid JSON ({e})") from None
    else:
        d = line
    if not isinstance(d, dict):
        raise BenchmarkError(f"item {number}: a line must be a JSON object with id, seed and layout")
    item_id = check_id(d.get("id"), number)
    who = item_label(number, item_id)
    seed = d.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BenchmarkError(f"{who}: seed must be an integer from 0 to 2^64-1, got {seed!r:.40}")
    if "layout" not in d:
        raise BenchmarkError(f"{who}: no layout")
    try:
        layout = Layout.from_json(d["layout"])
    except LayoutError as e:
        raise BenchmarkError(f"{who}: not a valid layout: {e}") from None
    extra = {k: v for k, v in d.items() if k not in ("id", "seed", "layout")}
    return BenchmarkItem(item_id, seed, layout, extra, number)


def read_benchmark(path: str) -> tuple[list[BenchmarkItem], list[BadItem]]:
    """Every line of the file at ``path``: the valid items and one :class:`BadItem` per invalid line (duplicate ids
    included: the later line is the bad one)."""
    items: list[BenchmarkItem] = []
    bad: list[BadItem] = []
    seen: dict[str, int] = {}
    number = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            number += 1
            if number > MAX_ITEMS:
                raise BenchmarkError(f"{path}: more than {MAX_ITEMS} items; split the benchmark")
            try:
                item = parse_item(number, line)
            except ValueError as e:
                bad.append(BadItem(number, _id_of(line), str(e)))
                continue
            if item.id in seen:
                bad.append(BadItem(number, item.id, f"{item.label()}: the id is already used by item {seen[item.id]}"))
                continue
            seen[item.id] = number
            items.append(item)
    return items, bad


def _id_of(line: str) -> str | None:
    try:
        v = json.loads(line).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return v if isinstance(v, str) and len(v) <= MAX_ID_CHARS else None


def write_benchmark(path: str, items: Iterable[BenchmarkItem | dict]) -> int:
    """Write items (or plain dicts in the line format) as a benchmark file, atomically; returns the count. The same
    bounds as the reader: at most ``MAX_ITEMS`` items, each a valid line (BenchmarkError naming the first bad one)."""
    lines = []
    for number, it in enumerate(items, start=1):
        if number > MAX_ITEMS:
            raise BenchmarkError(f"{path}: more than {MAX_ITEMS} items; a benchmark holds at most {MAX_ITEMS}")
        d = it.to_dict() if isinstance(it, BenchmarkItem) else it
        line = json.dumps(d, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        parse_item(number, line)
        lines.append(line + "\n")
    write_atomic(path, "".join(lines).encode("utf-8"))
    return len(lines)


def write_atomic(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers see the old file
    or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path)[-40:])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def item_file_stem(item_id: str) -> str:
    """A file name stem for an item: its id made safe (letters, digits, ``._-``; at most 60) plus 8 hex digits of
    the id's SHA-256, so distinct ids never share a file and the name is stable across runs."""
    slug = _SLUG.sub("_", item_id).strip("._")[:60] or "item"
    return f"{slug}-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:8]}"
