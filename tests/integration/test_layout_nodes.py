"""Layout nodes in a real ComfyUI: every node runs inside a graph through ComfyUI's execution engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from comfy_env import GraphError
from PIL import Image
from workflow_format import ui_to_api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LAYOUT = {
    "format": "instance-layout", "version": 1, "width": 512, "height": 384, "prompt": "a street",
    "instances": [
        {"description": "a red car", "color": "#ff0000", "regions": [{"kind": "box", "box": [32, 200, 288, 352]}]},
        {"description": "a tall tree", "color": "#00ff00",
         "regions": [{"kind": "polygon", "points": [[352, 16], [480, 16], [480, 368], [352, 368]]}]},
        {"description": "a pigeon", "color": "#0000ff", "regions": [{"kind": "point", "point": [100, 60],
                                                                     "width": 12}],
         "future_field": {"kept": True}},
    ],
}


def _layout_node(layout=LAYOUT, width=512, height=384):
    return {"class_type": "IFAInstanceLayout",
            "inputs": {"width": width, "height": height, "layout": json.dumps(layout)}}


def _saved(comfy, out, node):
    return [np.asarray(Image.open(comfy.output_path(i))) for i in out[node]["images"]]


def test_instance_layout_preview_and_masks(comfy):
    g = {
        "lay": _layout_node(),
        "prev": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["lay", 0], "opacity": 1.0,
                                                              "legend": False}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["prev", 0], "filename_prefix": "t_prev"}},
        "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["lay", 0], "width": 64, "height": 48}},
        "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
        "msave": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_mask"}},
        "bimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 1]}},
        "bsave": {"class_type": "SaveImage", "inputs": {"images": ["bimg", 0], "filename_prefix": "t_bg"}},
    }
    out = comfy.run(g)
    prev = _saved(comfy, out, "save")[0]
    assert prev.shape == (384, 512, 3)
    # opacity 1: the car box is pure red inside (away from the label), the tree pure green
    assert tuple(prev[330, 200]) == (255, 0, 0)
    assert tuple(prev[300, 420]) == (0, 255, 0)
    masks = _saved(comfy, out, "msave")
    assert len(masks) == 3 and masks[0].shape == (48, 64, 3)
    car = masks[0][..., 0] > 127
    # box [32,200,288,352] on a 512x384 canvas -> cells x [4, 36), y [25, 44) at 64x48
    ys, xs = np.nonzero(car)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (4, 36, 25, 44)
    bg = _saved(comfy, out, "bsave")[0][..., 0] > 127
    union = np.any([m[..., 0] > 127 for m in masks], axis=0)
    assert np.array_equal(bg, ~union)


def test_widget_size_rescales_layout(comfy):
    g = {"lay": _layout_node(width=1024, height=768),
         "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["lay", 0]}},
         "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_sc"}}}
    m = _saved(comfy, comfy.run(g), "save")[0][..., 0] > 127
    assert m.shape == (768, 1024)
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (64, 576, 400, 704)


def test_add_instance_chain_and_mask(comfy):
    g = {
        "solid": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 128, "height": 128}},
        "a": {"class_type": "IFAAddInstance", "inputs": {"description": "a blue vase", "x": 10, "y": 20, "w": 100,
                                                         "h": 50, "canvas_width": 256, "canvas_height": 256}},
        "b": {"class_type": "IFAAddInstance", "inputs": {"description": "a wall", "x": 0, "y": 0, "w": 0, "h": 0,
                                                         "layout": ["a", 0], "mask": ["solid", 0],
                                                         "label": "wall", "z": -2}},
        "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["b", 0]}},
        "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_add"}},
    }
    imgs = _saved(comfy, comfy.run(g), "save")
    assert len(imgs) == 2
    vase = imgs[0][..., 0] > 127
    assert vase.sum() == 100 * 50 and vase[20, 10] and not vase[19, 10]
    assert (imgs[1][..., 0] > 127).all()  # the all-ones mask covers the whole canvas


def test_add_instance_without_region_is_a_clear_error(comfy):
    g = {"a": {"class_type": "IFAAddInstance", "inputs": {"description": "ghost", "x": 0, "y": 0, "w": 0, "h": 0}},
         "p": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["a", 0], "opacity": 0.5, "legend": True}}}
    with pytest.raises(GraphError, match="give a box with w > 0"):
        comfy.run(g)


def test_layout_from_json_text_file_and_importers(comfy):
    idiff = {"caption": "two animals", "width": 512, "height": 512,
             "annos": [{"bbox": [0, 0, 256, 512], "caption": "a cat", "point": [128, 256]},
                       {"bbox": [256, 0, 256, 512], "caption": "a dog"}]}
    (comfy.input_dir / "idiff_demo.json").write_text(json.dumps(idiff))
    g = {
        "txt": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(LAYOUT), "file": "(none)"}},
        "file": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": "", "file": "idiff_demo.json"}},
        "m1": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["txt", 0], "width": 32, "height": 24}},
        "m2": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["file", 0], "width": 32, "height": 32}},
        "i1": {"class_type": "MaskToImage", "inputs": {"mask": ["m1", 0]}},
        "i2": {"class_type": "MaskToImage", "inputs": {"mask": ["m2", 0]}},
        "s1": {"class_type": "SaveImage", "inputs": {"images": ["i1", 0], "filename_prefix": "t_j1"}},
        "s2": {"class_type": "SaveImage", "inputs": {"images": ["i2", 0], "filename_prefix": "t_j2"}},
    }
    # the file list is read when the node definition is built; rebuild it now that the file exists
    out = comfy.run(g)
    assert len(out["s1"]["images"]) == 3
    dog = _saved(comfy, out, "s2")[1][..., 0] > 127
    assert dog[:, 16:].all() and not dog[:, :16].any()


def test_layout_from_json_rejects_bad_input_with_named_field(comfy):
    bad = json.loads(json.dumps(LAYOUT))
    bad["instances"][0]["regions"][0]["box"] = [32, 200, 9999, 352]
    g = {"txt": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(bad), "file": "(none)"}},
         "p": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["txt", 0], "opacity": 0.5, "legend": True}}}
    with pytest.raises(GraphError, match=r"instance 1 \("):
        comfy.run(g)
    g["txt"]["inputs"]["json_text"] = "{not json"
    with pytest.raises(GraphError, match="not valid JSON"):
        comfy.run(g)


def test_layout_from_masks(comfy):
    g = {
        "m1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}},
        "m2": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}},
        "m2b": {"class_type": "MaskComposite", "inputs": {"destination": ["m2", 0], "source": ["m1", 0], "x": 32,
                                                          "y": 0, "operation": "add"}},
        "lay": {"class_type": "IFALayoutFromMasks", "inputs": {"masks": ["m2b", 0], "descriptions": "right half",
                                                               "prompt": "p"}},
        "out": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["lay", 0]}},
        "img": {"class_type": "MaskToImage", "inputs": {"mask": ["out", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["img", 0], "filename_prefix": "t_fm"}},
    }
    m = _saved(comfy, comfy.run(g), "save")[0][..., 0] > 127
    assert m[:, 32:].all() and not m[:, :32].any()
    g["lay"]["inputs"]["descriptions"] = "one\ntwo"
    with pytest.raises(GraphError, match="1 masks but 2"):
        comfy.run(g)


def test_api_format_prompt_carries_the_whole_layout(comfy):
    """The layout widget's JSON travels in the API prompt; unknown fields survive the node."""
    g = {"lay": _layout_node(), "p": {"class_type": "IFALayoutPreview",
                                      "inputs": {"layout": ["lay", 0], "opacity": 0.5, "legend": True}}}
    comfy.run(g)
    lay_cls = comfy.node_class("IFAInstanceLayout")
    layout, _ = lay_cls().build(512, 384, json.dumps(LAYOUT))["result"]
    assert layout.to_dict()["instances"][2]["future_field"] == {"kept": True}


