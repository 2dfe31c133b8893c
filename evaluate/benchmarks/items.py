"""A benchmark item, the id and seed rules, the input bounds, and the JSONL writer.

A benchmark is a JSONL file, one item a line: ``{"id": str, "seed": int, "layout": <layout JSON>, "source": {...}}``
(``source`` says where the item came from; readers ignore keys they do not know). Ids are unique and
deterministic; the seed of the item at position ``i`` (counted from 0, in the source's order, before ``limit``) is
``base_seed + i``, so a subset (``--limit``) keeps its seeds.

Benchmark sources are files from anywhere, so every reader is bounded: at most ``MAX_ITEMS`` items, files of at most
``MAX_FILE_BYTES`` bytes (layout files ``MAX_JSON_CHARS``), ids of at most ``MAX_ID_CHARS`` characters; each layout
within the pack's layout limits (core/layout/limits.py). A refusal is a :class:`BenchmarkError` naming the item,
counted from 1.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.layout import Layout

MAX_ITEMS = 200_000  # COCO val2017 has 5,000 images, COCO-IFG 1,000 layouts
MAX_FILE_BYTES = 1 << 30  # an annotation file (COCO val2017 instances: 25 MB; train2017: 448 MB)
MAX_ID_CHARS = 200
MAX_SEED = 2**63 - 1  # ComfyUI's seed widgets take 0 .. 2**64 - 1; keep base + position in a signed int64


class BenchmarkError(ValueError):
    """A benchmark source that cannot be imported; the message names the item (from 1) and the field."""


@dataclass
class Item:
    """One benchmark item: a unique ``id``, the generation ``seed``, the ``layout`` and where it came from."""

    id: str
    seed: int
    layout: Layout
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "seed": self.seed, "layout": self.layout.to_dict(), "source": self.source}


def check_base_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - MAX_ITEMS:
        raise BenchmarkError(f"seed must be an integer in 0..{MAX_SEED - MAX_ITEMS}, got {seed!r}")
    return seed


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BenchmarkError(f"limit must be a positive integer (or none), got {limit!r}")
    return limit


def check_id(item_id: str, number: int) -> str:
    if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > MAX_ID_CHARS:
        raise BenchmarkError(f"item {number}: the id must be a non-empty string of at most {MAX_ID_CHARS} "
                             f"characters, got {str(item_id)[:MAX_ID_CHARS]!r}")
    if any(ord(c) < 32 for c in item_id):
        raise BenchmarkError(f"item {number}: the id {item_id[:80]!r} holds a control character")
    return item_id


def check_count(n: int, what: str) -> None:
    if n > MAX_ITEMS:
        raise BenchmarkError(f"{what} has {n} items; a benchmark holds at most {MAX_ITEMS}")


def read_text(path: str, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``, bounded; a BenchmarkError naming the file otherwise (never a raw OSError)."""
    try:
        if not os.path.isfile(path):
            raise BenchmarkError(f"{what} {path!r} is not a regular file")
        size = os.path.getsize(path)
        if size > max_bytes:
            raise BenchmarkError(f"{what} {path!r} has {size} bytes; at most {max_bytes} are read")
        with open(path, encoding="utf-8") as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise BenchmarkError(f"{what} {path!r} cannot be read: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"{what} {path!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: str, what: str) -> object:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as e:
        raise BenchmarkError(f"{what} {path!r} is not valid JSON: {e}") from None
    except RecursionError:
        raise BenchmarkError(f"{what} {path!r} is nested too deeply") from None


def unique_ids(items: list[Item]) -> list[Item]:
    seen: dict[str, int] = {}
    for number, it in enumerate(items, start=1):
        if it.id in seen:
            raise BenchmarkError(f"item {number}: id {it.id!r} is already used by item {seen[it.id]}; ids must be "
                                 f"unique")
        seen[it.id] = number
    return items


def write_jsonl(items: Iterable[Item], path: str) -> int:
    """Write the items as JSONL to ``path`` atomically (a temporary file in the same folder, then renamed);
    returns the number of lines."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".benchmark-", suffix=".jsonl.tmp", dir=folder)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for it in items:
                f.write(json.dumps(it.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n
