"""Per-step cost of a layout over time: a 16-frame CFG step with a moving layout vs the same step with a static one.

Both runs have the same batch (16 frames x cond/uncond = 32 rows, ``cond_or_uncond = [1, 0]``), the same instances
and the same patched model; only the layout differs (every instance keyframed and moving on every frame vs the same
boxes on every frame). The per-frame grounding is built once per run (timed separately, "once"); a step only gathers
each row's frame.

- InstanceDiffusion: ComfyUI's real-size SD1.5 UNet (860 M, random weights) + a full-size random adapter, patched
  by the Apply node; one step = ``BaseModel.apply_model`` on the 32 rows.
- IFAdapter: the 16 patched attn2 layers at SDXL's real widths (1280, 20 heads, official-size processors, random
  weights), i.e. exactly the work the patch adds to a step, driven through the pack's ``IFAdapterLayer`` objects on
  query rows of the real token grid. (A real-size SDXL UNet in fp32 needs ~10 GB; the rest of the step is the same
  for both layouts, so the ratio over the whole step is smaller than the ratio printed here.)

Configurations are interleaved round by round; medians are printed side by side.
``--paths crop,union`` adds the previous IFAdapter processor path (every instance on the union of all rows' boxes)
as extra configurations in the same rounds, with the largest difference between the paths' outputs.
Run: ``python benchmarks/bench_video_layout.py [--size 128] [--frames 16] [--rounds 3] [--instances 4]
[--only ifadapter] [--paths crop,union]``
"""
from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import comfy_env  # noqa: E402
from bench_ifadapter import official_size_processors  # noqa: E402


