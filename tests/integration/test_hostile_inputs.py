"""Issue 18 items 2 and 6 through ComfyUI's executor: limits are checked before the work (a 40 MB json_text, 10,000
tracks, a TRACKING dict past the instance limit), InstanceDiffusion's input preparation at the mask limits stays
cheap, and huge or non-finite numbers are LayoutErrors naming the field, never raw OverflowError / ValueError.

Time and memory are checked loosely (a loaded 2-core machine) but far below what the same graphs cost before: the
40 MB text took 31.7 s and +3.0 GB, the 16384 x 1024 mask 52 s and +2.3 GB."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from comfy_env import GraphError

pytestmark = pytest.mark.integration


def _rss_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def measured(fn):
    """(seconds, peak extra MB of this process's RSS, result or exception) of ``fn()`` (Linux: the RSS high-water
    mark is reset first)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_kb("VmRSS")
    t = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 - returned for the caller's pytest.raises-style checks
        res = e
    return time.perf_counter() - t, (_rss_kb("VmHWM") - base) / 1024, res


def _preview(layout_ref, **kw):
    return {"class_type": "IFALayoutPreview", "inputs": {"layout": layout_ref, "opacity": 0.5, "legend": True, **kw}}


def test_40mb_json_text_is_refused_before_it_is_read(comfy):
    """Layout from JSON refuses json_text over 16,777,216 characters at validation, as Instance Layout does, instead
    of parsing 40 MB of JSON first."""
    doc = {"format": "instance-layout", "version": 1, "width": 64, "height": 64,
           "instances": [{"description": "a", "regions": [{"kind": "box", "box": [1, 1, 9, 9]}]}],
           "notes": [0.5] * 10_000_000}
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) > 40_000_000
    g = {"txt": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": text, "file": "(none)"}},
         "p": _preview(["txt", 0])}
    s, mb, res = measured(lambda: comfy.run(g))
    assert isinstance(res, GraphError)
    assert f"Layout from JSON: the length of json_text in characters is {len(text)}; at most 16777216" in str(res)
    # the harness itself copies the 40 MB prompt a few times; reading it as JSON took +3 GB
    assert s < 10 and mb < 600, (s, mb)


def test_box_tracks_and_tracking_are_counted_before_they_are_built(comfy):
    boxes = [[f % 50, 0, f % 50 + 10, 10] for f in range(1024)]
    tracks = {"width": 64, "height": 64, "tracks": [{"description": "t", "boxes": boxes}] * 200}
    g = {"bt": {"class_type": "IFALayoutFromBoxTracks", "inputs": {"json_text": json.dumps(tracks),
                                                                    "file": "(none)"}},
         "p": _preview(["bt", 0])}
    s, _, res = measured(lambda: comfy.run(g))
    assert isinstance(res, GraphError) and "box tracks: the number of 'tracks' (one instance each) is 200; at " \
        "most 64" in str(res), str(res)[-700:]
    assert s < 5, s  # building 200 tracks of 1,024 boxes first took far longer
    long_text = " " * (16 << 20) + json.dumps(tracks)  # over the text limit: refused at validation
    g["bt"]["inputs"]["json_text"] = long_text
    s, _, res = measured(lambda: comfy.run(g))
    assert isinstance(res, GraphError) and "box tracks: the length of json_text in characters is" in str(res), res
    tracking = {"car": {str(k): [[f % 50, 0, f % 50 + 10, 10, 64, 64] for f in range(1024)] for k in range(1000)}}
    g = {"tr": {"class_type": "IFALayoutFromTracking", "inputs": {"tracking": tracking, "captions": "",
                                                                   "prompt": ""}},
         "p": _preview(["tr", 0])}
    t = time.perf_counter()
    json.loads(json.dumps(g))  # what the harness (and a server reading the prompt) spends on a 25 MB prompt anyway
    copy_s = time.perf_counter() - t
    s, _, res = measured(lambda: comfy.run(g))
    assert isinstance(res, GraphError)
    assert "TRACKING: the number of tracked objects (one instance each) is 1000; at most 64" in str(res), res
    assert s - copy_s < 5, (s, copy_s)  # the node itself refuses in milliseconds


@pytest.mark.parametrize(("entry", "message"), [
    ([0, 0, 5, 5, float("nan"), 64], r"TRACKING\['car'\]\['1'\] frame 0: frame W is nan; expected a finite number"),
    ([0, 0, 5, 5, 64, float("inf")], r"TRACKING\['car'\]\['1'\] frame 0: frame H is inf"),
    ([0, 0, 10**400, 5, 64, 64], r"TRACKING\['car'\]\['1'\] frame 0 x1 is an integer of 1329 bits"),
])  # fmt: skip
def test_tracking_numbers_are_named_layout_errors(comfy, entry, message):
    g = {"tr": {"class_type": "IFALayoutFromTracking", "inputs": {"tracking": {"car": {"1": [entry]}},
                                                                   "captions": "", "prompt": ""}},
         "p": _preview(["tr", 0])}
    with pytest.raises(GraphError, match=message) as e:
        comfy.run(g)
    assert "OverflowError" not in str(e.value) and "ValueError: cannot convert" not in str(e.value)


@pytest.mark.parametrize("kind", ["scribble", "point"])
def test_huge_stroke_width_is_refused_naming_the_field(comfy, kind):
    geo = {"points": [[1, 1], [50, 50]]} if kind == "scribble" else {"point": [5, 5]}
    lay = {"format": "instance-layout", "version": 1, "width": 512, "height": 512,
           "instances": [{"description": "a", "regions": [{"kind": kind, **geo, "width": 1e308}]}]}
    g = {"lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": 512, "height": 512,
                                                               "layout": json.dumps(lay)}},
         "p": _preview(["lay", 0])}
    with pytest.raises(GraphError, match=rf'instance 1 \("a"\): regions\[0\] \({kind}\) width is 1e\+308; expected a '
                                         r"stroke width / radius in pixels, > 0 and at most 32768") as e:
        comfy.run(g)
    assert "OverflowError" not in str(e.value)


def test_instancediffusion_view_of_a_16384x1024_mask_is_cheap(comfy):
    """Layout Preview's instancediffusion_view runs Apply InstanceDiffusion's input preparation: a 16384 x 1024 RLE
    mask of a few hundred bytes (52 s and +2.3 GB before) is prepared from its 512 x 512 reduction."""
    from core.rle import rle_encode

    m = np.zeros((16384, 1024), dtype=bool)
    m[1:, 1:] = True
    lay = {"format": "instance-layout", "version": 1, "width": 1024, "height": 1024,
           "instances": [{"description": "a", "regions": [{"kind": "mask", "rle": rle_encode(m)}]}]}
    g = {"lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": 1024, "height": 1024,
                                                               "layout": json.dumps(lay)}},
         "p": _preview(["lay", 0], instancediffusion_view="masks")}
    s, mb, res = measured(lambda: comfy.run(g))
    assert not isinstance(res, Exception), res
    assert res["p"]["images"]
    assert s < 15 and mb < 500, (s, mb)
