"""A workflow file -> an API-format prompt (``{id: {"class_type", "inputs"}}``), whichever format it was saved in.

The frontend saves the UI format (``{"nodes": [...], "links": [...]}``, what ``workflows/*.json`` hold); ``/prompt``
runs the API format. :func:`ui_to_api` converts the way the frontend's Queue does: widget values are matched to the
node's widget inputs in the order of its input definitions (``/object_info`` over HTTP, ``INPUT_TYPES()``
in-process), the ``control_after_generate`` value after a seed is skipped, links become ``[source id, slot]``,
muted / bypassed nodes and notes are left out.
"""
from __future__ import annotations

import hashlib
import json

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SKIP_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MAX_WORKFLOW_BYTES = 64 << 20
MAX_NODES = 10_000


class WorkflowError(ValueError):
    """A workflow that cannot be run as a benchmark workflow; the message says which node and why."""


def input_specs_from_object_info(object_info: dict) -> dict[str, list[tuple[str, object, dict]]]:
    """``/object_info`` (``{class: {"input": {"required": {...}, "optional": {...}}}}``) -> per class the ordered
    ``(name, type, options)`` of its inputs."""
    return {cls: _specs(info.get("input") or {}) for cls, info in object_info.items()}


def input_specs_from_classes(node_classes: dict) -> dict[str, list[tuple[str, object, dict]]]:
    """In-process: ``NODE_CLASS_MAPPINGS`` -> the same as :func:`input_specs_from_object_info`."""
    return {name: _specs(cls.INPUT_TYPES()) for name, cls in node_classes.items()}


def _specs(spec: dict) -> list[tuple[str, object, dict]]:
    out = []
    for section in ("required", "optional"):
        for name, val in (spec.get(section) or {}).items():
            typ = val[0] if isinstance(val, (list, tuple)) and val else val
            opts = val[1] if isinstance(val, (list, tuple)) and len(val) > 1 and isinstance(val[1], dict) else {}
            out.append((name, typ, opts))
    return out


def is_widget(typ) -> bool:
    """Whether an input of type ``typ`` is a widget (a value in ``widgets_values``), not a socket."""
    return isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES


def has_control(name: str, typ, opts: dict) -> bool:
    """Whether the frontend stores a ``control_after_generate`` value after this input's widget value."""
    return typ == "INT" and (name in ("seed", "noise_seed") or bool(opts.get("control_after_generate")))


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def ui_to_api(workflow: dict, specs: dict[str, list[tuple[str, object, dict]]]) -> dict:
    """Convert a UI-format workflow to an API-format prompt with the node definitions ``specs``."""
    if len(workflow["nodes"]) > MAX_NODES:
        raise WorkflowError(f"the workflow has {len(workflow['nodes'])} nodes; at most {MAX_NODES}")
    links = {lk[0]: lk for lk in workflow.get("links") or [] if isinstance(lk, list) and len(lk) >= 4}
    prompt = {}
    for node in workflow["nodes"]:
        ntype = node.get("type")
        if ntype in SKIP_TYPES or node.get("mode", 0) in (2, 4):
            continue
        if ntype not in specs:
            raise WorkflowError(f"workflow node {node.get('id')} has type {ntype!r}, which this ComfyUI does not "
                                "know (a missing custom node pack?)")
        linked = {}
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                if inp["link"] not in links:
                    raise WorkflowError(f"workflow node {node['id']} input {inp.get('name')!r}: link {inp['link']} "
                                        "is not in the workflow's links")
                lk = links[inp["link"]]
                linked[inp["name"]] = [str(lk[1]), lk[2]]
        raw = node.get("widgets_values")
        by_name = raw if isinstance(raw, dict) else None
        values = list(raw or []) if by_name is None else []
        inputs, vi = {}, 0
        for name, typ, opts in specs[ntype]:
            if is_widget(typ) and not opts.get("forceInput"):
                if by_name is not None:
                    if name in by_name:
                        inputs[name] = by_name[name]
                elif vi < len(values):
                    inputs[name] = values[vi]
                    vi += 1
                    if has_control(name, typ, opts) and vi < len(values) and values[vi] in CONTROL_VALUES:
                        vi += 1
            if name in linked:
                inputs[name] = linked[name]
        prompt[str(node["id"])] = {"class_type": ntype, "inputs": inputs}
    return prompt


def load_workflow(path: str) -> dict:
    """The JSON of a workflow file (either format); WorkflowError when it is neither."""
    if __import__("os").path.getsize(path) > MAX_WORKFLOW_BYTES:
        raise WorkflowError(f"workflow {path}: larger than {MAX_WORKFLOW_BYTES} bytes")
    with open(path, encoding="utf-8") as f:
        try:
            wf = json.load(f)
        except json.JSONDecodeError as e:
            raise WorkflowError(f"workflow {path}: not valid JSON ({e})") from None
    if is_ui_format(wf):
        return wf
    if isinstance(wf, dict) and "prompt" in wf and isinstance(wf["prompt"], dict):  # a saved /prompt body
        wf = wf["prompt"]
    if isinstance(wf, dict) and wf and all(isinstance(v, dict) and "class_type" in v for v in wf.values()):
        return wf
    raise WorkflowError(f"workflow {path}: neither a UI-format workflow (nodes + links) nor an API-format prompt "
                        "({id: {class_type, inputs}})")


def to_api(workflow: dict, specs: dict[str, list[tuple[str, object, dict]]]) -> dict:
    """Either format -> a fresh API-format prompt (a deep copy: the caller's dict is never changed)."""
    if is_ui_format(workflow):
        return ui_to_api(workflow, specs)
    return json.loads(json.dumps(workflow))


def workflow_hash(prompt: dict) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of an API prompt: equal graphs, equal hash."""
    text = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
