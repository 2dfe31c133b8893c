"""A run folder: its images, its manifest of done items and its error log.

Layout of ``--out DIR`` (docs/evaluation.md, "Run folders"):

- ``run.json``: the run's settings (benchmark, workflow hash, overrides), written once;
- ``workflow.json``: the item-independent API prompt that generated every image (overrides applied);
- ``benchmark.jsonl``: the benchmark's valid items as run (so ``score`` needs nothing else);
- ``images/<id stem>.png``: one image per item, written to a temporary file and renamed into place;
- ``manifest.jsonl``: one line per generated item (``id``, ``number``, ``seed``, ``workflow_hash``, ``server``,
  ``seconds``, ``finished`` UTC time, ``image``, ``width``, ``height``), appended with one ``write`` + ``fsync``
  after the image is in place; a torn last line (a crash mid-write) is ignored on reading, so the item is redone;
- ``errors.jsonl``: one line per failed attempt (``number``, ``id``, ``server``, ``message``); errors are retried on
  the next run.

An item is done when its manifest line is there with this run's workflow hash and its image exists.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from ..benchmark_file import write_atomic

MANIFEST = "manifest.jsonl"
ERRORS = "errors.jsonl"
IMAGES = "images"


def append_line(path: str, record: dict) -> None:
    """One JSON line appended with a single write on an O_APPEND descriptor, then fsync."""
    data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: str) -> list[dict]:
    """The JSON objects of a JSONL file; a line that does not parse (a torn write) is skipped."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict):
                out.append(d)
    return out


@dataclass
class RunFolder:
    """The files of one run under ``root``."""

    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def manifest_path(self) -> str:
        return self.path(MANIFEST)

    def image_path(self, stem: str) -> str:
        return self.path(IMAGES, stem + ".png")

    def entries(self) -> list[dict]:
        """Manifest lines whose image exists, the last one per id."""
        by_id = {}
        for e in read_lines(self.manifest_path):
            if isinstance(e.get("id"), str) and isinstance(e.get("image"), str) and os.path.isfile(
                    self.path(e["image"])):
                by_id[e["id"]] = e
        return list(by_id.values())

    def done(self, workflow_hash: str) -> dict[str, dict]:
        """Done items (id -> manifest line). A manifest made with another workflow is refused: mixing two graphs'
        images in one run would make its scores meaningless."""
        entries = self.entries()
        other = sorted({e.get("workflow_hash") for e in entries} - {workflow_hash})
        if other:
            raise ValueError(f"run folder {self.root} holds images made with workflow {other[0]}, not {workflow_hash} "
                             "(the workflow or an ablation option changed); use a new --out folder")
        return {e["id"]: e for e in entries}

    def start(self, settings: dict, prompt: dict, items_dicts: list[dict]) -> None:
        os.makedirs(self.path(IMAGES), exist_ok=True)
        write_atomic(self.path("run.json"), json.dumps(settings, indent=1).encode("utf-8"))
        write_atomic(self.path("workflow.json"), json.dumps(prompt, indent=1).encode("utf-8"))
        write_atomic(self.path("benchmark.jsonl"),
                     "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in items_dicts).encode("utf-8"))

    def record(self, entry: dict, png: bytes, stem: str) -> None:
        """Put the image in place (atomically), then append its manifest line."""
        write_atomic(self.image_path(stem), png)
        append_line(self.manifest_path, {**entry, "image": f"{IMAGES}/{stem}.png",
                                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def error(self, record: dict) -> None:
        append_line(self.path(ERRORS), {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
