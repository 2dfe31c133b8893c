"""The documented limits (docs/layout-format.md#limits): refused while parsing, before anything big is decoded or
drawn, and by validate() for layouts built in code; each message names the instance (from 1) and the field."""

import json

import numpy as np
import pytest

from core import layout as L
from core.layout import Instance, Layout, LayoutError, Region, from_instancediffusion_json
from core.rle import rle_encode

BOX = {"kind": "box", "box": [1, 1, 9, 9]}


def doc(instances, **kw) -> dict:
    return {"format": "instance-layout", "version": 1, "width": 512, "height": 512, "instances": instances, **kw}


def err(d) -> str:
    with pytest.raises(LayoutError) as e:
        Layout.from_json(d if isinstance(d, str) else json.dumps(d))
    return str(e.value)


def test_every_limit_points_to_the_docs_section():
    text = open(L.__file__.replace("core/layout/__init__.py", "docs/layout-format.md"), encoding="utf-8").read()
    assert "## Limits" in text
    for name in ("MAX_INSTANCES", "MAX_REGIONS_PER_INSTANCE", "MAX_REGIONS", "MAX_DESCRIPTION_CHARS",
                 "MAX_LABEL_CHARS", "MAX_PROMPT_CHARS", "MAX_POINTS_PER_REGION", "MAX_POINTS", "MAX_MASK_PIXELS",
                 "MAX_MASK_PIXELS_TOTAL", "MAX_RLE_CHARS", "MAX_JSON_CHARS", "MAX_JSON_DEPTH", "MAX_CANVAS"):
        assert f"{getattr(L, name):,}" in text, f"{name} = {getattr(L, name):,} is not in docs/layout-format.md"
    assert "see docs/layout-format.md#limits" in err(doc([{"description": "x", "regions": [BOX]}] * 65))


def test_100kb_description_is_refused_naming_instance_and_field():
    msg = err(doc([{"description": "a", "regions": [BOX]}, {"description": "y" * 100_000, "regions": [BOX]}]))
    assert msg.startswith('instance 2 ("yyyy')
    assert "the length of 'description' in characters is 100000; at most 2000 allowed" in msg


def test_10000_boxes_are_refused_before_the_instances_are_parsed():
    assert "layout: the number of 'instances' is 10000; at most 64 allowed" in err(
        doc([{"description": "x", "regions": [BOX]}] * 10_000))
    # 10,000 boxes in one instance: the regions limit
    msg = err(doc([{"description": "a cat", "regions": [BOX] * 10_000}]))
    assert msg.startswith('instance 1 ("a cat"): the number of \'regions\' is 10000; at most 16')


def test_100000_point_polygon_is_refused():
    pts = [[k % 500, (k * 7) % 500] for k in range(100_000)]
    msg = err(doc([{"description": "a", "regions": [BOX]},
                   {"description": "p", "regions": [BOX, {"kind": "polygon", "points": pts}]}]))
    assert msg == ('instance 2 ("p"): regions[1] (polygon): the number of points is 100000; at most 1024 allowed '
                   "(see docs/layout-format.md#limits)")


def test_layout_wide_totals():
    poly = {"kind": "scribble", "points": [[k % 500, k % 400] for k in range(1000)]}
    msg = err(doc([{"description": f"s{k}", "regions": [poly]} for k in range(3)]))
    assert msg.startswith('instance 3 ("s2"): regions[0] (scribble): the number of points in the layout (with this '
                          "one) is 3000; at most 2048")
    many = [{"description": f"i{k}", "regions": [BOX] * 16} for k in range(17)]
    assert "the number of regions in the layout (with this one) is 272; at most 256" in err(doc(many))


