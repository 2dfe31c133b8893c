"""InstanceDiffusion cost on a real-size SD1.5 UNet: step time and peak memory, patched vs unpatched, side by side.

Builds ComfyUI's own SD1.5 UNet (``comfy.supported_models.SD15``, model_channels 320, 860 M params, random weights)
and a full-size random InstanceDiffusion adapter (368.8 M params: position net, 16 fusers 320/640/1280, ScaleU),
patches a clone with the pack's Apply node, and times one CFG step (cond + uncond rows in one UNet call, as
ComfyUI's KSampler batches them) through ``BaseModel.apply_model`` (the real UNet forward with the pack's
``middle_patch`` / ``output_block_patch``). Configurations are interleaved round by round so that machine load hits
them alike; the median per configuration is reported, and ratios are taken against the unpatched median of the
same run. Peak memory is the peak resident-set growth during the step (sampled every 2 ms; CPU only).

The grounding tokens are always 30 slots + 64 mask tokens (184), so the UNet-step cost does not depend on the
number of instances; the instance count only changes the once-per-run position-net pass (timed separately) and MIS.

Usage: ``python benchmarks/bench_instancediffusion.py [--size 512] [--rounds 3] [--mis-size 256]``
(a few minutes on 2 CPU cores at 512²).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import comfy_env  # noqa: E402


class PeakRSS:
    """Peak resident-set size growth (bytes) while the block runs, sampled by a thread."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = False

        def poll():
            while not self._stop:
                self.peak = max(self.peak, self.proc.memory_info().rss)
                time.sleep(self.interval)

        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.base


def build_sd15_unet():
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    from comfy_testnodes.tiny_models import _unet_config, randomize_

    cfg = _unet_config("sd15")
    cfg["model_channels"] = 320  # the real SD1.5 widths
    model = comfy.supported_models.SD15(cfg).get_model({}, "")
    randomize_(model.diffusion_model, 0)
    model.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def full_adapter(mod):
    """The pack's Adapter around a full-size random InstanceDiffusion (official widths)."""
    from core.instancediffusion import InstanceDiffusion

    torch.manual_seed(0)
    m = InstanceDiffusion()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("alpha_attn", "alpha_dense")):
                p.fill_(0.5)
            elif "scaleu" in name:
                p.normal_(0, 0.1)
            elif p.ndim >= 2:
                p.normal_(0, 0.02)
    return mod.Adapter(m, "random", "benchmark")


