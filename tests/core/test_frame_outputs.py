"""The video nodes' outputs (core/frame_outputs.py): the same pictures and masks as drawing each frame on its own,
refused before drawing past the documented value budget, and drawn into one preallocated output (peak memory about
the output itself, measured in a child process)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.frame_outputs import MAX_OUTPUT_VALUES, mask_frames, preview_frames
from core.layout import Layout, LayoutError
from core.layout.timeline import at_frame
from core.render import render_layout

ROOT = Path(__file__).resolve().parents[2]
MOVING = {
    "format": "instance-layout", "version": 2, "width": 200, "height": 120, "prompt": "a road", "frames": 6,
    "instances": [
        {"description": "a red car", "regions": [], "keyframes": [
            {"frame": 0, "regions": [{"kind": "box", "box": [0, 10, 60, 50]}]},
            {"frame": 5, "regions": [{"kind": "box", "box": [120, 60, 200, 110]}]}]},
        {"description": "a bird " + "with long feathers " * 12, "frames": [2, 3],
         "regions": [{"kind": "point", "point": [150, 20], "width": 12}]},
        {"description": "a sign", "enabled": False, "regions": [{"kind": "box", "box": [5, 5, 20, 20]}]},
    ],
}


def test_masks_over_frames_are_each_frame_drawn_on_its_own():
    lay = Layout.from_json(json.dumps(MOVING))
    for instance in (0, 1, 2, 3):
        masks, bg = mask_frames(lay, instance, 8, 30, 50)
        assert masks.shape == bg.shape == (8, 30, 50) and masks.dtype == bg.dtype == torch.float32
        for f in range(8):
            ref = at_frame(lay, f)
            torch.testing.assert_close(bg[f], ref.background_mask(30, 50), rtol=0, atol=0)
            if instance == 0:
                want = ref.union_mask(30, 50)
            elif ref.instances[instance - 1].enabled:
                want = ref.rasterize(30, 50)[sum(i.enabled for i in ref.instances[:instance - 1])]
            else:
                want = torch.zeros(30, 50)
            torch.testing.assert_close(masks[f], want, rtol=0, atol=0)
    assert mask_frames(lay, 2, 8, 30, 50)[0][[0, 1, 4]].sum() == 0  # the bird is absent outside frames 2..3
    with pytest.raises(LayoutError, match="instance 4 does not exist; the layout has 3"):
        mask_frames(lay, 4, 2, 30, 50)


def test_preview_over_frames_is_each_frame_drawn_on_its_own():
    lay = Layout.from_json(json.dumps(MOVING))
    under = np.random.default_rng(0).random((3, 120, 200, 3), dtype=np.float32)
    for legend in (True, False):
        out = preview_frames(lay, 6, lambda f: under[min(f, 2)], opacity=0.3, legend=legend)
        refs = [render_layout(at_frame(lay, f), underlay=under[min(f, 2)], opacity=0.3, legend=legend)
                for f in range(6)]
        tallest = max(r.shape[0] for r in refs)
        assert out.shape == (6, tallest, 200, 3) and out.dtype == torch.float32
        if legend:  # the bird's legend lines make frames 2 and 3 taller; the others repeat their last row
            assert refs[2].shape[0] == tallest > refs[0].shape[0]
        for f, r in enumerate(refs):
            np.testing.assert_array_equal(out[f, : r.shape[0]].numpy(), r)
            np.testing.assert_array_equal(out[f, r.shape[0]:].numpy(), np.broadcast_to(r[-1:], out[f, r.shape[0]:].shape))


def test_over_budget_outputs_are_refused_before_drawing():
    one_box = {"format": "instance-layout", "version": 1, "width": 1024, "height": 1024,
               "instances": [{"description": "a cat", "regions": [{"kind": "box", "box": [0, 0, 100, 100]}]}]}
    lay = Layout.from_json(json.dumps(one_box))
    t0 = time.perf_counter()
    with pytest.raises(LayoutError) as e:
        mask_frames(lay, 0, 1, 16384, 16384)
    assert str(e.value) == ("Layout to Masks over Frames: 2 outputs of 1 masks of 16384x16384 would be 537 M values; "
                            "at most 268 M (1 GiB as float32): ask for fewer frames or a smaller size "
                            "(see docs/layout-format.md#limits)")
    with pytest.raises(LayoutError, match=r"^Layout Preview over Frames: 256 frames of 1024x1056 \(RGB\) would be "
                                          r"830 M values; at most 268 M \(1 GiB as float32\): draw fewer frames"):
        preview_frames(lay, 256)
    assert time.perf_counter() - t0 < 5  # refused from the sizes alone (generous for a loaded 2-core machine)
    masks, _ = mask_frames(lay, 0, 128, 1024, 1024)  # exactly at the budget: allowed
    assert 2 * masks.numel() == MAX_OUTPUT_VALUES


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from core.frame_outputs import mask_frames, preview_frames
from core.layout import Layout
lay = Layout.from_json(json.dumps({layout!r}))
preview_frames(lay, 1); mask_frames(lay, 1, 1, 8, 8)  # warm-up: imports, fonts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = {call}
dt = time.perf_counter() - t0
print(json.dumps({{"mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "s": dt,
                   "out_mb": sum(t.numel() * 4 for t in (out if isinstance(out, tuple) else (out,))) / 2**20}}))
"""


def child_peak(call: str) -> dict:
    layout = {"format": "instance-layout", "version": 2, "width": 1024, "height": 1024, "frames": 64, "instances": [
        {"description": "a cat", "regions": [], "keyframes": [
            {"frame": 0, "regions": [{"kind": "box", "box": [0, 0, 300, 300]}]},
            {"frame": 63, "regions": [{"kind": "box", "box": [700, 700, 1024, 1024]}]}]}]}
    code = CHILD.format(root=str(ROOT), layout=layout, call=call)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_frames_are_drawn_into_one_preallocated_output():
    """Peak memory over the output itself: one frame's drawing, not a list of frames joined at the end (before: 16
    preview frames at 1024 x 1024 cost twice the output and more)."""
    r = child_peak("preview_frames(lay, 16)")
    assert r["mb"] < r["out_mb"] + 100, r  # output 198 MB; one frame's drawing is ~30 MB
    r = child_peak("mask_frames(lay, 1, 48, 1024, 1024)")
    assert r["mb"] < r["out_mb"] + 60, r  # two outputs of 192 MB; one frame's union is 4-8 MB
