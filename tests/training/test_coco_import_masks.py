"""The COCO importer keeps instance masks: an imported polygon or RLE segmentation, read back from the written
layout, is exactly pycocotools' ``annToMask`` of the annotation (pycocotools: test-only reference)."""
from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_api
from PIL import Image

from core.instancediffusion.training_inputs import source_instances
from core.layout import Layout


def test_coco_polygons_and_rle_become_the_pycocotools_masks(tmp_path):
    from train.importers import import_coco

    w, h = 120, 90
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (w, h)).save(imgs / "1.jpg")
    rng = np.random.default_rng(0)
    blob = np.zeros((h, w), dtype=np.uint8, order="F")
    blob[50:80, 70:110] = 1
    blob[60:70, 80:90] = 0  # a hole
    rle = mask_api.encode(np.asfortranarray(blob))
    rle["counts"] = rle["counts"].decode()
    wild = (rng.random((6, 2)) * [w + 20, h + 20] - 10).ravel().tolist()  # some points outside the image
    poly = [[10.5, 12.25, 60.0, 8.0, 55.5, 45.75, 20.0, 40.0], wild]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 54, 40], "iscrowd": 0, "segmentation": poly},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [70, 50, 40, 30], "iscrowd": 0, "segmentation": rle}]
    inst = {"images": [{"id": 1, "file_name": "1.jpg", "width": w, "height": h}],
            "categories": [{"id": 1, "name": "kite"}, {"id": 2, "name": "ball"}], "annotations": anns}
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    out = tmp_path / "out"
    assert import_coco(str(tmp_path / "inst.json"), None, str(imgs), str(out)) == 1
    layout = Layout.from_json((out / "1.json").read_text())
    got = source_instances(layout)
    assert [g.label for g in got] == ["kite", "ball"] and [g.description for g in got] == ["a kite", "a ball"]
    clipped = [[min(max(v, 0), w if i % 2 == 0 else h) for i, v in enumerate(p)] for p in poly]
    want_poly = mask_api.decode(mask_api.merge(mask_api.frPyObjects(clipped, h, w))).astype(bool)
    assert np.array_equal(got[0].mask, want_poly)
    assert np.array_equal(got[1].mask, mask_api.decode(rle).astype(bool))
    assert got[0].box == (8.0, 8.0, 62.0, 48.0)  # the COCO box is kept as the instance's box
    # boxes only on request
    assert import_coco(str(tmp_path / "inst.json"), None, str(imgs), str(tmp_path / "boxes"), masks=False) == 1
    plain = Layout.from_json((tmp_path / "boxes" / "1.json").read_text())
    assert all(r.kind == "box" for i in plain.instances for r in i.regions)
