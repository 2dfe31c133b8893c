"""UI-format workflows (what the ComfyUI frontend saves and loads) <-> API-format prompts (what /prompt runs).

``build_ui_workflow`` writes a loadable UI-format workflow from a compact node list using the real node
definitions (``INPUT_TYPES``), so widget order and socket types are exactly ComfyUI's. ``ui_to_api`` converts a
UI-format workflow back to an API prompt the same way the frontend's "Queue" does, so tests can execute the
shipped ``workflows/*.json`` files in a real ComfyUI.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SKIP_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def _input_specs(node_class) -> list[tuple[str, object, dict]]:
    spec = node_class.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, val in spec.get(section, {}).items():
            typ = val[0]
            opts = val[1] if len(val) > 1 and isinstance(val[1], dict) else {}
            out.append((name, typ, opts))
    return out


def _is_widget(typ) -> bool:
    return isinstance(typ, list) or typ in WIDGET_TYPES


def _has_control(name: str, typ, opts: dict) -> bool:
    return typ == "INT" and (name in ("seed", "noise_seed") or bool(opts.get("control_after_generate")))


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to an API-format prompt (``{id: {"class_type", "inputs"}}``)."""
    links = {lk[0]: lk for lk in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        ntype = node["type"]
        if ntype in SKIP_TYPES or node.get("mode", 0) in (2, 4):  # muted / bypassed nodes are not queued
            continue
        if ntype not in node_classes:
            raise KeyError(f"workflow node {node['id']} has type {ntype!r}, which this ComfyUI does not know")
        inputs = {}
        linked = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                lk = links[inp["link"]]
                linked[inp["name"]] = [str(lk[1]), lk[2]]
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):  # some frontends store a name -> value map
            values_by_name = node["widgets_values"]
        else:
            values_by_name = None
        vi = 0
        for name, typ, opts in _input_specs(node_classes[ntype]):
            if _is_widget(typ) and not opts.get("forceInput"):
                if values_by_name is not None:
                    if name in values_by_name:
                        inputs[name] = values_by_name[name]
                elif vi < len(values):
                    inputs[name] = values[vi]
                    vi += 1
                    if _has_control(name, typ, opts) and vi < len(values) and values[vi] in CONTROL_VALUES:
                        vi += 1
            if name in linked:
                inputs[name] = linked[name]
        prompt[str(node["id"])] = {"class_type": ntype, "inputs": inputs}
    return prompt


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
            if _is_widget(typ) and not opts.get("forceInput"):
                default = opts.get("default", typ[0] if isinstance(typ, list) and typ else None)
                widgets_values.append(n.get("widgets", {}).get(name, default))
                if _has_control(name, typ, opts):
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
            if _is_widget(typ):
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
