"""End to end over HTTP: a real ComfyUI server (main.py) with the pack installed, as a user runs it."""
from __future__ import annotations

import inspect
import io
import json
import re
import time
import urllib.request
from pathlib import Path

import comfy_env
import numpy as np
import pytest
from comfy_env import REPO_ROOT, GraphError, launch_server
from file_watch import InotifyWatch, inotify_available
from PIL import Image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAYOUT = {"format": "instance-layout", "version": 1, "width": 320, "height": 256, "prompt": "",
          "instances": [{"description": "a yellow kite", "color": "#ffff00",
                         "regions": [{"kind": "box", "box": [20, 20, 120, 100]}]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = launch_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


def test_object_info_lists_the_pack_nodes(server):
    info = server.get_json("/object_info/IFAInstanceLayout")["IFAInstanceLayout"]
    assert info["category"] == "instance control/layout"
    assert "layout" in info["input"]["required"]
    assert info["output"][0] == "INSTANCE_LAYOUT"


def test_extensions_serve_the_editor_js(server):
    exts = server.get_json("/extensions")
    ours = [e for e in exts if e.startswith(f"/extensions/{server.pack_name}/")]
    assert ours, f"the pack's web directory is not served: {exts}"
    with urllib.request.urlopen(server.url + ours[0]) as r:
        assert r.status == 200 and "javascript" in r.headers.get("Content-Type", "")


def test_scripts_are_served_once_under_any_folder_name(tmp_path):
    """Installed as GitHub's ZIP unpacks it (comfyui-ifadapter-main), every script is listed exactly once, under
    that folder name: newer ComfyUI also serves a pyproject ``[tool.comfy] web`` folder under the project name,
    which loaded every script twice and registered the editor extension twice."""
    srv = launch_server(tmp_path, pack_name="comfyui-ifadapter-main")
    try:
        exts = srv.get_json("/extensions")
    finally:
        srv.stop()
    files = sorted(p.name for p in (Path(REPO_ROOT) / "web" / "js").glob("*.js"))
    ours = [e for e in exts if e.rsplit("/", 1)[-1] in files and not e.startswith("/extensions/core/")]
    assert sorted(ours) == sorted(f"/extensions/comfyui-ifadapter-main/js/{f}" for f in files), ours


def test_prompt_runs_and_image_is_served(server):
    prompt = {
        "1": {"class_type": "IFAInstanceLayout", "inputs": {"width": 320, "height": 256,
                                                            "layout": json.dumps(LAYOUT)}},
        "2": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["1", 0], "opacity": 1.0, "legend": False}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "http"}},
    }
    pid = server.post_prompt(prompt)
    entry = server.wait_history(pid)
    img_ref = entry["outputs"]["3"]["images"][0]
    q = f"/view?filename={img_ref['filename']}&subfolder={img_ref['subfolder']}&type=output"
    with urllib.request.urlopen(server.url + q) as r:
        img = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))
    assert img.shape == (256, 320, 3)
    assert tuple(img[90, 100]) == (255, 255, 0)
    # the preview node also shows its picture on the node (a temp image in the UI output)
    assert entry["outputs"]["2"]["images"][0]["type"] == "temp"


def test_invalid_layout_is_reported_by_the_server(server):
    bad = json.loads(json.dumps(LAYOUT))
    bad["instances"][0]["regions"] = [{"kind": "box", "box": [0, 0, 400, 10]}]  # (an empty description is valid)
    prompt = {"1": {"class_type": "IFAInstanceLayout", "inputs": {"width": 320, "height": 256,
                                                                  "layout": json.dumps(bad)}},
              "2": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["1", 0], "opacity": 1.0,
                                                                 "legend": False}}}
    pid = server.post_prompt(prompt)
    with pytest.raises(GraphError, match=r"instance 1 .*x1=400 is outside the canvas 0\.\.320"):
        server.wait_history(pid)