def layout(n: int, size: int, masks: bool):
    from core.layout import Layout

    inst = []
    for i in range(n):
        x, y = (i % 6) * size / 6, (i // 6) * size / 6
        w = size / 6
        region = {"kind": "polygon", "points": [[x, y], [x + w, y], [x + w, y + w], [x, y + w]]} if masks else \
            {"kind": "box", "box": [x, y, x + w, y + w]}
        inst.append({"description": f"object number {i}", "regions": [region]})
    return Layout.from_json({"format": "instance-layout", "version": 1, "width": size, "height": size,
                             "instances": inst})


def step_fn(patcher, size: int, rows: int = 2, mis_branches: int | None = None):
    """One UNet call of a CFG step: ``rows`` = 2 (uncond + cond) × branches, through BaseModel.apply_model."""
    lat = size // 8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, lat, lat, generator=g)
    ctx = torch.randn(rows, 77, 768, generator=g) * 0.5
    sigma = torch.full((rows,), 5.0)
    sched = torch.tensor([14.6, 5.0, 1.0, 0.0])
    base = patcher.model
    to = dict(patcher.model_options.get("transformer_options", {}))
    to.update({"cond_or_uncond": [1, 0], "sigmas": sigma, "sample_sigmas": sched})
    if mis_branches:
        to["ifa_id_mis"] = {"branches": list(range(mis_branches)), "per": 1}

    def run():
        with torch.no_grad():
            return base.apply_model(x, sigma, c_crossattn=ctx, transformer_options=to)

    return run


def timed(fn) -> tuple[float, int]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
    return dt, mem.growth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (latent = size/8)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration (after one warm-up)")
    ap.add_argument("--mis-size", type=int, default=256, help="image side for the MIS measurement")
    ap.add_argument("--instances", default="1,4,10,30")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp(prefix="ifa_bench_")))
    apply_cls = env.nodes.NODE_CLASS_MAPPINGS["IFAApplyInstanceDiffusion"]
    mod = sys.modules[apply_cls.__module__]
    from comfy_testnodes.tiny_models import tiny_checkpoint

    t0 = time.time()
    unet = build_sd15_unet()
    adapter = full_adapter(mod)
    clip = tiny_checkpoint("sd15")[1]  # only encodes the instance descriptions (CLIP-L width 768)
    print(f"ComfyUI {env.version}; SD1.5 UNet {sum(p.numel() for p in unet.model.diffusion_model.parameters()) / 1e6:.0f} M "
          f"params + adapter {sum(p.numel() for p in adapter.module.parameters()) / 1e6:.1f} M, fp32, CPU "
          f"({torch.get_num_threads()} threads); built in {time.time() - t0:.0f}s")

    counts = [int(c) for c in args.instances.split(",")]
    configs = {"unpatched": step_fn(unet, args.size)}
    pn_time = {}
    for n in counts:
        m = apply_cls().apply(unet, adapter, clip, layout(n, args.size, masks=False), 1.0, 1.0, "auto", True)[0]
        configs[f"patched, {n} inst"] = step_fn(m, args.size)
        st = mod.find_state(m)
        t1 = time.perf_counter()
        st.tokens(torch.device("cpu"), torch.float32)  # the once-per-run position-net pass (boxes)
        pn_time[n] = time.perf_counter() - t1
    m_mask = apply_cls().apply(unet, adapter, clip, layout(counts[-1], args.size, masks=True), 1.0, 1.0, "auto",
                               True)[0]
    t1 = time.perf_counter()
    mod.find_state(m_mask).tokens(torch.device("cpu"), torch.float32)
    pn_mask = time.perf_counter() - t1

    for fn in configs.values():  # warm-up
        fn()
    times = {k: [] for k in configs}
    mems = {k: [] for k in configs}
    for _ in range(args.rounds):
        for k, fn in configs.items():
            dt, mem = timed(fn)
            times[k].append(dt)
            mems[k].append(mem)
    ref = statistics.median(times["unpatched"])
    print(f"\nOne CFG step (uncond + cond rows, one UNet call) at {args.size}x{args.size} "
          f"(latent {args.size // 8}²), median of {args.rounds}:")
    print(f"{'configuration':<22}{'step s':>9}{'ratio':>8}{'peak RSS +MiB':>15}{'position net (once) s':>23}")
    for k in configs:
        med = statistics.median(times[k])
        n = int(k.split(", ")[1].split()[0]) if "," in k else None
        pn = f"{pn_time[n]:.2f}" if n is not None else "-"
        print(f"{k:<22}{med:>9.2f}{med / ref:>8.3f}{max(mems[k]) / 2**20:>15.0f}{pn:>23}")
    print(f"position net with {counts[-1]} mask instances (ConvNeXt on 30x512x512), once per run: {pn_mask:.2f}s")

    # MIS: the first int(mis·steps) steps run n+1 branches batched in one UNet call
    print(f"\nMIS at {args.mis_size}x{args.mis_size}: one UNet call with n+1 branches (x2 rows for CFG) vs the "
          "patched single-branch step")
    m4 = apply_cls().apply(unet, adapter, clip, layout(max(counts), args.mis_size, masks=False), 1.0, 1.0, "auto",
                           True)[0]
    single = step_fn(m4, args.mis_size)
    single()
    mis_rows = []
    for n in (1, 4):
        fn = step_fn(m4, args.mis_size, rows=2 * (n + 1), mis_branches=n + 1)
        fn()
        mis_rows.append((n, fn))
    t_single = statistics.median([timed(single)[0] for _ in range(args.rounds)])
    print(f"{'instances':<12}{'branch step s':>14}{'x single':>10}{'run cost, 50 steps, mis 0.36':>32}")
    for n, fn in mis_rows:
        t = statistics.median([timed(fn)[0] for _ in range(args.rounds)])
        k = int(50 * 0.36)
        run = (k * t + (50 - k) * t_single) / (50 * t_single)
        print(f"{n:<12}{t:>14.2f}{t / t_single:>10.2f}{run:>31.2f}x")


if __name__ == "__main__":
    main()