def layouts(n: int, size: int, frames: int) -> tuple[dict, dict]:
    """(static, moving) layout dicts with ``n`` box instances; the moving one has a keyframe per frame."""
    static, moving = [], []
    w = size / 6
    for i in range(n):
        x, y = (i % 4) * size / 5, (i // 4) * size / 5
        static.append({"description": f"object number {i}", "regions": [{"kind": "box", "box": [x, y, x + w, y + w]}]})
        kfs = []
        for f in range(frames):
            dx = (size - w - x) * f / max(frames - 1, 1)
            kfs.append({"frame": f, "regions": [{"kind": "box", "box": [x + dx, y, x + dx + w, y + w]}]})
        moving.append({"description": f"object number {i}", "regions": [], "keyframes": kfs})
    head = {"format": "instance-layout", "width": size, "height": size}
    return ({**head, "version": 1, "instances": static},
            {**head, "version": 2, "frames": frames, "instances": moving})


def interleave(configs: dict, rounds: int) -> dict:
    for fn in configs.values():
        fn()  # warm-up: builds the per-run tables
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for k, fn in configs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_instancediffusion(env, args, static, moving) -> None:
    from bench_instancediffusion import build_sd15_unet, full_adapter, step_fn
    from comfy_testnodes.tiny_models import tiny_checkpoint

    from core.layout import Layout

    apply_cls = env.nodes.NODE_CLASS_MAPPINGS["IFAApplyInstanceDiffusion"]
    mod = sys.modules[apply_cls.__module__]
    unet, adapter, clip = build_sd15_unet(), full_adapter(mod), tiny_checkpoint("sd15")[1]
    rows = 2 * args.frames
    configs, once = {}, {}
    for name, lay in (("static layout", static), ("moving layout", moving)):
        m = apply_cls().apply(unet, adapter, clip, Layout.from_json(lay), 1.0, 1.0, "auto", True)[0]
        st = mod.find_state(m)
        t0 = time.perf_counter()
        table = st.tokens(torch.device("cpu"), torch.float32)  # every distinct frame (null row + one per frame)
        once[name] = (time.perf_counter() - t0, st.position_net_runs, table.shape[0] - 1)
        configs[name] = step_fn(m, args.size, rows=rows)
    # the step function's transformer_options carry cond_or_uncond [1, 0]: 16 uncond rows, then 16 cond rows
    med = interleave(configs, args.rounds)
    ref = med["static layout"]
    print(f"\nInstanceDiffusion, SD1.5 UNet step, {args.frames} frames x CFG = {rows} rows at {args.size}² "
          f"(latent {args.size // 8}²), {args.instances} instances, median of {args.rounds}:")
    print(f"{'layout':<16}{'step s':>9}{'ratio':>8}{'grounding once s':>18}{'position-net passes':>21}{'rows':>6}")
    for k, t in med.items():
        print(f"{k:<16}{t:>9.3f}{t / ref:>8.3f}{once[k][0]:>18.2f}{once[k][1]:>21}{once[k][2]:>6}")


def bench_ifadapter(env, args, static, moving) -> None:
    ifa = sys.modules[env.nodes.NODE_CLASS_MAPPINGS["IFAApplyIFAdapter"].__module__]  # the pack's nodes.ifadapter
    pack = ifa.__name__.rsplit(".", 2)[0]
    IFAdapter = importlib.import_module(f"{pack}.core.ifadapter").IFAdapter
    Layout = importlib.import_module(f"{pack}.core.layout").Layout
    FramesRuntime = importlib.import_module(f"{pack}.core.ifadapter.frames").FramesRuntime
    runtime_mod = importlib.import_module(f"{pack}.core.ifadapter.runtime")
    FrameTable = importlib.import_module(f"{pack}.nodes.frames").FrameTable

    torch.manual_seed(0)
    adapter = official_size_processors(IFAdapter)

    n = args.instances
    hidden = torch.randn(n, 3, 77, 2048) * 0.5
    eot, mask = torch.randn(n, 2048) * 0.5, torch.zeros(n, 77, dtype=torch.bool)
    mask[:, 1:6] = True
    lat = args.size // 8
    side = math.ceil(math.ceil(lat / 2) / 2)  # latent/4: the grid of IFAdapter's layers
    grid = (side, side)
    rows = 2 * args.frames
    q = torch.randn(rows, grid[0] * grid[1], 1280) * 0.5
    opts = {"cond_or_uncond": [1, 0], "sigmas": torch.full((rows,), 5.0),
            "original_shape": [rows, 4, lat, lat], "activations_shape": [rows, 1280, *grid]}
    configs, once, first_layer = {}, {}, {}
    cases = [(f"{name}" + ("" if path == "crop" else f" ({path})"), lay, path)
             for path in args.paths.split(",") for name, lay in (("static layout", static), ("moving layout", moving))]
    for name, lay, path in cases:
        layout = Layout.from_json(lay)
        t0 = time.perf_counter()
        if layout.timed:
            tokens = ifa.EncodeAppearanceTokens._encode_frames(adapter, layout, [i.description for i in layout.active()],
                                                           hidden, eot, mask)
            runtime, frames = FramesRuntime(adapter, tokens), FrameTable(tokens.index, tokens.covered, "bench")
        else:
            boxes = layout.boxes_normalized()
            with torch.no_grad():
                cond = adapter.encode_instances(hidden, mask, eot, boxes)
                uncond = adapter.encode_uncond(boxes)
            runtime = runtime_mod.IFAdapterRuntime(adapter, runtime_mod.InstanceTokens(cond, uncond, boxes))
            frames = None
        runtime.impl = path
        always_on = ifa.StepWindow(0.0, 1.0, "ratio", 1e9, 0.0)
        layers = [ifa.IFAdapterLayer(runtime, key, always_on, 1.0, frames) for key in ifa.IFADAPTER_KEYS]
        for layer in layers:  # K/V projections and cells: once per run
            layer(q, q, opts)
        once[name] = time.perf_counter() - t0

        def step(layers=layers):
            with torch.no_grad():
                for layer in layers:
                    layer(q, q, opts)

        configs[name] = step
        first_layer[name] = layers[0]
    outs = {}
    for name in first_layer:  # the same inputs through every path: the largest difference
        with torch.no_grad():
            outs[name] = first_layer[name](q, q, opts)
    med = interleave(configs, args.rounds)
    ref = med["static layout"]
    print(f"\nIFAdapter, the 16 patched SDXL attn2 layers (1280 wide) per step, {args.frames} frames x CFG = {rows} "
          f"rows, grid {grid[0]}x{grid[1]} ({args.size}²), {n} instances, median of {args.rounds}:")
    print(f"{'layout':<24}{'16 layers s':>12}{'ratio':>8}{'tokens + K/V + cells once s':>29}")
    for k, t in med.items():
        print(f"{k:<24}{t:>12.3f}{t / ref:>8.3f}{once[k]:>29.2f}")
    for k in med:
        if k.endswith(")"):
            base = k.split(" (")[0]
            ratio = med[k] / med[k.replace("moving", "static")]
            print(f"{k}: moving / static with this path {ratio:.3f}; max |{base} - {k}| (first layer) = "
                  f"{(outs[base] - outs[k]).abs().max().item():.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (latent = size/8)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--ifa-size", type=int, default=512, help="image side for the IFAdapter layers")
    ap.add_argument("--paths", default="crop", help="IFAdapter processor paths: crop (default), union (previous)")
    ap.add_argument("--only", choices=["both", "instancediffusion", "ifadapter"], default="both")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp(prefix="ifa_bench_")))
    print(f"ComfyUI {env.version}; fp32, CPU ({torch.get_num_threads()} threads)")
    if args.only in ("both", "instancediffusion"):
        static, moving = layouts(args.instances, args.size, args.frames)
        bench_instancediffusion(env, args, static, moving)
    if args.only in ("both", "ifadapter"):
        static, moving = layouts(args.instances, args.ifa_size, args.frames)
        size = args.size
        args.size = args.ifa_size
        bench_ifadapter(env, args, static, moving)
        args.size = size


if __name__ == "__main__":
    main()
