"""The Evaluate Layout example workflow (UI format).

- ``Evaluate layout.json``: the ``IFAdapter layout to image`` graph, with its generated image scored against the
  layout by Evaluate Layout (Grounding DINO tiny for box AP and the hit / miss marks, CLIP ViT-L/14 for the
  instance and image CLIP scores; no VLM). The models go in ``models/detection`` and ``models/clip`` (or are
  downloaded there once ``allow_download`` is switched on).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workflow_format import build_ui_workflow  # noqa: E402


def _ifadapter_nodes() -> list[dict]:
    spec = importlib.util.spec_from_file_location("_wi", Path(__file__).parent / "workflows_ifadapter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._nodes(lora=False)


def evaluate_workflow(classes: dict) -> dict:
    nodes = [n for n in _ifadapter_nodes() if n["type"] != "Note"]
    nodes += [
        {"id": 40, "type": "IFAEvaluateLayout", "pos": [2280, 60], "size": [560, 760],
         "inputs": {"image": [10, 0], "layout": [2, 0]},
         "widgets": {"detector": "IDEA-Research/grounding-dino-tiny", "clip": "openai/clip-vit-large-patch14",
                     "vlm": "none", "detection_threshold": 0.25, "allow_download": False}},
        {"id": 41, "type": "Note", "pos": [40, 1240], "size": [520, 180],
         "text": "Evaluate Layout checks the generated image against the layout: Grounding DINO looks for each "
                 "instance's label and marks it hit (found with IoU >= 0.5 in its box) or miss; CLIP scores each "
                 "instance's crop against its description and the image against the prompt. Put the model "
                 "folders in models/detection and models/clip (IDEA-Research--grounding-dino-tiny, "
                 "openai--clip-vit-large-patch14) or switch allow_download on once. A VLM in models/vlm adds the "
                 "IFS check. docs/evaluation.md explains every score."},
    ]
    return build_ui_workflow(nodes, classes)


WORKFLOWS = {"Evaluate layout.json": evaluate_workflow}