def test_shipped_layout_workflow_runs(comfy):
    wf = json.loads((ROOT / "workflows" / "Instance layout preview.json").read_text())
    out = comfy.run(ui_to_api(wf, comfy.nodes.NODE_CLASS_MAPPINGS))
    img = [o for o in out.values() if o.get("images")]
    assert img, "the example workflow saves an image"


def test_instance_layout_reports_its_underlay_for_the_editor(comfy):
    """The node tells the editor what it received on `underlay` (as a temp image under a custom UI key)."""
    g = {"img": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1,
                                                         "color": 0x3366CC}},
         "lay": {**_layout_node(), "inputs": {**_layout_node()["inputs"], "underlay": ["img", 0]}},
         "prev": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["lay", 0], "opacity": 0.0,
                                                               "legend": False, "underlay": ["img", 0]}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["prev", 0], "filename_prefix": "t_under"}}}
    out = comfy.run(g)
    rec = out["lay"]["ifa_underlay"][0]
    assert rec["type"] == "temp"
    under = np.asarray(Image.open(comfy.folder_paths.get_temp_directory() + "/" + rec["filename"]))
    assert under.shape == (48, 64, 3) and tuple(under[0, 0]) == (0x33, 0x66, 0xCC)
    prev = _saved(comfy, out, "save")[0]
    assert prev.shape == (384, 512, 3) and tuple(prev[383, 0]) == (0x33, 0x66, 0xCC)  # underlay scaled in


