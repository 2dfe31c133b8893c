"""A layout over time at the format's limits through IFAdapter in a real ComfyUI: 10 instances moving over 1,024
distinct frames, Encode Appearance Tokens -> Apply IFAdapter -> KSampler on the first two frames.

The pack promises that any layout the limits admit costs < 500 MB extra on every node that takes it. Per-frame
tokens are built only for the frames a UNet call uses (the box embedding is added after the resampler), so this
graph must stay far below that; before, Encode Appearance Tokens asked for 19.4 GB in one allocation and the cached
K/V of all frames would have needed ~41 GB at the official size. The address space is capped a few GB above the
process's size while the graph runs, so an over-allocation fails the test instead of exhausting the machine.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

import pytest
from graphs import add_ifadapter, base_graph

pytestmark = pytest.mark.integration

W, H, FRAMES, N = 256, 192, 1024, 10
EXTRA_BUDGET = 500 * 2**20  # README: < 500 MB extra on every node that takes a layout


def long_layout(frames: int = FRAMES) -> dict:
    instances = []
    for i in range(N):
        x, y = 4 + 20 * i, 4 + 6 * (i % 5)
        instances.append({"description": f"object number {i + 1}", "regions": [], "keyframes": [
            {"frame": 0, "regions": [{"kind": "box", "box": [x, y, x + 40, y + 50]}]},
            {"frame": frames - 1, "regions": [{"kind": "box", "box": [x + 10, y + 120, x + 50, y + 140]}]}]})
    return {"format": "instance-layout", "version": 2, "width": W, "height": H, "prompt": "objects",
            "frames": frames, "instances": instances}


@pytest.fixture(scope="module")
def ifa_file(comfy):
    write = sys.modules[comfy.node_class("IFATest_SaveLatentTensor").__module__].write_tiny_ifadapter
    write(str(comfy.models_dir / "ifadapter" / "tiny_ifa_long.safetensors"), seed=1, alpha=0.5)
    return "tiny_ifa_long.safetensors"


def graph(layout: dict, tag: str) -> dict:
    g = base_graph("sdxl", W, H, steps=1, seed=5, positive="a street", negative="blurry", batch=2, save=False)
    add_ifadapter(g, json.dumps(layout), W, H, "tiny_ifa_long.safetensors", tag)
    g["lat"] = {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": tag}}
    return g


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def run_measured(comfy, g: dict) -> int:
    """Run ``g`` with the address space capped at +4 GiB; returns the peak RSS above the RSS before the run."""
    base = peak = _rss()
    stop = False

    def sample():
        nonlocal peak
        while not stop:
            peak = max(peak, _rss())
            time.sleep(0.002)

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + 4 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        comfy.run(g)
    finally:
        stop = True
        t.join()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return max(peak, _rss()) - base


def test_1024_moving_frames_x_10_instances_stay_within_the_memory_promise(comfy, ifa_file):
    warm = long_layout(frames=2)  # loads the checkpoint, CLIP and adapter first, so the measure sees the layout
    comfy.run(graph(warm, "ifa_long_warm"))
    extra = run_measured(comfy, graph(long_layout(), "ifa_long"))
    assert extra < EXTRA_BUDGET, f"{extra / 2**20:.0f} MB extra"

    model = sys.modules[comfy.node_class("IFATest_CaptureModel").__module__].CAPTURED["ifa_long"]
    layers = [c for p in model.model_options["transformer_options"]["patches_replace"]["attn2"].values()
              for c in p.contributions]
    runtime = layers[0].runtime
    assert runtime.tokens.distinct == FRAMES and len(runtime.tokens) == N
    assert tuple(runtime.tokens.cond.shape[:2]) == (N, 13)  # descriptions once, not frames x instances
    # only the sampled frames (0 and 1) were ever built, and the caches stay within their budget
    built = {k[-1] for k in runtime.cache.keys()}
    assert built == {(0, 1)}, built
    assert runtime.cache.bytes <= runtime.cache.budget
    assert {k[2] for k in runtime._geometry} == {(0, 1, 0, 1)}
