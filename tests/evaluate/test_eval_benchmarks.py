"""Benchmark importers: InstanceDiffusion's COCO selection rules on small synthetic COCO files (read back by
pycocotools), COCO-IFG-style files, layout folders, the JSONL format and the error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from core.instancediffusion.inputs import PRESETS, from_layout
from core.layout import Layout
from evaluate.benchmark_file import BenchmarkError, write_benchmark
from evaluate.benchmarks.__main__ import main as cli
from evaluate.benchmarks.coco import MAX_OBJS, coco_items
from evaluate.benchmarks.coco_ifg import coco_ifg_items
from evaluate.benchmarks.folder import folder_items
from evaluate.metrics.attributes import COLOURS, TEXTURES

CATS = [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]


def poly(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def coco_files(tmp_path, extra_anns=()):
    """Images out of id order (one without annotations, one with 33), a crowd RLE, captions out of order."""
    images = [{"id": 9, "file_name": "000000000009.jpg", "width": 64, "height": 48},
              {"id": 2, "file_name": "000000000002.jpg", "width": 40, "height": 40},
              {"id": 5, "file_name": "000000000005.jpg", "width": 32, "height": 32},
              {"id": 7, "file_name": "000000000007.jpg", "width": 50, "height": 30}]
    crowd = np.zeros((48, 64), np.uint8)
    crowd[30:40, 2:20] = 1
    from pycocotools import mask as mu

    counts = []  # uncompressed RLE, column-major, as COCO stores crowd regions
    flat = crowd.flatten(order="F")
    run, cur = 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            run, cur = 0, v
        run += 1
    counts.append(run)
    assert mu.decode(mu.frPyObjects({"counts": counts, "size": [48, 64]}, 48, 64)).sum() == crowd.sum()
    anns = [
        {"id": 101, "image_id": 9, "category_id": 18, "bbox": [10, 5, 20, 15], "segmentation": poly(10, 5, 30, 20),
         "area": 300, "iscrowd": 0},
        {"id": 55, "image_id": 2, "category_id": 17, "bbox": [4, 4, 10, 10], "segmentation": poly(4, 4, 14, 14),
         "area": 100, "iscrowd": 0},
        {"id": 100, "image_id": 9, "category_id": 1, "bbox": [40, 10, 20, 30], "segmentation": poly(40, 10, 60, 40),
         "area": 600, "iscrowd": 0},
        {"id": 102, "image_id": 9, "category_id": 1, "bbox": [2, 30, 18, 10], "segmentation": {"counts": counts,
         "size": [48, 64]}, "area": 180, "iscrowd": 1},
    ]
    for k in range(33):  # image 7: 33 annotations, the first 30 become instances
        x = k % 10 * 5
        anns.append({"id": 1000 + k, "image_id": 7, "category_id": CATS[k % 3]["id"], "bbox": [x, 2, 4, 4],
                     "segmentation": poly(x, 2, x + 4, 6), "area": 16, "iscrowd": 0})
    anns.extend(extra_anns)
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    caps = tmp_path / "captions.json"
    caps.write_text(json.dumps({"images": images, "annotations": [
        {"id": 1, "image_id": 2, "caption": "A cat on a mat."},
        {"id": 2, "image_id": 9, "caption": "Two people and a dog."},
        {"id": 3, "image_id": 2, "caption": "second caption, never used"},
        {"id": 4, "image_id": 5, "caption": "An empty room."},
        {"id": 5, "image_id": 7, "caption": "A crowd."}]}))
    return str(inst), str(caps)


def test_coco_selection_order_prompt_and_limits(tmp_path):
    inst, caps = coco_files(tmp_path)
    items = coco_items(inst, caps, "box", seed=10)
    assert [it.id for it in items] == ["000000000002", "000000000005", "000000000007", "000000000009"]
    assert [it.seed for it in items] == [10, 11, 12, 13]
    by_id = {it.id: it for it in items}
    # annotations in file order (crowd included), prompt = first caption + every name, no separator
    lay = by_id["000000000009"].layout
    assert [i.extra["coco"]["annotation_id"] for i in lay.instances] == [101, 100, 102]
    assert [i.extra["coco"]["iscrowd"] for i in lay.instances] == [0, 0, 1]
    assert lay.prompt == "Two people and a dog.dog, person, person"
    assert [i.description for i in lay.instances] == ["dog", "person", "person"]
    assert (lay.width, lay.height) == (64, 48)
    assert by_id["000000000002"].layout.prompt == "A cat on a mat.cat"
    # an image without annotations stays, with the caption alone
    assert by_id["000000000005"].layout.instances == [] and by_id["000000000005"].layout.prompt == "An empty room."
    # 33 annotations: 30 instances, all 33 names in the prompt
    busy = by_id["000000000007"].layout
    assert len(busy.instances) == MAX_OBJS == 30
    assert [i.extra["coco"]["annotation_id"] for i in busy.instances] == list(range(1000, 1030))
    assert busy.prompt == "A crowd." + ", ".join(CATS[k % 3]["name"] for k in range(33))
    # no captions: the sentence alone; limit keeps the seeds
    first = coco_items(inst, None, "box", limit=2, seed=10)
    assert [it.id for it in first] == ["000000000002", "000000000005"] and first[0].seed == 10
    assert first[0].layout.prompt == "cat"


def test_coco_settings_regions_match_pycocotools_and_presets(tmp_path):
    inst, caps = coco_files(tmp_path, extra_anns=[
        {"id": 56, "image_id": 2, "category_id": 18, "bbox": [20, 20, 30, 30], "segmentation": poly(20, 20, 40, 40),
         "area": 400, "iscrowd": 0, "point": [25.5, 30]}])
    coco = COCO(inst)
    for setting, preset in (("box", "boxes"), ("mask", "masks"), ("point", "points"), ("scribble", "scribbles")):
        items = coco_items(inst, caps, setting, seed=3)
        for it in items:
            lay = it.layout
            for inst_ in lay.instances:
                ann = coco.loadAnns([inst_.extra["coco"]["annotation_id"]])[0]
                kinds = [r.kind for r in inst_.regions]
                x, y, w, h = ann["bbox"]
                if setting == "box":
                    assert kinds == ["box"]
                    assert inst_.regions[0].box == (x, y, min(x + w, lay.width), min(y + h, lay.height))
                elif setting == "point":
                    assert kinds == ["point"]
                    assert inst_.regions[0].points[0] == tuple(ann.get("point", (x + w / 2, y + h / 2)))
                else:
                    assert kinds == (["mask"] if setting == "mask" else ["mask", "scribble"])
                    assert np.array_equal(inst_.regions[0].mask, coco.annToMask(ann).astype(bool))
            if lay.instances:  # the pack's "auto" preset gives the official config of the setting
                got = from_layout(lay, torch.zeros(len(lay.instances), 768), preset="auto")
                flags = PRESETS[preset]
                assert got["drop"].tolist() == [flags.boxes, flags.points, flags.scribbles, flags.masks]
            # the JSONL form round-trips
            assert Layout.from_json(json.loads(json.dumps(it.to_dict()))["layout"]).to_dict() == lay.to_dict()


def test_coco_scribble_is_the_official_draw(tmp_path):
    inst, caps = coco_files(tmp_path)
    items = {it.id: it for it in coco_items(inst, caps, "scribble", seed=40)}
    it = items["000000000009"]
    coco = COCO(inst)
    rng = np.random.RandomState(it.seed)  # the item's seed; instances drawn in order
    for inst_ in it.layout.instances:
        ann = coco.loadAnns([inst_.extra["coco"]["annotation_id"]])[0]
        m = Image.fromarray(coco.annToMask(ann)).resize((512, 512), resample=Image.Resampling.NEAREST)
        nz = np.transpose(np.nonzero(np.array(m)))  # (row, col), as the official sample_random_points_from_mask
        pts = nz[rng.choice(len(nz), 20, replace=len(nz) < 20)]
        pts = sorted(pts, key=lambda p: np.linalg.norm(np.array(p) - np.array([0, 0])))
        want = [(float(p[1]) / 512 * 64, float(p[0]) / 512 * 48) for p in pts]
        scr = inst_.regions[1]
        assert scr.kind == "scribble" and scr.points == want
    again = {i.id: i for i in coco_items(inst, caps, "scribble", seed=40)}["000000000009"]
    assert again.layout.to_dict() == it.layout.to_dict()


def test_coco_attributes(tmp_path):
    inst, caps = coco_files(tmp_path)
    lay = {it.id: it for it in coco_items(inst, caps, "box", ["colors"])}["000000000009"].layout
    assert [i.description for i in lay.instances] == [f"{COLOURS[101 % 8]} dog", f"{COLOURS[100 % 8]} person",
                                                      f"{COLOURS[102 % 8]} person"]
    assert [i.label for i in lay.instances] == ["dog", "person", "person"]
    assert lay.prompt == "Two people and a dog." + ", ".join(i.description for i in lay.instances)
    both = {it.id: it for it in coco_items(inst, caps, "box", ["colors", "textures"])}["000000000002"].layout
    assert both.instances[0].description == f"{TEXTURES[55 % 8]} {COLOURS[55 % 8]} cat"


@pytest.mark.parametrize("bad, message", [
    ({"bbox": [1, 2, "3", 4]}, "annotation 5 (id 77): bbox width must be a finite number, got '3'"),
    ({"bbox": [100, 100, 5, 5]}, "item 4 (image 9, '000000000009.jpg'), instance 4 (annotation 77, 'cat'): bbox [100, 100, 5, 5] has no area "
                                 "inside the 64x48 image"),
    ({"category_id": 99}, "annotation 5 (id 77): 'category_id' 99 is no category"),
    ({"image_id": 3}, "annotation 5 (id 77): 'image_id' 3 is no image"),
])
def test_coco_errors_name_the_item(tmp_path, bad, message):
    ann = {"id": 77, "image_id": 9, "category_id": 17, "bbox": [1, 2, 3, 4], "segmentation": poly(1, 2, 4, 6),
           "area": 12, "iscrowd": 0}
    ann.update(bad)
    inst, caps = coco_files(tmp_path)
    d = json.loads(open(inst).read())
    d["annotations"].insert(4, ann)
    open(inst, "w").write(json.dumps(d))
    with pytest.raises(BenchmarkError) as e:
        coco_items(inst, caps, "box")
    assert message in str(e.value)


def test_coco_missing_caption_and_bad_mask_and_options(tmp_path):
    inst, caps = coco_files(tmp_path, extra_anns=[
        {"id": 300, "image_id": 5, "category_id": 17, "bbox": [1, 1, 2, 2], "segmentation": [], "iscrowd": 0}])
    with pytest.raises(BenchmarkError, match=r"item 2 \(image 5, '000000000005.jpg'\), instance 1 \(annotation "
                                             r"300, 'cat'\): 'segmentation' must be"):
        coco_items(inst, caps, "mask")
    d = json.loads(open(caps).read())
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] != 7]
    open(caps, "w").write(json.dumps(d))
    with pytest.raises(BenchmarkError, match=r"item 3 \(image 7, '000000000007.jpg'\): the captions file has no "):
        coco_items(inst, caps, "box")
    with pytest.raises(BenchmarkError, match="setting must be one of box, mask, point, scribble"):
        coco_items(inst, caps, "boxes")
    with pytest.raises(BenchmarkError, match="attributes must be among colors, textures"):
        coco_items(inst, caps, "box", ["colours"])
    with pytest.raises(BenchmarkError, match="is not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        coco_items(str(tmp_path / "bad.json"))
    with pytest.raises(BenchmarkError, match="cannot be read|is not a regular file"):
        coco_items(str(tmp_path / "missing.json"))


def test_coco_ifg_formats(tmp_path):
    items = [{"id": "a", "caption": "a park", "width": 512, "height": 256,
              "annotations": [{"box": [10, 20, 100, 50], "caption": "a red kite"},
                              {"bbox": [500, 200, 40, 40], "description": ["a dog", "unused"]}]},
             {"prompt": "a kitchen", "instances": [[[0, 0, 64, 64], "a cup"], ["a plate", [100, 100, 50, 50]]]}]
    f = tmp_path / "ifg.json"
    f.write_text(json.dumps(items))
    got = coco_ifg_items(str(f), seed=5)
    assert [it.id for it in got] == ["a", "ifg-000002"] and [it.seed for it in got] == [5, 6]
    a = got[0].layout
    assert (a.width, a.height, a.prompt) == (512, 256, "a park")
    assert [(i.description, i.regions[0].box) for i in a.instances] == [
        ("a red kite", (10, 20, 110, 70)), ("a dog", (500, 200, 512, 240))]  # clipped to the canvas
    b = got[1].layout
    assert (b.width, b.height) == (1024, 1024)
    assert [(i.description, i.regions[0].box) for i in b.instances] == [("a cup", (0, 0, 64, 64)),
                                                                        ("a plate", (100, 100, 150, 150))]
    jl = tmp_path / "ifg.jsonl"
    jl.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    assert [it.layout.to_dict() for it in coco_ifg_items(str(jl), seed=5)] == [it.layout.to_dict() for it in got]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"images": items}))
    assert [it.id for it in coco_ifg_items(str(wrapped), width=768, height=768)] == ["a", "ifg-000002"]


def test_coco_ifg_errors_name_the_item(tmp_path):
    f = tmp_path / "ifg.json"
    f.write_text(json.dumps([{"caption": "x", "annotations": [{"box": [0, 0, 5, 5], "caption": "a"}]},
                             {"caption": "y", "annotations": [{"box": [0, 0, 5], "caption": "b"}]}]))
    with pytest.raises(BenchmarkError, match=r"item 2 \('ifg-000002'\): instance 1 \(\"b\"\): 'box' must be"):
        coco_ifg_items(str(f))
    f.write_text(json.dumps([{"caption": "x", "annotations": [{"box": [0, 0, 5, 5], "caption": "a"}] * 65}]))
    with pytest.raises(BenchmarkError, match=r"item 1 .*at most 64"):
        coco_ifg_items(str(f))
    f.write_text(json.dumps([{"id": "same", "caption": "x", "annotations": []}] * 2))
    with pytest.raises(BenchmarkError, match="item 2: id 'same' is already used by item 1"):
        coco_ifg_items(str(f))
    f.write_text("{\"caption\": 1}\nnot json\n")
    with pytest.raises(BenchmarkError, match="line 2 is not JSON"):
        coco_ifg_items(str(f))


def test_folder_items(tmp_path):
    lay = Layout.from_json({"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "p",
                            "instances": [{"description": "a cat", "regions": [{"kind": "box",
                                                                                "box": [1, 1, 30, 30]}]}]})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.json").write_text(lay.to_json())
    (tmp_path / "a.json").write_text(lay.to_json())
    (tmp_path / "notes.txt").write_text("not a layout")
    (tmp_path / "c.json").write_text(json.dumps({"caption": "ifadapter sample", "annotations": [
        {"box": [0, 0, 100, 100], "caption": "a dog"}]}))  # a sample format Layout.from_json detects
    items = folder_items(str(tmp_path), seed=7)
    assert [(it.id, it.seed) for it in items] == [("a", 7), ("b/two", 8), ("c", 9)]
    assert items[0].layout.to_dict() == lay.to_dict() and items[2].layout.instances[0].description == "a dog"
    assert [it.id for it in folder_items(str(tmp_path), limit=1)] == ["a"]
    (tmp_path / "b" / "bad.json").write_text(json.dumps({"format": "instance-layout", "version": 1, "width": 8,
                                                         "height": 8, "instances": [{"description": "x",
                                                         "regions": [{"kind": "box", "box": [0, 0, 9, 4]}]}]}))
    with pytest.raises(BenchmarkError, match=r"item 2 \(b/bad.json\): instance 1 \(\"x\"\): regions\[0\] \(box\)"):
        folder_items(str(tmp_path))
    with pytest.raises(BenchmarkError, match="is not a folder"):
        folder_items(str(tmp_path / "a.json"))


def test_jsonl_and_cli(tmp_path, capsys):
    inst, caps = coco_files(tmp_path)
    out = tmp_path / "out" / "coco.jsonl"
    assert cli(["coco", "--instances", inst, "--captions", caps, "--setting", "point", "--seed", "100",
                "--out", str(out)]) == 0
    assert "wrote 4 items (34 instances)" in capsys.readouterr().out
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [(ln["id"], ln["seed"]) for ln in lines] == [("000000000002", 100), ("000000000005", 101),
                                                        ("000000000007", 102), ("000000000009", 103)]
    assert all(set(ln) == {"id", "seed", "layout", "source"} for ln in lines)
    assert lines[3]["source"] == {"dataset": "coco", "image_id": 9, "file_name": "000000000009.jpg",
                                  "setting": "point", "attributes": [], "captions": True, "annotations": 3}
    assert Layout.from_json(lines[3]["layout"]).instances[0].regions[0].kind == "point"
    assert cli(["folder", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "error: layout folder" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    # the writer replaces atomically and leaves no temporary file behind
    assert write_benchmark(str(out), []) == 0 and out.read_text() == ""
    assert sorted(p.name for p in out.parent.iterdir()) == ["coco.jsonl"]
