"""Regenerate the UI-format workflows in ``workflows/`` and their template-browser thumbnails.

Run: ``.venv/bin/python scripts/make_workflows.py`` (boots ComfyUI in-process to read INPUT_TYPES, writes JSON).
Each capability keeps its workflow builders in ``scripts/workflows_<capability>.py`` (a ``WORKFLOWS`` dict of
file name -> builder(node_classes) -> UI-format dict, and optionally ``DEMO_JOBS`` for ``scripts/demo.py``).

``workflows/`` is also the pack's template folder: ComfyUI (v0.3.31 and later) lists each ``<name>.json`` in its
template browser with ``<name>`` as the title and ``<name>.jpg`` as the thumbnail. So a file name is the title a
user reads ("IFAdapter layout to image.json"), and every workflow gets a thumbnail drawn from its own
layout by ``scripts/workflow_thumbnails.py``, written here next to the JSON (docs/workflows.md).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import comfy_env  # noqa: E402
from workflow_format import build_ui_workflow  # noqa: E402
from workflow_thumbnails import write_thumbnail  # noqa: E402

EXAMPLE_LAYOUT = {
    "format": "instance-layout", "version": 1, "width": 1024, "height": 768,
    "prompt": "a cozy reading corner in a wooden cabin, warm evening light, photograph",
    "instances": [
        {"description": "a tall green velvet armchair with brass studs and a knitted cream blanket over one arm",
         "label": "armchair", "color": "#3cb44b", "regions": [{"kind": "box", "box": [70, 250, 470, 730]}]},
        {"description": "a round side table of dark walnut with a steaming mug of tea on it",
         "label": "table", "color": "#f58231",
         "regions": [{"kind": "polygon", "points": [[520, 470], [700, 450], [760, 560], [700, 700], [540, 700],
                                                    [490, 580]]}]},
        {"description": "a brass floor lamp with a pleated linen shade, glowing softly",
         "label": "lamp", "color": "#ffe119",
         "regions": [{"kind": "box", "box": [780, 60, 960, 700]},
                     {"kind": "scribble", "points": [[870, 120], [872, 300], [868, 500], [870, 690]],
                      "width": 24}]},
        {"description": "a small ginger cat curled up asleep", "label": "cat", "color": "#e6194b",
         "regions": [{"kind": "point", "point": [270, 520], "width": 40}]},
        {"description": "a window with frosted panes and snow falling outside", "label": "window",
         "color": "#4363d8", "z": -1, "regions": [{"kind": "box", "box": [500, 40, 760, 380]}]},
    ],
}


def layout_preview_workflow(classes: dict) -> dict:
    nodes = [
        {"id": 1, "type": "IFAInstanceLayout", "pos": [40, 60], "size": [520, 900],
         "widgets": {"width": 1024, "height": 768, "layout": json.dumps(EXAMPLE_LAYOUT)}},
        {"id": 2, "type": "IFALayoutPreview", "pos": [600, 60], "inputs": {"layout": [1, 0]},
         "widgets": {"opacity": 0.45, "legend": True}},
        {"id": 3, "type": "SaveImage", "pos": [940, 60], "size": [420, 460], "inputs": {"images": [2, 0]},
         "widgets": {"filename_prefix": "ifa_layout_preview"}},
        {"id": 4, "type": "Note", "pos": [40, 1000], "size": [520, 120],
         "text": "Instance layout example: five instances drawn as a box, a polygon, a box + scribble, a point and "
                 "a background box. Edit them in the Instance Layout node's editor; Layout Preview shows the "
                 "regions, numbers and descriptions."},
    ]
    return build_ui_workflow(nodes, classes)


WORKFLOWS = {"Instance layout preview.json": layout_preview_workflow}


def all_workflows() -> dict:
    """This file's workflows plus every ``scripts/workflows_*.py`` module's ``WORKFLOWS`` (one per capability)."""
    found = dict(WORKFLOWS)
    for path in sorted(Path(__file__).parent.glob("workflows_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        found.update(mod.WORKFLOWS)
    return found


def main() -> None:
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp(prefix="ifa_wf_")))
    classes = env.nodes.NODE_CLASS_MAPPINGS
    for name, fn in all_workflows().items():
        path = ROOT / "workflows" / name
        workflow = fn(classes)
        path.write_text(json.dumps(workflow, indent=2) + "\n")
        write_thumbnail(workflow, path.with_suffix(".jpg"))
        print("wrote", path, "and its thumbnail")


if __name__ == "__main__":
    main()
