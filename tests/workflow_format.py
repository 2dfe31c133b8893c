"""UI-format workflows (what the ComfyUI frontend saves and loads) <-> API-format prompts (what /prompt runs).

``build_ui_workflow`` writes a loadable UI-format workflow from a compact node list using the real node
definitions (``INPUT_TYPES``), so widget order and socket types are exactly ComfyUI's. ``ui_to_api`` converts a
UI-format workflow back to an API prompt the same way the frontend's "Queue" does (the benchmark runner's
conversion), so tests can execute the shipped ``workflows/*.json`` files in a real ComfyUI.
"""
from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # the scripts put only tests/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluate.runner import workflow_format as runner_format  # noqa: E402
from evaluate.runner.workflow_format import has_control, is_widget  # noqa: E402


def _input_specs(node_class) -> list[tuple[str, object, dict]]:
    return runner_format.input_specs_from_classes({"_": node_class})["_"]


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to an API-format prompt (``{id: {"class_type", "inputs"}}``): the runner's
    conversion (``evaluate/runner/workflow_format.py``) with the node classes' ``INPUT_TYPES``."""
    used = {n.get("type") for n in workflow["nodes"]} & set(node_classes)
    return runner_format.ui_to_api(workflow, runner_format.input_specs_from_classes(
        {t: node_classes[t] for t in used}))


def build_ui_workflow(nodes: list[dict], node_classes: dict, extra: dict | None = None) -> dict:
    """Build a UI-format workflow.

    ``nodes``: ``[{"id": int, "type": str, "pos": [x, y], "widgets": {name: value}, "inputs": {name: [src_id,
    slot]}, "title": optional str, "size": optional [w, h]}]``; ``Note`` nodes take ``{"text": ...}``.
    """
    links: list[list] = []
    by_id = {n["id"]: n for n in nodes}
    out_links: dict[tuple[int, int], list[int]] = {}
    ui_nodes = []
    for order, n in enumerate(nodes):
        if n["type"] == "Note":
            ui_nodes.append({"id": n["id"], "type": "Note", "pos": n["pos"], "size": n.get("size", [400, 160]),
                             "flags": {}, "order": order, "mode": 0, "properties": {"text": ""},
                             "widgets_values": [n["text"]], "color": "#432", "bgcolor": "#653"})
            continue
        cls = node_classes[n["type"]]
        ui_inputs, widgets_values = [], []
        for name, typ, opts in _input_specs(cls):
            wired = n.get("inputs", {}).get(name)
            if is_widget(typ) and not opts.get("forceInput"):
                default = opts.get("default", typ[0] if isinstance(typ, list) and typ else None)
                widgets_values.append(n.get("widgets", {}).get(name, default))
                if has_control(name, typ, opts):
                    widgets_values.append("fixed")
                if wired is None:
                    continue
            if wired is None:
                ui_inputs.append({"name": name, "type": typ if isinstance(typ, str) else "COMBO", "link": None})
                continue
            src, slot = wired
            link_id = len(links) + 1
            src_type = node_classes[by_id[src]["type"]].RETURN_TYPES[slot]
            links.append([link_id, src, slot, n["id"], len(ui_inputs), src_type])
            out_links.setdefault((src, slot), []).append(link_id)
            entry = {"name": name, "type": src_type, "link": link_id}
            if is_widget(typ):
                entry["widget"] = {"name": name}
            ui_inputs.append(entry)
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        ui_outputs = [{"name": names[i], "type": t, "links": [], "slot_index": i}
                      for i, t in enumerate(cls.RETURN_TYPES)]
        node = {"id": n["id"], "type": n["type"], "pos": n["pos"], "size": n.get("size", [320, 200]), "flags": {},
                "order": order, "mode": 0, "inputs": ui_inputs, "outputs": ui_outputs,
                "properties": {"Node name for S&R": n["type"]}, "widgets_values": widgets_values}
        if n.get("title"):
            node["title"] = n["title"]
        ui_nodes.append(node)
    for node in ui_nodes:
        for out in node.get("outputs", []):
            out["links"] = out_links.get((node["id"], out["slot_index"]), [])
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": extra or {"ds": {"scale": 1, "offset": [0, 0]}},
            "version": 0.4}
