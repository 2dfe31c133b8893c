"""The Evaluate Layout node in a real ComfyUI: tiny random-weight OWLv2 / CLIP / LLaVA saved in the normal layout
under test model folders (models/detection, models/clip, models/vlm), the shipped workflow, and the bad-input
messages. With random weights the scores are arbitrary: the known-answer cases are in
tests/evaluate/test_eval_layout_check.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from comfy_env import GraphError
from PIL import Image
from workflow_format import ui_to_api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "evaluate"))

import eval_tiny_models as tiny  # noqa: E402

LAYOUT = {"format": "instance-layout", "version": 1, "width": 100, "height": 80, "prompt": "a ball and a cube",
          "instances": [
              {"description": "red ball", "label": "ball", "regions": [{"kind": "box", "box": [10, 10, 40, 50]}]},
              {"description": "blue cube", "label": "cube", "regions": [{"kind": "box", "box": [60, 20, 90, 70]}]},
          ]}  # fmt: skip


@pytest.fixture(scope="module")
def eval_models(comfy, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_models")
    tiny.save_owlv2(root / "detection" / "tiny-owlv2")
    tiny.save_clip(root / "detection" / "a-clip-model")  # the wrong family in the detection folder
    tiny.save_clip(root / "clip" / "tiny-clip")
    tiny.save_llava(root / "vlm" / "tiny-llava")
    for kind in ("detection", "clip", "vlm"):
        comfy.folder_paths.add_model_folder_path(kind, str(root / kind))
    return root


def _scene(comfy, name="eval_scene.png", size=(200, 160)) -> str:
    w, h = size
    img = np.full((h, w, 3), 128, np.uint8)
    img[int(h * 10 / 80):int(h * 50 / 80), int(w * 10 / 100):int(w * 40 / 100)] = (255, 0, 0)
    img[int(h * 20 / 80):int(h * 70 / 80), int(w * 60 / 100):int(w * 90 / 100)] = (0, 0, 255)
    Image.fromarray(img).save(comfy.input_dir / name)
    return name


def _graph(image: str, detector="tiny-owlv2", clip="tiny-clip", vlm="tiny-llava", layout=LAYOUT) -> dict:
    return {
        "lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": layout["width"], "height": layout["height"],
                                                              "layout": json.dumps(layout)}},
        "img": {"class_type": "LoadImage", "inputs": {"image": image}},
        "eval": {"class_type": "IFAEvaluateLayout", "inputs": {
            "image": ["img", 0], "layout": ["lay", 0], "detector": detector, "clip": clip, "vlm": vlm,
            "detection_threshold": 0.0, "allow_download": False}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["eval", 2], "filename_prefix": "t_eval"}},
    }


def test_node_lists_the_model_folders(comfy, eval_models):
    spec = comfy.node_class("IFAEvaluateLayout").INPUT_TYPES()["required"]
    assert {"none", "tiny-owlv2", "a-clip-model", "IDEA-Research/grounding-dino-tiny"} <= set(spec["detector"][0])
    assert "tiny-clip" in spec["clip"][0] and "tiny-llava" in spec["vlm"][0]
    assert spec["allow_download"][1]["default"] is False
    assert all(spec[k][1]["default"] == "none" for k in ("detector", "clip", "vlm"))


def test_scores_and_overlay(comfy, eval_models):
    out = comfy.run(_graph(_scene(comfy)))
    ui = out["eval"]
    report = json.loads(ui["scores"][0])
    s = report["summary"]
    assert (s["images"], s["instances"]) == (1, 2)
    assert set(s) >= {"box_AP", "box_AP50", "localisation_rate", "instance_clip", "image_clip", "ifs", "hits"}
    assert set(s["ifs"]) == {"tiny-llava", "mean"}
    assert [r["instance"] for r in report["instances"]] == [1, 2]
    assert all(isinstance(r["hit"], bool) and -1 <= r["clip"] <= 1 for r in report["instances"])
    assert report["models"] == {"detection": "tiny-owlv2", "clip": "tiny-clip", "vlm": "tiny-llava"}
    assert ui["text"][0].startswith("1 image(s), 2 instance(s)")
    assert "image 1 instance 2 (cube)" in ui["text"][0]
    assert len(ui["images"]) == 1 and ui["images"][0]["type"] == "temp"  # the preview on the node
    saved = np.asarray(Image.open(comfy.output_path(out["save"]["images"][0])))
    assert saved.shape[1] == 200 and saved.shape[0] > 160  # the image's size, the legend below
    # models are optional: CLIP alone gives no hit / miss
    clip_only = json.loads(comfy.run(_graph(_scene(comfy), detector="none", vlm="none"))["eval"]["scores"][0])
    assert "hits" not in clip_only["summary"] and clip_only["instances"][0]["hit"] is None
    assert clip_only["instances"][0]["clip"] == report["instances"][0]["clip"]  # the same model, the same crop


def test_bad_input_messages(comfy, eval_models):
    with pytest.raises(GraphError, match=r"detection model '.*a-clip-model' at .* is a 'clip' model; a detection "
                                         r"model must be one of grounding-dino, mm-grounding-dino, owlv2"):
        comfy.run(_graph(_scene(comfy), detector="a-clip-model"))
    with pytest.raises(GraphError, match=r"image 1 is 96x96 but its layout's canvas is 100x80"):
        comfy.run(_graph(_scene(comfy, "square.png", (96, 96))))
    with pytest.raises(GraphError, match=r"detection model 'IDEA-Research/grounding-dino-tiny' not found: put it in "
                                         r".*IDEA-Research--grounding-dino-tiny.*allow downloads"):
        comfy.run(_graph(_scene(comfy), detector="IDEA-Research/grounding-dino-tiny"))
    with pytest.raises(GraphError, match="IFS verification needs a detector"):
        comfy.run(_graph(_scene(comfy), detector="none"))


def test_shipped_workflow_runs(comfy, eval_models):
    from test_ifadapter_nodes import _mod  # noqa: PLC0415
    from test_ifadapter_workflows import _tiny  # noqa: PLC0415

    write = _mod(comfy, "IFATest_SaveLatentTensor").write_tiny_ifadapter
    write(str(comfy.models_dir / "ifadapter" / "tiny_ifa.safetensors"), seed=0, alpha=0.5)
    wf = json.loads((ROOT / "workflows" / "Evaluate layout.json").read_text())
    prompt = ui_to_api(wf, comfy.nodes.NODE_CLASS_MAPPINGS)
    ev = [k for k, n in prompt.items() if n["class_type"] == "IFAEvaluateLayout"]
    assert len(ev) == 1
    inp = prompt[ev[0]]["inputs"]
    assert (inp["detector"], inp["clip"], inp["vlm"], inp["allow_download"]) == (
        "IDEA-Research/grounding-dino-tiny", "openai/clip-vit-large-patch14", "none", False)
    assert prompt[inp["image"][0]]["class_type"] == "VAEDecode"
    inp.update(detector="tiny-owlv2", clip="tiny-clip")  # the local tiny models instead of the hub names
    out = comfy.run(_tiny(prompt, "none"))
    report = json.loads(out[ev[0]]["scores"][0])
    assert report["summary"]["instances"] == 5 and "box_AP" in report["summary"]