@pytest.mark.skipif(not inotify_available(), reason="needs Linux inotify to watch the server's opens")
def test_layout_file_outside_the_input_folder_is_refused_unopened_over_http(server):
    secret = server.work_dir / "secret.json"
    secret.write_text(json.dumps({"api_key": "sk-do-not-leak"}))
    link = server.input_dir / "leak.json"
    if not link.is_symlink():
        link.symlink_to(secret)
    watch = InotifyWatch([str(secret)])
    try:
        for value in (str(secret), "../secret.json", "leak.json", "/etc/passwd", "/dev/zero"):
            prompt = {"1": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": "", "file": value}},
                      "2": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["1", 0], "opacity": 1.0,
                                                                         "legend": False}}}
            with pytest.raises(GraphError) as err:
                server.post_prompt(prompt)
            body = str(err.value)
            assert "cannot be read" in body and "sk-do-not-leak" not in body and "api_key" not in body, body
        time.sleep(0.3)
        assert watch.events() == [], "the server opened the file outside its input folder"
    finally:
        watch.close()


# ------------------------------------------------------------------------------------------- node documentation
CATEGORY_ROOT = "instance control/"
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


def _pack_node_names(comfy) -> list[str]:
    """Every node class this pack registered in the real ComfyUI registry, found by where the class is defined
    (the pack's ``nodes/`` package), so a node added later is covered without being listed here."""
    nodes_dir = (comfy_env.REPO_ROOT / "nodes").resolve()
    names = []
    for name, cls in comfy.nodes.NODE_CLASS_MAPPINGS.items():
        try:
            src = Path(inspect.getfile(cls)).resolve()
        except TypeError:
            continue
        if src.is_relative_to(nodes_dir):
            names.append(name)
    return sorted(names)


def _bounds_named(tooltip: str, opts: dict) -> list[str]:
    """The numeric bounds of an INT/FLOAT input that its tooltip does not state."""
    said = {float(m) for m in _NUMBER.findall(tooltip)}
    missing = []
    for key in ("min", "max"):
        if key not in opts:
            continue
        v = opts[key]
        if v == 0xFFFFFFFFFFFFFFFF and "2^64-1" in tooltip:
            continue
        if float(v) not in said:
            missing.append(f"{key}={v}")
    return missing


def test_every_pack_node_documents_itself_in_object_info(comfy, server):
    """As the node library and hover tooltips show them: every node of the pack has a description, a category
    under the pack's root, a tooltip on every input (stating the bounds of numbers) and on every output."""
    names = _pack_node_names(comfy)
    assert len(names) >= 15, names
    info = server.get_json("/object_info")
    problems = []
    n_inputs = 0
    for name in names:
        assert name in info, f"{name} is registered in-process but missing from the server's /object_info"
        node = info[name]
        if len((node.get("description") or "").strip()) < 60:
            problems.append(f"{name}: no DESCRIPTION (what it does, what to connect, what it returns)")
        if not node.get("category", "").startswith(CATEGORY_ROOT):
            problems.append(f"{name}: category {node.get('category')!r} is not under {CATEGORY_ROOT!r}")
        for section in ("required", "optional"):
            for inp, spec in (node["input"].get(section) or {}).items():
                n_inputs += 1
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                tip = (opts.get("tooltip") or "").strip()
                if not tip:
                    problems.append(f"{name}.{inp}: no tooltip")
                elif spec[0] in ("INT", "FLOAT") and _bounds_named(tip, opts):
                    problems.append(f"{name}.{inp}: tooltip does not state {_bounds_named(tip, opts)}")
        cls = comfy.node_class(name)
        tips = getattr(cls, "OUTPUT_TOOLTIPS", ())
        if len(tips) != len(cls.RETURN_TYPES) or not all(str(t).strip() for t in tips):
            problems.append(f"{name}: OUTPUT_TOOLTIPS {tips!r} does not describe its {len(cls.RETURN_TYPES)} outputs")
        if "output_tooltips" in node:  # servers that publish them (v0.3+) must publish ours unchanged
            if list(node["output_tooltips"]) != list(tips):
                problems.append(f"{name}: the server publishes output_tooltips {node['output_tooltips']!r}")
    assert not problems, "\n".join(problems)
    assert n_inputs >= 60
