"""The harness itself: a real ComfyUI runs full graphs with the tiny SD1.5 / SDXL-layout models."""
from __future__ import annotations

import numpy as np
import pytest
from graphs import base_graph
from PIL import Image

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_full_graph_runs_and_saves_png(comfy, arch):
    out = comfy.run(base_graph(arch))
    images = out["save"]["images"]
    assert len(images) == 1
    img = np.asarray(Image.open(comfy.output_path(images[0])))
    assert img.shape == (192, 256, 3)
    assert img.std() > 0  # a real decode of a real sample, not a blank frame


def test_pack_nodes_registered(comfy):
    names = set(comfy.nodes.NODE_CLASS_MAPPINGS)
    for n in ("IFAInstanceLayout", "IFALayoutFromJSON", "IFAAddInstance", "IFALayoutFromMasks",
              "IFALayoutPreview", "IFALayoutToMasks"):
        assert n in names
    assert all(comfy.nodes.NODE_CLASS_MAPPINGS[n].CATEGORY.startswith("instance control/") for n in names
               if n.startswith("IFA") and not n.startswith("IFATest"))


def test_model_folders_registered(comfy):
    fp = comfy.folder_paths
    for name in ("ifadapter", "instancediffusion"):
        assert name in fp.folder_names_and_paths
        assert any(p.endswith(name) for p in fp.get_folder_paths(name))
