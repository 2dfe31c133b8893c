"""What the importers share: reading their source files (bounded), the base seed, ``limit`` and the unique-id rule.

The item, its bounds and the JSONL writer are ``evaluate/benchmark_file.py`` (the runner reads the same module).
Ids are unique and deterministic; the seed of the item at position ``i`` (counted from 0, in the source's order,
before ``limit``) is ``base_seed + i``, so a subset (``--limit``) keeps its seeds. Source files are read up to
``MAX_FILE_BYTES`` bytes (layout files ``MAX_JSON_CHARS``). A refusal is a ``BenchmarkError`` naming the item,
counted from 1.
"""

from __future__ import annotations

import json
import os

from ..benchmark_file import MAX_ITEMS, MAX_SEED, BenchmarkError, BenchmarkItem

MAX_FILE_BYTES = 1 << 30  # an annotation file (COCO val2017 instances: 25 MB; train2017: 448 MB)


def check_base_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - MAX_ITEMS:
        raise BenchmarkError(f"seed must be an integer in 0..{MAX_SEED - MAX_ITEMS}, got {seed!r}")
    return seed


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BenchmarkError(f"limit must be a positive integer (or none), got {limit!r}")
    return limit


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


def unique_ids(items: list[BenchmarkItem]) -> list[BenchmarkItem]:
    seen: dict[str, int] = {}
    for number, it in enumerate(items, start=1):
        if it.id in seen:
            raise BenchmarkError(f"item {number}: id {it.id!r} is already used by item {seen[it.id]}; ids must be "
                                 f"unique")
        seen[it.id] = number
    return items