def test_undescribed_instances_preview_and_rasterise(comfy):
    """Issue 10 item 5: instances drawn but not described yet (the editor's default) are a valid layout for the
    layout, preview and mask nodes; only the text-encoding back-ends ask for descriptions."""
    lay = json.loads(json.dumps(LAYOUT))
    for inst in lay["instances"]:
        inst["description"] = ""
    g = {
        "lay": _layout_node(lay),
        "prev": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["lay", 0], "opacity": 0.5, "legend": True}},
        "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["lay", 0], "width": 64, "height": 48}},
        "fm": {"class_type": "IFALayoutFromMasks", "inputs": {"masks": ["masks", 0], "descriptions": "",
                                                              "prompt": ""}},
        "prev2": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["fm", 0], "opacity": 0.5,
                                                               "legend": True}},
        "mimg": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["mimg", 0], "filename_prefix": "t_nodesc"}},
    }
    out = comfy.run(g)
    assert len(out["save"]["images"]) == 3
    assert out["prev"]["images"] and out["prev2"]["images"]


def test_deeply_nested_json_is_a_layout_error(comfy):
    """Issue 8 item 4: JSON nested past what Python can parse, or past the format's limit, is a clear error."""
    g = {"txt": {"class_type": "IFALayoutFromJSON", "inputs": {"file": "(none)", "json_text": (
             '{"format": "instance-layout", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")}},
         "p": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["txt", 0], "opacity": 0.5, "legend": True}}}
    with pytest.raises(GraphError, match="nested too deeply") as e:
        comfy.run(g)
    assert "RecursionError" not in str(e.value)
    deep = json.loads(json.dumps(LAYOUT))
    deep["instances"][0]["note"] = json.loads("[" * 200 + "]" * 200)
    g["txt"]["inputs"]["json_text"] = json.dumps(deep)
    with pytest.raises(GraphError, match=r"nested 65\+ levels deep; at most 64 allowed"):
        comfy.run(g)


def test_previously_pathological_layouts_are_refused_by_validation(comfy):
    """Issue 8 item 3: inputs that used to stall the server (a 100 kB description, 10,000 boxes, a 100,000-point
    polygon) are refused at the Instance Layout node with a message naming the instance and the field."""
    box = {"kind": "box", "box": [1, 1, 9, 9]}
    cases = [
        ([{"description": "y" * 100_000, "regions": [box]}],
         r"instance 1 \(.*\): the length of 'description' in characters is 100000; at most 2000"),
        ([{"description": "x", "regions": [box]}] * 10_000, r"the number of 'instances' is 10000; at most 64"),
        ([{"description": "a", "regions": [box]},
          {"description": "p", "regions": [{"kind": "polygon", "points": [[k % 500, (k * 7) % 380]
                                                                           for k in range(100_000)]}]}],
         r'instance 2 \("p"\): regions\[0\] \(polygon\): the number of points is 100000; at most 1024'),
    ]
    for instances, message in cases:
        lay = {**LAYOUT, "instances": instances}
        g = {"lay": _layout_node(lay),
             "p": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["lay", 0], "opacity": 0.5,
                                                              "legend": True}}}
        with pytest.raises(GraphError, match=message):
            comfy.run(g)


def test_layout_to_masks_output_is_bounded(comfy):
    g = {"lay": _layout_node(),
         "m": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["lay", 0], "width": 16384, "height": 16384}},
         "img": {"class_type": "MaskToImage", "inputs": {"mask": ["m", 0]}},
         "save": {"class_type": "SaveImage", "inputs": {"images": ["img", 0], "filename_prefix": "t_big"}}}
    with pytest.raises(GraphError, match=r"3 masks and the background of 16384x16384 would be 1074 M values; at most "
                                         r"268 M \(1 GiB as float32\): ask for a smaller size"):
        comfy.run(g)
    # one instance: its mask alone is at the cap, the background makes two (issue 18 item 5: 2 GiB were admitted)
    one = {"format": "instance-layout", "version": 1, "width": 512, "height": 512, "prompt": "",
           "instances": [{"description": "a", "regions": [{"kind": "box", "box": [0, 0, 64, 64]}]}]}
    g["lay"] = {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(one), "file": "(none)"}}
    with pytest.raises(GraphError, match=r"1 masks and the background of 16384x16384 would be 537 M values"):
        comfy.run(g)
