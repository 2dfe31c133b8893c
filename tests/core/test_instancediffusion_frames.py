"""InstanceDiffusion inputs of a layout over time (core/instancediffusion/frames.py): each distinct frame's row is
the static input of that frame (absent instances nulled), built only when asked for, so a 1,024-frame layout costs
what the sampled frames cost (peak memory measured in a child process)."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from core.instancediffusion import from_layout
from core.instancediffusion.frames import FrameInputs, frame_inputs
from core.layout import Layout
from core.layout.timeline import Timeline, frame_span

ROOT = Path(__file__).resolve().parents[2]


def moving(frames: int, instances: int = 2) -> dict:
    insts = [{"description": f"object {i}", "regions": [], "keyframes": [
        {"frame": 0, "regions": [{"kind": "box", "box": [10 * i, 0, 10 * i + 40, 40]}]},
        {"frame": frames - 1, "regions": [{"kind": "box", "box": [300, 5 * i, 400, 5 * i + 60]}]}]}
        for i in range(instances)]
    insts.append({"description": "a bird", "frames": [1, 2], "regions": [
        {"kind": "polygon", "points": [[100, 100], [200, 120], [150, 200]]}]})
    return {"format": "instance-layout", "version": 2, "width": 400, "height": 300, "frames": frames,
            "instances": insts}


def test_each_row_is_the_static_input_of_its_frame():
    lay = Layout.from_json(json.dumps(moving(6)))
    tl = Timeline(lay, frame_span(lay))
    emb = torch.randn(3, 768, generator=torch.Generator().manual_seed(0))
    lazy = FrameInputs(tl, emb)
    assert len(lazy) == 6 and lazy.preset == "masks"  # "auto" resolved on frame 0 (the bird's polygon is a mask)
    full = frame_inputs(tl, emb)
    for u in (4, 0, 2):
        row = lazy.rows([u])
        ref = from_layout(tl.layouts[u], emb, preset="masks")
        for k, v in row.items():
            assert torch.equal(v, full[k] if k == "drop" else full[k][u:u + 1]), k
            if k != "drop" and bool(tl.visible[u, 2]):
                assert torch.equal(v, ref[k]), k
        assert bool(row["masks"][0, 2]) == bool(tl.visible[u, 2])  # the bird's slot is null where it is absent
    two = lazy.rows([3, 1])
    assert torch.equal(two["boxes"], torch.cat([full["boxes"][3:4], full["boxes"][1:2]]))


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
from core.instancediffusion.frames import FrameInputs
from core.layout import Layout
from core.layout.timeline import Timeline, frame_span
lay = Layout.from_json(json.dumps({layout!r}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
tl = Timeline(lay, frame_span(lay))
rows = FrameInputs(tl, torch.zeros(len(lay.active()), 768)).rows([0])
print(json.dumps({{"distinct": len(tl), "rows": int(rows["masks"].shape[0]), "s": time.perf_counter() - t0,
                   "mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}}))
"""


def test_a_1024_frame_layout_builds_only_the_frames_asked_for():
    """Before: every distinct frame's ~32 MB input was built at Apply time (16 frames +924 MB; 1,024 frames a
    MemoryError)."""
    code = CHILD.format(root=str(ROOT), layout=moving(1024, instances=29))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["distinct"] == 1024 and r["rows"] == 1
    assert r["mb"] < 500, r
    assert r["s"] < 60, r  # generous for a loaded 2-core machine (the Timeline itself resolves all 1,024 frames)
