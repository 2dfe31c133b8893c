"""A scored run folder for the report page's browser test (tests/web/browser/eval_report.mjs); prints the page.

Four items of three instances each (a red, a green and a blue box); item k's image draws only some of them, in pure
colour, so a colour detector (each category's pixels -> their bounding box) finds exactly those: items 1-4 fail 0,
3, 1 and 2 instances. The run folder, scoring and report are the real ones (RunFolder, score_run, write_report).
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "evaluate"))

from eval_scenes import ColourDetector  # noqa: E402

from evaluate.benchmark_file import item_file_stem  # noqa: E402
from evaluate.report.write import write_report  # noqa: E402
from evaluate.runner.manifest import RunFolder  # noqa: E402
from evaluate.scoring.cli import score_run  # noqa: E402
from evaluate.scoring.compute import Models  # noqa: E402

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
BOXES = {"red": (8, 8, 56, 56), "green": (72, 8, 120, 56), "blue": (40, 72, 88, 120)}
DRAWN = [("red", "green", "blue"), (), ("red", "blue"), ("green",)]


def build(root: Path) -> Path:
    folder = RunFolder(str(root))
    layout = {"format": "instance-layout", "version": 1, "width": 128, "height": 128, "prompt": "three boxes <b>",
              "instances": [{"description": f"a {c} box", "label": c, "regions": [{"kind": "box", "box": list(b)}]}
                            for c, b in BOXES.items()]}
    items = [{"id": f"item-{k}", "seed": k, "layout": layout, "number": k} for k in range(1, 5)]
    folder.start({"workflow_hash": "fixture", "overrides": []}, {}, items)
    for it, drawn in zip(items, DRAWN):
        im = np.full((128, 128, 3), 128, np.uint8)
        for c in drawn:
            x0, y0, x1, y1 = BOXES[c]
            im[y0:y1, x0:x1] = COLOURS[c]
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        folder.record({"id": it["id"], "number": it["number"], "seed": it["seed"], "workflow_hash": "fixture",
                       "server": "fixture", "seconds": 0.0, "width": 128, "height": 128}, buf.getvalue(),
                      item_file_stem(it["id"]))
    score_run(str(root), ["ap"], [("detection", "colour")], models=Models(detection=ColourDetector()))
    write_report(str(root))
    return root / "report" / "report.html"


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
