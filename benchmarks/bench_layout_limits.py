"""Worst-case layouts within the documented limits (docs/layout-format.md#limits), timed through what a graph does.

Each case is a layout JSON at 1024 x 1024 that passes validation with some limit at its maximum (or one that must
be refused). The work timed is what ComfyUI runs for Instance Layout + Layout Preview: parse and validate the JSON,
render the node's preview, render the Layout Preview, and write both PNGs as the nodes do. Each case runs in a fresh
interpreter so that its peak memory (RSS high-water mark) is its own; the input text is written to a file first.

Further cases time the other nodes that take a layout or its sources (issue 18): InstanceDiffusion's input
preparation (what Apply InstanceDiffusion and Layout Preview's instancediffusion_view run: ``from_layout``) at the
mask limits, and the video nodes (Layout at Frame on every frame, Layout Preview over Frames, Layout to Masks over
Frames, Layout from Box Tracks, Layout from Tracking) on layouts over the most frames and instances the limits admit.
The work column says which. Each child runs under a 6 GiB address-space cap and a 120 s timeout (as a server under a
memory cap would), so a case over them prints "killed" instead of taking the machine.

Budget (issue 8): under 2 s and under 500 MB of extra memory per case on a 2-core machine. Prints per case the
time, the peak extra memory and their ratios to the budget; refused cases print the time to the refusal and the
message.

    python benchmarks/bench_layout_limits.py [--size 1024] [--case NAME] [--no-reference]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

BUDGET_S, BUDGET_MB = 2.0, 500.0
CHILD_AS_BYTES, CHILD_TIMEOUT_S = 6 << 30, 120


def _layout(size: int, instances: list[dict], prompt: str = "") -> dict:
    return {"format": "instance-layout", "version": 1, "width": size, "height": size, "prompt": prompt,
            "instances": instances}


def _zigzag(size: int, n: int, offset: float = 0.0) -> list[list[float]]:
    """n points alternating between the top and the bottom edge, left to right: every edge crosses every row.
    As a polygon an even n has zero area (the triangles cancel), an odd n does not."""
    return [[offset + k * (size - offset) / (n - 1), 0 if k % 2 == 0 else size] for k in range(n)]


def cases(size: int) -> dict[str, tuple[dict | str, bool]]:
    """name -> (layout JSON or text, expected to be valid)."""
    import numpy as np

    from core import layout as L
    from core.rle import rle_encode

    full = {"kind": "box", "box": [0, 0, size, size]}
    out: dict[str, tuple[dict | str, bool]] = {}
    word = "w" * L.MAX_DESCRIPTION_CHARS  # one long word: the legend's worst case for wrapping
    out["max instances, max-length texts"] = (_layout(size, [
        {"description": word, "label": "l" * L.MAX_LABEL_CHARS, "regions": [full]} for _ in range(L.MAX_INSTANCES)
    ], prompt="p " * (L.MAX_PROMPT_CHARS // 2)), True)
    half = L.MAX_POINTS // 2
    out["max-points polygons (zigzag, every edge spans the canvas)"] = (_layout(size, [
        {"description": f"polygon {k}", "regions": [{"kind": "polygon", "points": _zigzag(size, half - 1, k)}]}
        for k in range(L.MAX_POINTS // L.MAX_POINTS_PER_REGION)]), True)
    out["max-points COCO polygons (imported, pycocotools' rule, zigzag)"] = (_layout(size, [
        {"description": f"polygon {k}", "regions": [{"kind": "polygon", "points": _zigzag(size, half - 1, k),
                                                     "fill": "coco"}]}
        for k in range(L.MAX_POINTS // L.MAX_POINTS_PER_REGION)]), True)
    for width in (4, 64, 2 * size):
        out[f"max-points scribbles (zigzag), width {width}"] = (_layout(size, [
            {"description": f"scribble {k}", "regions": [{"kind": "scribble", "points": _zigzag(size, half, k),
                                                          "width": width}]}
            for k in range(L.MAX_POINTS // L.MAX_POINTS_PER_REGION)]), True)
    per = L.MAX_REGIONS_PER_INSTANCE
    n_inst = L.MAX_REGIONS // per
    out["max regions: canvas-wide discs"] = (_layout(size, [
        {"description": f"points {k}", "regions": [{"kind": "point", "point": [size / 2, size / 2],
                                                    "width": size} for _ in range(per)]}
        for k in range(n_inst)]), True)
    out["max regions: canvas-wide boxes"] = (_layout(size, [
        {"description": f"boxes {k}", "regions": [full] * per} for k in range(n_inst)]), True)
    side = int(L.MAX_MASK_PIXELS ** 0.5)
    n_masks = L.MAX_MASK_PIXELS_TOTAL // L.MAX_MASK_PIXELS
    m = np.zeros((side, side), dtype=bool)
    yy, xx = np.mgrid[0:side, 0:side]
    m[((xx // 7 + yy // 5) % 3) == 0] = True  # a dense pattern: many runs in every column
    rle = rle_encode(m)
    keep = L.MAX_RLE_CHARS // n_masks
    if len(rle["counts"]) > keep:  # cut to the RLE budget: foreground in the first columns, then one zero run
        cols = max(1, side * keep // len(rle["counts"]) - 1)
        m[:, cols:] = False
        m[side // 2 :, side - 1] = True  # and a corner pixel, so the foreground spans the whole canvas
        rle = rle_encode(m)
    out[f"max mask pixels ({n_masks} masks of {side}x{side}) and RLE length"] = (_layout(size, [
        {"description": f"mask {k}", "regions": [{"kind": "mask", "rle": rle}]} for k in range(n_masks)]), True)
    # refused
    box = {"kind": "box", "box": [1, 1, 9, 9]}
    out["10,000 boxes (refused)"] = (_layout(size, [{"description": "x", "regions": [box]}] * 10_000), False)
    out["100 kB description (refused)"] = (_layout(size, [{"description": "y" * 100_000, "regions": [box]}]), False)
    out["1 MB description (refused)"] = (_layout(size, [{"description": "y" * 1_000_000, "regions": [box]}]), False)
    out["100,000-point polygon (refused)"] = (_layout(size, [
        {"description": "p", "regions": [{"kind": "polygon", "points": _zigzag(size, 100_000)}]}]), False)
    out["100,000-deep JSON (refused)"] = ('{"format": "instance-layout", "x": ' + "[" * 100_000 + "]" * 100_000
                                          + "}", False)
    return out


def _rle_mask(h: int, w: int, pattern: str) -> dict:
    import numpy as np

    from core.rle import rle_encode

    m = np.zeros((h, w), dtype=bool)
    if pattern == "full":
        m[1:, 1:] = True  # a few runs: ~200 bytes of RLE for 16 M pixels
    else:  # a disc with a hole
        yy, xx = np.ogrid[:h, :w]
        r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
        m[(r2 <= 0.9) & (r2 >= 0.1)] = True
    return rle_encode(m)


def more_cases(size: int) -> dict[str, tuple[dict | str, bool, str]]:
    """Issue 18: name -> (input JSON, expected valid, work) for InstanceDiffusion's input preparation and the video
    nodes."""
    from core import layout as L

    out: dict[str, tuple[dict | str, bool, str]] = {}
    full = _rle_mask(16384, 1024, "full")
    out["ID prep: one 16384x1024 mask (RLE ~200 bytes)"] = (
        {**_layout(size, [{"description": "m", "regions": [{"kind": "mask", "rle": full}]}])}, True, "id_prep")
    big = _rle_mask(4096, 4096, "disc")
    out["ID prep: 4 masks of 4096x4096 (the mask-pixel limit)"] = (_layout(size, [
        {"description": f"m{k}", "regions": [{"kind": "mask", "rle": big}]} for k in range(4)]), True, "id_prep")
    mid = _rle_mask(1024, 1024, "disc")
    out["ID prep: 30 masks of 1024x1024"] = (_layout(size, [
        {"description": f"m{k}", "regions": [{"kind": "mask", "rle": mid}]} for k in range(30)]), True, "id_prep")
    per = L.MAX_POINTS // 30 - 2
    out["ID prep: 30 zigzag polygons (points limit)"] = (_layout(size, [
        {"description": f"p{k}", "regions": [{"kind": "polygon", "points": _zigzag(size, per | 1, k)}]}
        for k in range(30)]), True, "id_prep")
    out["ID prep: 30 polygons on a 16384x16384 canvas"] = (_layout(16384, [
        {"description": f"p{k}", "regions": [{"kind": "polygon", "points": _zigzag(16384, 9, k)}]}
        for k in range(30)]), True, "id_prep")
    # a layout over the most frames: every instance a box keyframe on every frame (keyframe regions, not counted in
    # the region budget on main), so each frame differs
    n_frames, n_inst = L.MAX_FRAMES, L.MAX_INSTANCES
    timed = {"format": "instance-layout", "version": 2, "width": size, "height": size, "prompt": "", "frames": n_frames,
             "instances": [{"description": f"object {k} " + "w" * 200, "keyframes": [
                 {"frame": f, "regions": [{"kind": "box", "box": [f % (size // 2), k, f % (size // 2) + size // 2,
                                                                  k + size // 2]}]} for f in range(n_frames)]}
                 for k in range(n_inst)]}
    out[f"at_frame: {n_inst} instances x {n_frames} keyframes"] = (timed, True, "at_frame")
    for work in ("preview_frames", "masks_frames"):  # 1,024 frames at 1024²: over the output bound, refused first
        out[f"{work}: {n_inst} instances x {n_frames} keyframes (refused)"] = (timed, False, work)
    short = {**timed, "frames": 16, "instances": [{**inst, "keyframes": inst["keyframes"][:16]}
                                                  for inst in timed["instances"]]}
    for work in ("preview_frames", "masks_frames"):  # the same layout over 16 frames: drawn
        out[f"{work}: {n_inst} instances x 16 keyframes"] = (short, True, work)
    boxes = [[f % 100, 0, f % 100 + 50, 50] for f in range(n_frames)]
    out[f"box_tracks: {n_inst} tracks x {n_frames} boxes"] = (
        {"width": size, "height": size, "tracks": [{"description": f"t{k}", "boxes": boxes} for k in range(n_inst)]},
        True, "box_tracks")
    out["box_tracks: 500 tracks x 1024 boxes (refused)"] = (
        {"width": size, "height": size, "tracks": [{"description": "t", "boxes": boxes}] * 500}, False,
        "box_tracks")
    out["box_tracks: 40 MB JSON text (refused)"] = (
        '{"width": 64, "height": 64, "tracks": [' + ",".join(['{"description": "t", "boxes": [[0, 0, 5, 5]]}']
                                                             * 900_000) + "]}", False, "box_tracks")
    entry = [[f % 100, 0, f % 100 + 50, 50, size, size] for f in range(n_frames)]
    out[f"tracking: {n_inst} objects x {n_frames} frames"] = (
        {"car": {str(k): entry for k in range(n_inst)}}, True, "tracking")
    out["tracking: 1,000 objects x 1024 frames (refused)"] = (
        {"car": {str(k): entry for k in range(1_000)}}, False, "tracking")
    return out


def run_work(path: str, work: str) -> dict:
    """In this (fresh) process: the node work ``work`` (see :func:`more_cases`) on the JSON in ``path``."""
    import torch

    from core.layout import Layout, LayoutError
    from core.layout.timeline import at_frame, frame_count

    with open(path, encoding="utf-8") as f:
        text = f.read()
    if work == "tracking":  # a TRACKING dict arrives as an object (ComfyUI parsed the prompt): not timed
        text = json.loads(text)
    base = _reset_peak_rss()
    t, cpu = time.perf_counter(), time.process_time()
    try:
        if work == "box_tracks":
            from core.layout.tracks import from_box_tracks_json

            from_box_tracks_json(text)
        elif work == "tracking":
            from core.layout.tracks import from_tracking

            from_tracking(text)
        else:
            lay = Layout.from_json(text).validate()
            if work == "id_prep":  # Apply InstanceDiffusion / instancediffusion_view: from_layout
                from core.instancediffusion.inputs import EMBED_DIM, from_layout

                from_layout(lay, torch.zeros(len(lay.active()), EMBED_DIM), preset="masks")
            elif work == "at_frame":  # Layout at Frame: one node run resolves one frame (here the middle one)
                at_frame(lay, frame_count(lay) // 2)
            elif work == "preview_frames":  # nodes/video.py Layout Preview over Frames (core/frame_outputs.py)
                from core.frame_outputs import preview_frames

                preview_frames(lay, frame_count(lay), opacity=0.45, legend=True)
            elif work == "masks_frames":  # Layout to Masks over Frames, instance 0 (every instance), canvas size
                from core.frame_outputs import mask_frames

                mask_frames(lay, 0, frame_count(lay), lay.height, lay.width)
        result = "ok"
    except LayoutError as e:
        result = f"refused: {str(e)[:150]}"
    except MemoryError:
        result = "MemoryError (over the 6 GiB cap)"
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    return {"s": dt, "cpu": dcpu, "mb": (_peak_rss() - base) / 1024.0, "result": result}


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_AS_BYTES, CHILD_AS_BYTES))


def run_case(path: str) -> dict:
    """In this (fresh) process: the Instance Layout + Layout Preview work on the JSON in ``path``."""
    import numpy as np
    import torch
    from PIL import Image

    from core.layout import Layout, LayoutError
    from core.render import render_layout, to_comfy_image

    with open(path, encoding="utf-8") as f:
        text = f.read()
    base = _reset_peak_rss()

    def png(img: torch.Tensor) -> int:  # what nodes.common.save_preview writes
        arr = (img[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
        return buf.tell()

    t, cpu = time.perf_counter(), time.process_time()
    try:
        lay = Layout.from_json(text).validate()  # Instance Layout
        png(to_comfy_image(render_layout(lay)))
        png(to_comfy_image(render_layout(lay, opacity=0.45, legend=True)))  # Layout Preview
        result = "ok"
    except LayoutError as e:
        result = f"refused: {str(e)[:150]}"
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    return {"s": dt, "cpu": dcpu, "mb": (_peak_rss() - base) / 1024.0, "result": result}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _reset_peak_rss() -> int:
    """Reset the RSS high-water mark (Linux: clear_refs 5) and return the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmRSS")
    except OSError:  # not Linux: fall back to the process high-water mark so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss() -> int:
    try:
        return _status_kb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def vs_reference(size: int) -> None:
    """Rasterisation alone, side by side with the per-cell rule it replaced (tests/core/raster_reference.py, one
    full-grid pass per edge or segment), on 200-point shapes at size x size; the cells are compared too."""
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "tests", "core"))
    from raster_reference import reference_rasterize

    from core import raster
    from core.layout import Instance, Layout, Region

    rng = np.random.default_rng(0)
    pts = [tuple(p) for p in rng.uniform(0, size, (200, 2))]
    print(f"\nRasterisation at {size}x{size} grid, new vs the per-cell reference (same cells):")
    print(f"{'shape':<40} {'reference s':>11} {'new s':>8} {'speed-up':>9}")
    for name, region in (("polygon, 200 random points", Region("polygon", points=pts)),
                         ("scribble, 200 random points, width 8", Region("scribble", points=pts, width=8)),
                         ("scribble, 200 random points, width 200", Region("scribble", points=pts, width=200))):
        lay = Layout(size, size, instances=[Instance("x", regions=[region])])
        t = time.process_time()
        ref = reference_rasterize(lay, size, size)
        t_ref = time.process_time() - t
        raster._CACHE.clear()
        t = time.process_time()
        new = lay.rasterize(size, size).numpy().astype(bool)
        t_new = time.process_time() - t
        assert np.array_equal(ref, new), name
        print(f"{name:<40} {t_ref:>11.3f} {t_new:>8.3f} {t_ref / t_new:>8.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--case", default="", help="run only cases whose name contains this")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="layout", help=argparse.SUPPRESS)
    ap.add_argument("--no-reference", action="store_true", help="skip the side-by-side with the per-cell rule")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child) if args.work == "layout" else run_work(args.child, args.work)))
        return
    print(f"Instance Layout + Layout Preview at {args.size}x{args.size}; budget {BUDGET_S:.0f} s, {BUDGET_MB:.0f} MB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time grows with the load, CPU time "
          "much less)")
    print(f"{'case':<62} {'work':<14} {'wall s':>7} {'cpu s':>7} {'x budget':>8} {'peak MB':>8} {'x budget':>8}  "
          "result")
    all_cases = {name: (doc, valid, "layout") for name, (doc, valid) in cases(args.size).items()}
    all_cases.update(more_cases(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (doc, valid, work) in all_cases.items():
            if args.case and args.case not in name:
                continue
            path = os.path.join(tmp, "layout.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(doc if isinstance(doc, str) else json.dumps(doc))
            kb = os.path.getsize(path) / 1024
            try:
                proc = subprocess.run([sys.executable, __file__, "--child", path, "--work", work],
                                      capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                                      preexec_fn=_limit_child)
                res = json.loads(proc.stdout) if proc.returncode == 0 else None
            except subprocess.TimeoutExpired:
                proc, res = None, None
            if res is None:
                why = f"killed after {CHILD_TIMEOUT_S} s" if proc is None else \
                    f"died (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1][:80] if proc.stderr else ''}"
                print(f"{name[:62]:<62} {work:<14} {why} ({kb:.0f} kB JSON)  <-- OVER")
                continue
            flag = "" if (res["result"] == "ok") == valid else "  <-- UNEXPECTED"
            print(f"{name[:62]:<62} {work:<14} {res['s']:>7.3f} {res['cpu']:>7.3f} {res['cpu'] / BUDGET_S:>8.2f} "
                  f"{res['mb']:>8.1f} {res['mb'] / BUDGET_MB:>8.2f}  {res['result'][:90]} ({kb:.0f} kB JSON){flag}")
    if not args.no_reference and not args.case:
        vs_reference(args.size)


if __name__ == "__main__":
    main()
