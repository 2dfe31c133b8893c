"""A folder of this pack's layouts as a benchmark.

Every ``*.json`` file under the folder (sub-folders included, symbolic links not followed), sorted by its path
relative to the folder, is one item. A file holds a layout in the pack's format or any format ``Layout.from_json``
auto-detects (the InstanceDiffusion demo JSON, the IFAdapter sample layouts). The id is the relative path without
``.json`` (``/``-separated); item ``i`` (from 0, in that order) gets seed ``base + i``. Files are read up to the
layout format's ``MAX_JSON_CHARS``; at most ``MAX_ITEMS`` files.
"""

from __future__ import annotations

import os

from core.layout import MAX_JSON_CHARS, Layout, LayoutError

from ..benchmark_file import MAX_ITEMS, BenchmarkError, BenchmarkItem, check_id
from .sources import check_base_seed, check_limit, read_text, unique_ids


def layout_files(folder: str) -> list[str]:
    """Relative paths of the ``*.json`` files under ``folder``, sorted; refused past MAX_ITEMS while walking."""
    if not os.path.isdir(folder):
        raise BenchmarkError(f"layout folder {folder!r} is not a folder")
    found = []
    for root, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs.sort()
        for f in files:
            if f.lower().endswith(".json") and not os.path.islink(os.path.join(root, f)):
                found.append(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/"))
                if len(found) > MAX_ITEMS:
                    raise BenchmarkError(f"layout folder {folder!r} has more than {MAX_ITEMS} .json files")
    if not found:
        raise BenchmarkError(f"layout folder {folder!r} holds no .json file")
    return sorted(found)


def folder_items(folder: str, limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    """The benchmark items of the layouts under ``folder``."""
    check_base_seed(seed)
    check_limit(limit)
    files = layout_files(folder)
    items = []
    for pos, rel in enumerate(files[:limit] if limit else files):
        number = pos + 1
        item_id = check_id(rel[: -len(".json")], number)
        text = read_text(os.path.join(folder, rel), f"item {number}: layout file", MAX_JSON_CHARS)
        try:
            layout = Layout.from_json(text)
        except LayoutError as e:
            raise BenchmarkError(f"item {number} ({rel}): {e}") from None
        items.append(BenchmarkItem(item_id, seed + pos, layout, {"source": {"dataset": "folder", "file": rel}}))
    return unique_ids(items)
