"""The Save Training Sample node writes the trainer's dataset format inside ComfyUI's output folder, never
overwriting, and refuses folders outside it."""
from __future__ import annotations

import json
import os
import sys

import pytest
import swap_race
import torch
from comfy_env import GraphError

from train.engine.data import list_samples, prepare_sample

pytestmark = pytest.mark.integration

LAYOUT = {"format": "instance-layout", "version": 1, "width": 128, "height": 64, "prompt": "two shapes",
          "instances": [{"description": "a red circle", "regions": [{"kind": "box", "box": [8, 8, 56, 56]}]},
                        {"description": "a blue square", "regions": [{"kind": "box", "box": [64, 16, 120, 60]}]}]}


def graph(folder: str, width: int = 64, height: int = 32, batch: int = 1) -> dict:
    return {
        "img": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch,
                                                      "color": 0x3366CC}},
        "lay": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(LAYOUT), "file": "",
                                                             "width": 0, "height": 0}},
        "save": {"class_type": "IFASaveTrainingSample", "inputs": {"images": ["img", 0], "layout": ["lay", 0],
                                                                  "folder": folder, "prefix": "shot"}},
    }


def test_saves_samples_the_trainer_reads_and_never_overwrites(comfy):
    comfy.run(graph("datasets/set1", batch=2))
    comfy.run(graph("datasets/set1"))
    folder = comfy.output_dir / "datasets" / "set1"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"shot_{i:05d}.{ext}" for i in (1, 2, 3) for ext in ("json", "png")]
    saved = json.loads((folder / "shot_00001.json").read_text())
    assert (saved["width"], saved["height"]) == (64, 32)  # the layout scaled to the image
    assert saved["instances"][1]["regions"][0]["box"] == [32, 8, 60, 30]
    files, missing = list_samples(str(folder))
    assert [f.name for f in files] == ["shot_00001", "shot_00002", "shot_00003"] and not missing
    s = prepare_sample(files[0], [(64, 32)], 0.01, random_crop=False, seed=0)
    assert s.descriptions == ["a red circle", "a blue square"] and s.prompt == "two shapes"


@pytest.mark.parametrize("folder", ["../escape", "/tmp/abs", "a/../../b", ""])
def test_refuses_folders_outside_the_output_folder(comfy, folder):
    with pytest.raises(GraphError, match="output folder"):
        comfy.run(graph(folder))


def test_never_writes_through_a_symlink_in_the_dataset_folder(comfy, tmp_path):
    """A dangling symlink named like the next image (pointing outside the output folder) is an entry like any other:
    that number is skipped and nothing is created at the link's target (main wrote the PNG through it)."""
    folder = comfy.output_dir / "datasets" / "linked"
    folder.mkdir(parents=True, exist_ok=True)
    victims = [tmp_path / "victim.png", tmp_path / "victim.json"]
    (folder / "shot_00001.png").symlink_to(victims[0])
    (folder / "shot_00002.json").symlink_to(victims[1])
    comfy.run(graph("datasets/linked"))
    assert not any(v.exists() for v in victims)
    assert sorted(p.name for p in folder.iterdir()) == ["shot_00001.png", "shot_00002.json", "shot_00003.json",
                                                        "shot_00003.png"]
    assert (folder / "shot_00001.png").is_symlink() and not (folder / "shot_00003.png").is_symlink()
    assert json.loads((folder / "shot_00003.json").read_text())["width"] == 64


@pytest.mark.skipif(not swap_race.available(), reason="needs Linux renameat2(RENAME_EXCHANGE)")
def test_dataset_folder_swapped_with_a_link_out_is_never_written_through(comfy, tmp_path):
    """The dataset folder exchanged with a symlink to a folder outside while the node saves: every sample lands
    inside or the save is refused with a clear error; nothing is ever created outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    base = comfy.output_dir / "datasets" / "race"
    (base / "set").mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(base / "link"):
        os.symlink(outside, base / "link")
    node = comfy.node_class("IFASaveTrainingSample")()
    layout = sys.modules[comfy.node_class("IFASaveTrainingSample").__module__].Layout.from_json(LAYOUT)
    images = torch.zeros(1, 32, 64, 3)
    seen = {"saved": 0, "refused": 0, "other": []}
    with swap_race.Swapper(base / "set", base / "link", seconds=2.0) as sw:
        for _ in range(2000):
            if not sw.running():
                break
            try:
                node.save(images, layout, folder="datasets/race/set", prefix="r")
                seen["saved"] += 1
            except ValueError as e:
                seen["refused"] += 1
                assert "output folder" in str(e) or "changed while saving" in str(e), str(e)
            except Exception as e:  # noqa: BLE001 - a bare OSError is a failure, reported below
                seen["other"].append(f"{type(e).__name__}: {e}"[:120])
    assert list(outside.iterdir()) == [], seen
    assert not seen["other"] and seen["saved"] > 0, seen