def test_masks_are_checked_before_they_are_decoded():
    huge = {"kind": "mask", "rle": {"size": [16384, 16384], "counts": [0, 16384 * 16384]}}
    msg = err(doc([{"description": "wall", "regions": [huge]}]))
    assert "regions[0] (mask): the size of the mask in 'rle' (16384x16384) in pixels is 268435456; at most 16777216" \
        in msg
    m = np.zeros((4096, 4096), dtype=bool)
    m[0, 0] = True
    big = {"kind": "mask", "rle": rle_encode(m)}
    msg = err(doc([{"description": f"m{k}", "regions": [big]} for k in range(5)]))
    assert msg.startswith('instance 5 ("m4"): regions[0] (mask): the number of mask pixels in the layout')
    long_rle = {"kind": "mask", "rle": {"size": [600, 500], "counts": [1] * 300_000}}
    assert "the length of the RLE counts in 'rle' is 300000; at most 262144" in err(doc([
        {"description": "z", "regions": [long_rle]}]))


def test_texts_and_json_size():
    assert "layout: the length of 'prompt' in characters is 10001; at most 10000" in err(
        doc([], prompt="p" * 10_001))
    assert "the length of 'label' in characters is 201" in err(doc([{"description": "d", "label": "l" * 201,
                                                                     "regions": [BOX]}]))
    assert "the length of the JSON text is" in err(" " * (L.MAX_JSON_CHARS + 1))


def test_deep_json_is_a_layout_error_never_a_recursion_error():
    assert "nested too deeply to read" in err("[" * 100_000 + "]" * 100_000)
    d = doc([{"description": "d", "regions": [BOX], "note": json.loads("[" * 500 + "]" * 500)}])
    assert "nested 65+ levels deep; at most 64 allowed" in err(d)
    with pytest.raises(LayoutError, match="nested 65"):
        Layout.from_json(d)  # a dict, as Layout from JSON hands it over
    ok = doc([{"description": "d", "regions": [BOX], "note": json.loads("[" * 50 + "]" * 50)}])
    assert Layout.from_json(ok).instances[0].extra["note"]


def test_importers_apply_the_limits():
    anno = {"caption": "c", "bbox": [0, 0, 10, 10]}
    with pytest.raises(LayoutError, match="the number of 'annos' is 65; at most 64"):
        from_instancediffusion_json({"width": 64, "height": 64, "annos": [anno] * 65})
    scr = {"caption": "s", "scribble": [[1, 1]] * 1025}
    with pytest.raises(LayoutError, match=r'instance 1 \("s"\): scribble: the number of points is 1025; at most 1024'):
        from_instancediffusion_json({"width": 64, "height": 64, "annos": [scr]})


def test_validate_applies_the_limits_to_layouts_built_in_code():
    box = Region("box", box=(0, 0, 5, 5))
    with pytest.raises(LayoutError, match=r'^instance 1 \("x+\.\.\."\): the length of \'description\''):
        Layout(64, 64, instances=[Instance("x" * 5000, regions=[box])]).validate()
    with pytest.raises(LayoutError, match="the number of 'instances' is 65"):
        Layout(64, 64, instances=[Instance("x", regions=[box])] * 65).validate()
    pts = [(k % 60, (k * 3) % 60) for k in range(1025)]
    with pytest.raises(LayoutError, match=r"instance 2: regions\[0\] \(scribble\): the number of points is 1025"):
        Layout(64, 64, instances=[Instance("a", regions=[box]), Instance("", regions=[Region("scribble", points=pts)])
                                  ]).validate()
    with pytest.raises(LayoutError, match=r"the size of the mask \(5000x4000\) in pixels is 20000000"):
        Layout(64, 64, instances=[Instance("m", regions=[Region("mask", mask=np.ones((5000, 4000), bool))])]).validate()


def test_a_layout_at_every_limit_is_valid():
    """The limits themselves are allowed (and the benchmark times such layouts)."""
    pts = [[k % 500, (k * 7) % 500] for k in range(L.MAX_POINTS_PER_REGION)]
    d = doc([{"description": "d" * L.MAX_DESCRIPTION_CHARS, "label": "l" * L.MAX_LABEL_CHARS,
              "regions": [{"kind": "scribble", "points": pts}] * 2 + [BOX] * 14}]
            + [{"description": "x", "regions": [BOX] * 16}] * 15 + [{"description": "y", "regions": []}] * 48,
            prompt="p" * L.MAX_PROMPT_CHARS)
    for inst in d["instances"][16:]:
        inst["enabled"] = False
    layout = Layout.from_json(d)
    assert len(layout.instances) == L.MAX_INSTANCES and sum(len(i.regions) for i in layout.instances) == L.MAX_REGIONS


