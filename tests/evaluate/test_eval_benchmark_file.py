"""Benchmark files, the stress benchmark and the run folder's manifest: the parts of the runner that need no
ComfyUI (the runner itself is tested against real servers in test_eval_runner_servers.py)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from evaluate import benchmark_file
from evaluate.__main__ import main
from evaluate.benchmark_file import BenchmarkError, item_file_stem, parse_item, read_benchmark, write_benchmark
from evaluate.runner.backends import check_url
from evaluate.runner.manifest import RunFolder, append_line, read_lines
from evaluate.runner.slots import Override, ablation_overrides
from evaluate.stress import pair_boxes, stress_items

LAYOUT = {"format": "instance-layout", "version": 1, "width": 64, "height": 48, "prompt": "a table",
          "instances": [{"description": "a cup", "regions": [{"kind": "box", "box": [4, 4, 20, 20]}]}]}


def test_read_keeps_good_items_and_names_every_bad_line_from_1(tmp_path):
    bad_layout = json.loads(json.dumps(LAYOUT))
    bad_layout["instances"][0]["regions"][0]["box"] = [4, 4, 90, 20]
    lines = [json.dumps({"id": "a", "seed": 1, "layout": LAYOUT, "source": "coco"}), "",
             json.dumps({"id": "b", "seed": -1, "layout": LAYOUT}),
             json.dumps({"id": "c", "seed": 2, "layout": bad_layout}),
             json.dumps({"id": "d", "seed": 3, "layout": json.dumps(LAYOUT)}),  # a layout as a JSON string
             json.dumps({"id": "a", "seed": 4, "layout": LAYOUT}),
             "[1, 2]", json.dumps({"seed": 1, "layout": LAYOUT}), json.dumps({"id": "e", "seed": True, "layout": {}}),
             json.dumps({"id": "f", "seed": 5})]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(lines) + "\n")
    items, bad = read_benchmark(str(path))
    assert [(i.number, i.id, i.seed) for i in items] == [(1, "a", 1), (4, "d", 3)]
    assert items[0].extra == {"source": "coco"} and items[1].layout.instances[0].description == "a cup"
    msgs = {b.number: b.message for b in bad}
    assert msgs[2] == "item 2 ('b'): seed must be an integer from 0 to 2^64-1, got -1"
    assert msgs[3].startswith("item 3 ('c'): not a valid layout: instance 1") and "x1=90" in msgs[3]
    assert msgs[5] == "item 5 ('a'): the id is already used by item 1"
    assert msgs[6] == "item 6: a line must be a JSON object with id, seed and layout"
    assert msgs[7].startswith("item 7: id must be a string")
    assert msgs[8].startswith("item 8 ('e'): seed must be")  # True is not a seed
    assert msgs[9] == "item 9 ('f'): no layout"
    assert [b.id for b in bad] == ["b", "c", "a", None, None, "e", "f"]


def test_write_round_trips_and_stems_are_safe_and_distinct(tmp_path):
    item = parse_item(1, {"id": "../x y/ü", "seed": 2**64 - 1, "layout": LAYOUT})
    assert write_benchmark(str(tmp_path / "w.jsonl"), [item, {"id": "z", "seed": 0, "layout": LAYOUT}]) == 2
    items, bad = read_benchmark(str(tmp_path / "w.jsonl"))
    assert not bad and items[0].id == "../x y/ü" and items[0].seed == 2**64 - 1
    assert items[0].layout.to_dict() == item.layout.to_dict()
    stem = item_file_stem("../x y/ü")
    assert "/" not in stem and not stem.startswith(".") and stem != item_file_stem("../x y/u")
    assert item_file_stem("a/b") != item_file_stem("a_b")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_the_writer_keeps_the_readers_bounds(tmp_path, monkeypatch):
    out = str(tmp_path / "w.jsonl")
    with pytest.raises(BenchmarkError, match=r"item 2: the id 'a\\nb' holds a control character"):
        write_benchmark(out, [{"id": "ok", "seed": 0, "layout": LAYOUT}, {"id": "a\nb", "seed": 0, "layout": LAYOUT}])
    with pytest.raises(BenchmarkError, match=r"item 1 \('x'\): seed must be an integer from 0 to 2\^64-1"):
        write_benchmark(out, [{"id": "x", "seed": 2**64, "layout": LAYOUT}])
    monkeypatch.setattr(benchmark_file, "MAX_ITEMS", 2)
    with pytest.raises(BenchmarkError, match="more than 2 items"):
        write_benchmark(out, [{"id": str(i), "seed": i, "layout": LAYOUT} for i in range(3)])
    assert not os.path.exists(out)  # nothing written on a refusal
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "seed": i, "layout": LAYOUT}) + "\n" for i in range(3)))
    with pytest.raises(BenchmarkError, match="more than 2 items"):
        read_benchmark(str(path))


@pytest.mark.parametrize("iou", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_stress_pairs_have_the_asked_iou_by_pycocotools(iou):
    a, b = pair_boxes(512, 384, iou)
    xywh = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (a, b)]
    assert mask_utils.iou([xywh[0]], [xywh[1]], [0])[0, 0] == pytest.approx(iou, abs=1e-9)
    assert 0 <= a[0] and b[2] <= 512 and (a[3] - a[1]) == pytest.approx(192)


def test_stress_benchmark_file_is_a_valid_benchmark(tmp_path):
    out = tmp_path / "stress.jsonl"
    assert main(["stress", "--out", str(out), "--width", "256", "--height", "256", "--seeds", "2",
                 "--ious", "0.1,0.9", "--pairs", "a red car|a blue car"]) == 0
    items, bad = read_benchmark(str(out))
    assert not bad and [i.id for i in items] == ["iou0.10-pair1-seed0", "iou0.10-pair1-seed1",
                                                 "iou0.90-pair1-seed0", "iou0.90-pair1-seed1"]
    lay = items[2].layout
    assert lay.prompt == "a red car and a blue car" and [i.label for i in lay.instances] == ["car", "car"]
    boxes = [np.array(i.bbox((256, 256))) for i in lay.instances]
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes]
    assert mask_utils.iou([xywh[0]], [xywh[1]], [0])[0, 0] == pytest.approx(0.9, abs=1e-3)
    assert items[0].extra == {"iou": 0.1, "pair": 1}
    assert len(stress_items()) == 27
    with pytest.raises(ValueError, match="between 0 and 1"):
        pair_boxes(64, 64, 1.0)


def test_manifest_skips_a_torn_line_and_refuses_another_workflow(tmp_path):
    folder = RunFolder(str(tmp_path))
    folder.start({}, {}, [])
    folder.record({"id": "a", "number": 1, "workflow_hash": "h1"}, b"png-a", "a")
    folder.record({"id": "b", "number": 2, "workflow_hash": "h1"}, b"png-b", "b")
    with open(folder.manifest_path, "ab") as f:
        f.write(b'{"id": "c", "number": 3, "work')  # a crash mid-append
    assert sorted(folder.done("h1")) == ["a", "b"]
    os.remove(folder.image_path("b"))  # a line without its image is not done
    assert sorted(folder.done("h1")) == ["a"]
    with pytest.raises(ValueError, match="made with workflow h1, not h2"):
        folder.done("h2")
    append_line(str(tmp_path / "e.jsonl"), {"x": 1})
    assert read_lines(str(tmp_path / "e.jsonl")) == [{"x": 1}] and read_lines(str(tmp_path / "none.jsonl")) == []


def test_overrides_urls_and_ablation_options_are_checked():
    o = Override.parse("KSampler.steps=20")
    assert (o.target, o.input, o.value) == ("KSampler", "steps", 20)
    assert Override.parse("9.text=a cat").value == "a cat" and Override.parse("9.b=true").value is True
    with pytest.raises(ValueError, match="NODE.input=VALUE"):
        Override.parse("steps=20")
    assert [(x.target, x.input, x.value) for x in ablation_overrides("off", 0.36, "appearance")] == [
        ("IFAApplyInstanceDiffusion", "scaleu", False), ("IFAInstanceDiffusionSampler", "mis", 0.36),
        ("IFAApplyIFAdapter", "token_set", "appearance only (no EoT)")]
    with pytest.raises(ValueError, match="--mis must be"):
        ablation_overrides(mis=1.5)
    assert check_url(" http://127.0.0.1:8188/ ") == "http://127.0.0.1:8188"
    for bad in ("127.0.0.1:8188", "ftp://x", "http://x/?a=1"):
        with pytest.raises(ValueError, match="give it as http://host:port"):
            check_url(bad)


def _graph():
    """An API prompt as ComfyUI's Export (API) writes it: Layout from JSON, a ControlNet between the text encoder
    and the sampler, a preview saved beside the decoded image."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": "", "file": "old.json", "width": 0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "old prompt", "clip": ["1", 1]}},
        "4": {"class_type": "ControlNetApply", "inputs": {"conditioning": ["3", 0], "control_net": ["9", 0],
                                                          "image": ["8", 0], "strength": 0.5}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "7": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["1", 0], "noise_seed": 5, "positive": ["4", 0],
                                                           "negative": ["5", 0], "latent_image": ["6", 0]}},
        "8": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["2", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "preview"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "out"}},
    }


