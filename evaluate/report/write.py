"""``python -m evaluate report --run DIR``: after ``score``, write ``<run>/report/``:

- ``report.md`` and ``report.json``: the metrics table (and in JSON the whole summary and the run's settings);
- ``instances.jsonl``: one record per instance (the score's, with the item's number and id);
- ``report.html``: every image with its layout and detections drawn over it, sortable by failure, self-contained.
"""
from __future__ import annotations

import json
import os

from ..benchmark_file import write_atomic
from ..runner.manifest import read_lines
from .html_page import render
from .tables import markdown, metric_rows


def write_report(run: str) -> list[str]:
    """Write the report files of a scored run; returns their paths."""
    scores = os.path.join(run, "scores")
    summary_path = os.path.join(scores, "summary.json")
    if not os.path.isfile(summary_path):
        raise ValueError(f"{run}: no scores/summary.json; run python -m evaluate score --run {run} first")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    run_info = {}
    if os.path.isfile(os.path.join(run, "run.json")):
        with open(os.path.join(run, "run.json"), encoding="utf-8") as f:
            run_info = json.load(f)
    run_info["run"] = os.path.basename(os.path.abspath(run))
    images = read_lines(os.path.join(scores, "images.jsonl"))
    rows = metric_rows(summary)
    out = os.path.join(run, "report")
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in ("report.md", "report.json", "instances.jsonl", "report.html")}
    write_atomic(paths["report.md"], markdown(summary, run_info).encode("utf-8"))
    write_atomic(paths["report.json"], json.dumps({"run": run_info, "metrics": rows, "summary": summary},
                                                  indent=1, allow_nan=False).encode("utf-8"))
    write_atomic(paths["instances.jsonl"], "".join(
        json.dumps(r, allow_nan=False) + "\n" for im in images for r in im["instances"]).encode("utf-8"))
    png = {}
    for im in images:
        with open(os.path.join(run, im["image"]), "rb") as f:
            png[im["image"]] = f.read()
    from PIL import Image

    for im in images:
        with Image.open(os.path.join(run, im["image"])) as pic:
            im["width"], im["height"] = pic.size
    write_atomic(paths["report.html"], render(f"Evaluation of {run_info['run']}", rows, images, png).encode("utf-8"))
    return list(paths.values())
