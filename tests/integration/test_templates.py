"""The shipped workflows as ComfyUI's template browser finds them: a title, a thumbnail, served by the server.

How templates are found (docs/workflows.md): ComfyUI v0.3.31+ globs ``custom_nodes/<pack>/<folder>/*.json`` for
``folder`` in example_workflows, example, examples, workflow, workflows, lists the file stems at
``/workflow_templates`` and serves the folder statically at ``/api/workflow_templates/<pack>/``; the frontend
(1.x) shows the stem as the title and ``<stem>.jpg`` as the thumbnail. The 2024 build has no template endpoint:
there the HTTP test is skipped and the files are checked directly (the first two tests run on every version).
"""
from __future__ import annotations

import io
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from comfy_env import PACK_NAME, REPO_ROOT, comfyui_version, find_comfyui, launch_server
from PIL import Image

from core.render import hex_to_rgb

pytestmark = pytest.mark.integration

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import make_workflows  # noqa: E402
import workflow_thumbnails  # noqa: E402

WORKFLOWS = REPO_ROOT / "workflows"
STEMS = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
# A title a user reads, and a file name that is safe in a URL (the frontend does not encode it) and on Windows.
TITLE = re.compile(r"^[A-Z][A-Za-z0-9 .,()+-]{5,58}[A-Za-z0-9)]$")
TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")  # ComfyUI's own list


def test_every_workflow_is_a_titled_template_with_a_thumbnail():
    assert len(STEMS) >= 7, STEMS
    generated = {name.removesuffix(".json") for name in make_workflows.all_workflows()}
    assert set(STEMS) == generated, "workflows/ must hold exactly what scripts/make_workflows.py generates"
    for stem in STEMS:
        assert TITLE.match(stem) and "_" not in stem, f"{stem!r} is shown as the template title: name the file " \
            "as a title (capitalised words, no underscores, only letters, digits, spaces and . , ( ) + -)"
        thumb = WORKFLOWS / f"{stem}.jpg"
        assert thumb.is_file(), f"{thumb.name} is missing: run scripts/make_workflows.py"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.size == (workflow_thumbnails.SIZE, workflow_thumbnails.SIZE)
        assert thumb.stat().st_size < 80_000  # small: the browser loads every card's thumbnail at once
    others = [f for f in TEMPLATE_FOLDERS if f != "workflows" and (REPO_ROOT / f).exists()]
    # ComfyUI lists every such folder but serves only the first one it finds: a second folder would list
    # templates that fail to load.
    assert not others, f"the pack must keep its templates in workflows/ only, found {others}"
    assert not [p.name for p in WORKFLOWS.glob("*.jpg") if p.stem not in STEMS], "a thumbnail without a workflow"


@pytest.mark.parametrize("stem", STEMS)
def test_thumbnail_is_drawn_from_the_workflows_own_layout(stem):
    """The stored thumbnail is what scripts/workflow_thumbnails.py draws from the workflow's current layout."""
    workflow = json.loads((WORKFLOWS / f"{stem}.json").read_text())
    layout = workflow_thumbnails.workflow_layout(workflow)
    assert layout.active(), "a thumbnail of an empty layout shows nothing"
    expected = np.asarray(workflow_thumbnails.thumbnail(workflow), dtype=np.float32)
    with Image.open(WORKFLOWS / f"{stem}.jpg") as im:
        stored = np.asarray(im.convert("RGB"), dtype=np.float32)
    diff = np.abs(stored - expected).mean()
    assert diff < 3.0, f"{stem}.jpg differs from its layout (mean |diff| {diff:.1f}): run scripts/make_workflows.py"
    # the instances' colours are what the card shows: each one fills part of the picture
    for inst in layout.active():
        col = np.array(hex_to_rgb(inst.color), dtype=np.float32)
        assert (np.abs(stored - col).max(axis=-1) < 40).sum() > 30, f"instance {inst.label!r} is not visible"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = launch_server(tmp_path_factory.mktemp("templates"))
    yield srv
    srv.stop()


def _get(server, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), b""


def test_server_lists_and_serves_each_template_and_thumbnail(server):
    status, _, body = _get(server, "/workflow_templates")
    if status == 404:
        pytest.skip(f"this ComfyUI ({comfyui_version(find_comfyui())}) has no /workflow_templates endpoint (added in "
                    "2025); the template files are checked by the tests above")
    assert status == 200
    listed = json.loads(body)
    assert sorted(listed.get(PACK_NAME, [])) == STEMS, listed.get(PACK_NAME)
    for stem in STEMS:
        # the URLs the frontend builds: api.apiURL(`/workflow_templates/${module}/${name}`) + ".json" / ".jpg"
        base = f"/api/workflow_templates/{PACK_NAME}/{urllib.parse.quote(stem, safe='+,()')}"  # as a browser encodes
        status, ctype, data = _get(server, base + ".json")
        assert status == 200 and "json" in ctype, (stem, status, ctype)
        assert json.loads(data) == json.loads((WORKFLOWS / f"{stem}.json").read_text())
        status, ctype, data = _get(server, base + ".jpg")
        assert status == 200 and ctype == "image/jpeg", (stem, status, ctype)
        assert data == (WORKFLOWS / f"{stem}.jpg").read_bytes()
        Image.open(io.BytesIO(data)).verify()