def test_slots_in_an_api_prompt():
    from evaluate.runner.slots import BenchmarkWorkflow
    from evaluate.runner.workflow_format import WorkflowError

    g = _graph()
    wf = BenchmarkWorkflow.from_prompt(g, [Override.parse("KSamplerAdvanced.steps=9")], prompt_template="{prompt}, photo")
    assert (wf.layout_nodes, wf.seed_nodes, wf.size_nodes, wf.text_nodes, wf.output_node) == (
        ["2"], [("7", "noise_seed")], ["6"], ["3"], "12")  # the negative's encoder is not the positive
    p = wf.for_item(parse_item(1, {"id": "q", "seed": 11, "layout": LAYOUT}))
    assert p["2"]["inputs"]["file"] == "(none)" and json.loads(p["2"]["inputs"]["json_text"])["width"] == 64
    assert p["2"]["inputs"]["width"] == 0 and p["7"]["inputs"]["noise_seed"] == 11 and p["7"]["inputs"]["steps"] == 9
    assert (p["6"]["inputs"]["width"], p["6"]["inputs"]["height"]) == (64, 48)
    assert p["3"]["inputs"]["text"] == "a table, photo" and p["5"]["inputs"]["text"] == "blurry"
    assert p["12"]["inputs"]["filename_prefix"] == f"ifa_eval/{item_file_stem('q')}" and g == _graph()
    assert BenchmarkWorkflow.from_prompt(g, output_node="11").output_node == "11"
    del g["10"]
    g["12"]["inputs"]["images"] = ["8", 0]
    with pytest.raises(WorkflowError, match="2 Save Image nodes .*--output-node"):
        BenchmarkWorkflow.from_prompt(g)
    with pytest.raises(WorkflowError, match="no layout node"):
        BenchmarkWorkflow.from_prompt({k: v for k, v in _graph().items() if k != "2"})
    with pytest.raises(WorkflowError, match="--output-node '99': no node"):
        BenchmarkWorkflow.from_prompt(_graph(), output_node="99")