# -- issue 18 item 6: huge, non-finite and too-big-for-a-float numbers are LayoutErrors naming the field ---------------

@pytest.mark.parametrize("kind", ["scribble", "point"])
@pytest.mark.parametrize("width", [1e308, 10**400, L.MAX_STROKE_WIDTH + 1, 0])
def test_stroke_width_and_radius_are_bounded(kind, width):
    geo = {"points": [[1, 1], [50, 50]]} if kind == "scribble" else {"point": [5, 5]}
    d = doc([{"description": "a", "regions": [{"kind": kind, **geo, "width": width}]}])
    assert f'instance 1 ("a"): regions[0] ({kind}) width is ' in err(d)
    if not isinstance(width, int) or width <= L.MAX_STROKE_WIDTH:  # json cannot write 10**400 as a float: skip
        r = Region(kind, points=[(1.0, 1.0), (50.0, 50.0)][: 2 if kind == "scribble" else 1], width=width)
        with pytest.raises(LayoutError, match=rf"regions\[0\] \({kind}\): width is "):
            Layout(512, 512, instances=[Instance("a", regions=[r])]).validate()
    ok = {"kind": kind, **geo, "width": L.MAX_STROKE_WIDTH}  # the limit itself is drawn (canvas-wide)
    lay = Layout.from_json(json.dumps(doc([{"description": "a", "regions": [ok]}])))
    assert lay.rasterize(8, 8).all()


@pytest.mark.parametrize("fmt", ["annos", "annotations"])
def test_importer_canvas_too_big_for_a_float_is_a_layout_error(fmt):
    d = {"caption": "", "width": 10**400, "height": 64, fmt: []}
    with pytest.raises(LayoutError, match=r"'width' is an integer of 1329 bits, too large for a number"):
        Layout.from_json(d)


@pytest.mark.parametrize("d", [
    doc([{"description": "a", "weight": 10**400, "regions": [BOX]}]),
    doc([{"description": "a", "regions": [{"kind": "box", "box": [1, 1, 9, 10**400]}]}]),
    doc([{"description": "a", "regions": [{"kind": "polygon", "points": [[1, 1], [9, 1], [9, -10**400]]}]}]),
    {"caption": "", "width": 64, "height": 64, "annos": [{"caption": "a", "bbox": [0, 0, 10**400, 4]}]},
    {"caption": "", "width": 64, "height": 64, "annos": [{"caption": "a", "scribble": [1, 1, 10**400, 4]}]},
    {"caption": "", "width": 64, "height": 64, "annotations": [{"caption": "a", "box": [0, 0, 4, 10**400]}]},
])  # fmt: skip
def test_ints_too_big_for_a_float_are_named_not_printed(d):
    with pytest.raises(LayoutError, match=r"is an integer of 1329 bits, too large for a number") as e:
        Layout.from_json(d)
    assert len(str(e.value)) < 300  # the 400-digit number is not printed


# ------------------------------------------------------------------------------------- keyframes (layouts over time)

def timed(instances, **kw) -> dict:
    return doc(instances, version=2, **kw)


def big_mask_keyframes(n: int) -> dict:
    m = np.zeros((4096, 4096), dtype=bool)
    m[0, 0] = True
    rle = rle_encode(m)
    return timed([{"description": "wall", "regions": [],
                   "keyframes": [{"frame": f, "regions": [{"kind": "mask", "rle": rle}]} for f in range(n)]}])


def peak_mb(fn) -> tuple[float, BaseException | None]:
    """(peak traced allocation in MB, the exception ``fn`` raised) — numpy and Python allocations both count."""
    import tracemalloc

    tracemalloc.start()
    raised = None
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - reported to the caller, which asserts on it
        raised = e
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return peak, raised


