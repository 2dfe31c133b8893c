"""End to end over HTTP: a real ComfyUI server (main.py) with the pack installed, as a user runs it."""
from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from comfy_env import REPO_ROOT, GraphError, launch_server
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
    assert info["category"].startswith("IFAdapter")
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
    bad["instances"][0]["description"] = ""
    prompt = {"1": {"class_type": "IFAInstanceLayout", "inputs": {"width": 320, "height": 256,
                                                                  "layout": json.dumps(bad)}},
              "2": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["1", 0], "opacity": 1.0,
                                                                 "legend": False}}}
    pid = server.post_prompt(prompt)
    with pytest.raises(GraphError, match="description"):
        server.wait_history(pid)