def test_keyframe_masks_count_in_the_mask_budget_before_they_are_decoded():
    for n in (150, 300):  # 15-30 KB of JSON that decoded 2.4 GB, or ended in a MemoryError
        text = json.dumps(big_mask_keyframes(n))
        peak, e = peak_mb(lambda t=text: Layout.from_json(t))
        assert isinstance(e, LayoutError), repr(e)
        assert str(e).startswith('instance 1 ("wall"): keyframes[4] (frame 4) regions[0] (mask): the number of mask '
                                 "pixels in the layout (with this one) is 83886080; at most 67108864")
        assert peak < 150, peak  # 4 masks of 16 MB decoded at most, never the 150th
    assert len(Layout.from_json(big_mask_keyframes(4)).instances[0].keyframes) == 4  # at the limit: valid


def test_keyframe_regions_count_per_keyframe_and_in_the_layout_totals():
    kf = lambda f, regions: {"frame": f, "regions": regions}  # noqa: E731
    # 3,000 canvas-sized boxes on one keyframe: the per-instance limit holds for each keyframe's regions
    wall = {"kind": "box", "box": [0, 0, 512, 512]}
    peak, e = peak_mb(lambda: Layout.from_json(json.dumps(timed([{"description": "a", "regions": [],
                                                                   "keyframes": [kf(0, [wall] * 3000)]}]))))
    assert isinstance(e, LayoutError) and str(e).startswith(
        "instance 1 (\"a\"): keyframes[0] (frame 0): the number of 'regions' is 3000; at most 16 allowed"), repr(e)
    # keyframe regions have their own layout-wide total (a track is one region per frame), counted before decoding
    many = [{"description": f"k{i}", "regions": [], "keyframes": [kf(f, [BOX] * 13) for f in range(1024)]}
            for i in range(5)]  # 5 x 1,024 x 13 = 66,560 keyframe regions
    assert ('instance 5 ("k4"): keyframes[945] (frame 945): the number of keyframe regions in the layout (with this '
            f"one) is 65546; at most {L.MAX_KEYFRAME_REGIONS}") in err(timed(many))
    full = timed([{"description": f"k{i}", "regions": [BOX] * 4,
                   "keyframes": [kf(f, [BOX]) for f in range(1024)]} for i in range(64)])
    lay = Layout.from_json(json.dumps(full))  # every importable track (64 objects x 1,024 frames) and 256 static
    assert sum(len(regs) for i in lay.instances for _, regs in i.keyframes) == L.MAX_KEYFRAME_REGIONS
    # points and RLE length count over keyframes too
    scr = {"kind": "scribble", "points": [[k % 500, k % 400] for k in range(1000)]}
    assert ("keyframes[2] (frame 2) regions[0] (scribble): the number of points in the layout (with this one) is "
            "3000; at most 2048") in err(timed([{"description": "p", "regions": [],
                                                  "keyframes": [kf(f, [scr]) for f in range(3)]}]))
    rle = {"kind": "mask", "rle": {"size": [1000, 100], "counts": [1] * 100_000}}
    assert ("keyframes[2] (frame 2) regions[0] (mask): the length of all RLE counts in the layout (with this one) is "
            "300000; at most 262144") in err(timed([{"description": "r", "regions": [],
                                                      "keyframes": [kf(f, [rle]) for f in range(3)]}]))


def test_validate_counts_keyframe_regions_of_layouts_built_in_code():
    box = Region("box", box=(0, 0, 5, 5))
    with pytest.raises(LayoutError, match=r"keyframes\[0\] \(frame 0\): the number of 'regions' is 17; at most 16"):
        Layout(64, 64, instances=[Instance("a", keyframes=[(0, [box] * 17)])]).validate()
    with pytest.raises(LayoutError, match=r"instance 5 \(\"b\"\): keyframes\[0\] \(frame 0\): the number of "
                                          r"keyframe regions in the layout \(with this one\) is 65552; at most 65536"):
        Layout(64, 64, instances=[Instance("b", keyframes=[(f, [box] * 16) for f in range(1024)])] * 5).validate()
    mask = np.ones((4096, 4096), bool)
    with pytest.raises(LayoutError, match=r"keyframes\[4\] \(frame 4\) regions\[0\] \(mask\): the number of mask "
                                          r"pixels in the layout"):
        Layout(64, 64, instances=[Instance("m", keyframes=[(f, [Region("mask", mask=mask)]) for f in range(5)])
                                  ]).validate()
