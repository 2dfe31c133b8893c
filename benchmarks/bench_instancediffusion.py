"""InstanceDiffusion cost on a real-size SD1.5 UNet: step time, whole-run cost, peak memory and MIS, today's code
path and the new one side by side.

Builds ComfyUI's own SD1.5 UNet (``comfy.supported_models.SD15``, model_channels 320, 860 M params, random weights)
and a full-size random InstanceDiffusion adapter (368.8 M params: position net, 16 fusers 320/640/1280, ScaleU),
patches a clone with the pack's Apply node, and times one CFG step (cond + uncond rows in one UNet call, as
ComfyUI's KSampler batches them) through ``BaseModel.apply_model`` (the real UNet forward with the pack's
``middle_patch`` / ``output_block_patch``). Every patched configuration runs twice: through the pack's path
("new") and through the path before the per-run caches ("today", :func:`legacy`: grounding keys/values projected
in every fuser call and batch row, ScaleU through full FFTs), with the max |Δ| of their outputs on the same inputs.
Configurations are interleaved round by round so that machine load hits them alike; the median per configuration
is reported, and ratios are taken against the unpatched median of the same run.

- whole run with alpha: ``(on · fused step + (steps - on) · ScaleU-only step) / (steps · unpatched step)``,
  on = int(alpha · steps), from the medians of the same run;
- extra peak memory: the adapter's weights plus the peak resident-set growth of the first patched step of a fresh
  Apply (its per-run caches built inside) over the unpatched step's (sampled every 2 ms; CPU only);
- MIS: one UNet call with the n + 1 branches batched (the MIS sampler's routing and caption patch) against the
  single-branch step, and the run cost of 50 steps with mis 0.36.

The grounding tokens are always 30 slots + 64 mask tokens (184), so the UNet-step cost does not depend on the
number of instances; the instance count only changes the once-per-run position-net pass and MIS.

Usage: ``python benchmarks/bench_instancediffusion.py [--size 512] [--rounds 3] [--instances 10] [--mis-size 256]
[--skip step,memory,mis]`` (about 15 minutes on 2 CPU cores at 512²).
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


def legacy(patched, mod):
    """A clone of a patched MODEL running the code path before the per-run caches (kept for the side-by-side
    comparison): every fuser call projects the grounding tokens of every batch row (``linear``, ``norm1``, K/V)
    again, and ScaleU filters through full FFTs (:func:`core.instancediffusion.scaleu.fourier_filter_fft`)."""
    from core.instancediffusion.scaleu import fourier_filter_fft

    class LegacyFuserPatch(mod.FuserPatch):
        def __call__(self, x, extra_options):
            st = self.state
            scale = st.fuser_scale(extra_options)
            if scale == 0.0:
                return x
            st.adapter.to_device(x.device)
            idx = st.row_index(extra_options, x.shape[0])
            table = st.tokens(x.device, torch.float32, instances=st.frames is None and bool((idx >= 2).any()))
            return st.adapter.module.fuse(x, table[idx.to(x.device)], int(extra_options["transformer_index"]), scale)

    class LegacyScaleUPatch(mod.ScaleUPatch):
        def __call__(self, h, hsp, transformer_options):
            block = transformer_options.get("block")
            if block is None or block[0] != "output":
                return h, hsp
            su = self.state.adapter.module.scaleu
            b, s = getattr(su, f"scaleu_b_{block[1]}"), getattr(su, f"scaleu_s_{block[1]}")
            h = h * (torch.tanh(b.float()) + 1).to(h.dtype)[None, :, None, None]
            return h, fourier_filter_fft(hsp, 1, torch.tanh(s.float()) + 1)

    m = patched.clone()
    p = m.model_options["transformer_options"]["patches"]
    p["middle_patch"] = [LegacyFuserPatch(x.state) if isinstance(x, mod.FuserPatch) else x for x in p["middle_patch"]]
    p["output_block_patch"] = [LegacyScaleUPatch(x.state) if isinstance(x, mod.ScaleUPatch) else x
                               for x in p["output_block_patch"]]
    return m


def step_fn(patcher, size: int, rows: int = 2, mis_branches: int | None = None, mod=None):
    """One UNet call of a CFG step: ``rows`` = 2 (uncond + cond) × branches, through BaseModel.apply_model.
    MIS branches (``mis_branches`` = n + 1) run with the MIS sampler's routing and per-instance caption patch."""
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
        grounding = sys.modules[mod.FuserPatch.__module__]
        state = mod.find_state(patcher)
        to[grounding.MIS_KEY] = {"branches": list(range(mis_branches))}
        patches = dict(to.get("patches", {}))
        patches["attn2_patch"] = list(patches.get("attn2_patch", [])) + [grounding.MISContextPatch(state)]
        to["patches"] = patches

    def run():
        with torch.no_grad():
            return base.apply_model(x, sigma, c_crossattn=ctx, transformer_options=to)

    return run


CLOCK = [time.perf_counter]  # --clock cpu: time.process_time (CPU seconds of this process, all its threads)


def timed(fn) -> tuple[float, int]:
    clock = CLOCK[0]
    with PeakRSS() as mem:
        t0 = clock()
        fn()
        dt = clock() - t0
    return dt, mem.growth


def interleaved(configs: dict, rounds: int) -> tuple[dict, dict]:
    """Median seconds and max peak-RSS growth per configuration, rounds interleaved (after one warm-up each)."""
    for fn in configs.values():
        fn()
    times = {k: [] for k in configs}
    mems = {k: [] for k in configs}
    for _ in range(rounds):
        for k, fn in configs.items():
            dt, mem = timed(fn)
            times[k].append(dt)
            mems[k].append(mem)
    return {k: statistics.median(v) for k, v in times.items()}, {k: max(v) for k, v in mems.items()}


def max_delta(a_fn, b_fn) -> float:
    return float((a_fn() - b_fn()).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (latent = size/8)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration (after one warm-up)")
    ap.add_argument("--mis-size", type=int, default=256, help="image side for the MIS measurement")
    ap.add_argument("--instances", default="10", help="instance counts for the step table (comma-separated)")
    ap.add_argument("--mis-instances", default="1,4", help="instance counts for the MIS table (comma-separated)")
    ap.add_argument("--steps", type=int, default=50, help="steps of the whole-run estimates")
    ap.add_argument("--alpha", type=float, default=0.8, help="alpha of the whole-run estimate")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: step, memory, mis")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed seconds; cpu: CPU seconds of this process (with --threads 1, insensitive to "
                         "other jobs sharing the cores)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK[0] = time.process_time
    skip = set(filter(None, args.skip.split(",")))
    torch.set_grad_enabled(False)
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp(prefix="ifa_bench_")))
    apply_cls = env.nodes.NODE_CLASS_MAPPINGS["IFAApplyInstanceDiffusion"]
    mod = sys.modules[apply_cls.__module__]
    from comfy_testnodes.tiny_models import tiny_checkpoint

    t0 = time.time()
    unet = build_sd15_unet()
    adapter = full_adapter(mod)
    weights = sum(p.numel() * p.element_size() for p in adapter.module.parameters())
    clip = tiny_checkpoint("sd15")[1]  # only encodes the instance descriptions (CLIP-L width 768)
    print(f"ComfyUI {env.version}; SD1.5 UNet {sum(p.numel() for p in unet.model.diffusion_model.parameters()) / 1e6:.0f} M "
          f"params + adapter {sum(p.numel() for p in adapter.module.parameters()) / 1e6:.1f} M "
          f"({weights / 2**20:.0f} MiB), fp32, CPU ({torch.get_num_threads()} threads, {args.clock} clock); built in "
          f"{time.time() - t0:.0f}s")
    print("'today' = the code path before this change (grounding K/V projected in every fuser call and batch row, "
          "ScaleU through full FFTs), 'new' = the pack's path; both in this process, rounds interleaved.")

    def apply(n, size, alpha=1.0, masks=False):
        return apply_cls().apply(unet, adapter, clip, layout(n, size, masks=masks), 1.0, alpha, "auto", True)[0]

    counts = [int(c) for c in args.instances.split(",")]
    if "step" not in skip:
        configs = {"unpatched": step_fn(unet, args.size)}
        deltas = {}
        for n in counts:
            m = apply(n, args.size)
            configs[f"today, {n} inst"] = step_fn(legacy(m, mod), args.size)
            configs[f"new, {n} inst"] = step_fn(m, args.size)
            deltas[n] = max_delta(configs[f"today, {n} inst"], configs[f"new, {n} inst"])
        off = apply(counts[-1], args.size, alpha=0.0)  # fusers off (the steps after int(alpha·steps)): ScaleU only
        configs["today, fusers off"] = step_fn(legacy(off, mod), args.size)
        configs["new, fusers off"] = step_fn(off, args.size)
        d_off = max_delta(configs["today, fusers off"], configs["new, fusers off"])
        med, mem = interleaved(configs, args.rounds)
        ref = med["unpatched"]
        print(f"\nOne CFG step (uncond + cond rows, one UNet call) at {args.size}x{args.size} "
              f"(latent {args.size // 8}²), median of {args.rounds}:")
        print(f"{'configuration':<22}{'step s':>9}{'ratio':>8}{'peak RSS +MiB':>15}")
        for k in configs:
            print(f"{k:<22}{med[k]:>9.2f}{med[k] / ref:>8.3f}{mem[k] / 2**20:>15.0f}")
        for n in counts:
            print(f"max |Δ| today vs new, {n} instances (denoised output): {deltas[n]:.2e}")
        print(f"max |Δ| today vs new, fusers off (ScaleU only): {d_off:.2e}")
        on = int(args.alpha * args.steps)
        n = counts[-1]
        print(f"\nWhole {args.steps}-step run, alpha {args.alpha} (fusers on for {on} steps, ScaleU on all), "
              f"{n} instances, from the step medians above (x plain SD1.5 run):")
        for path in ("today", "new"):
            run = (on * med[f"{path}, {n} inst"] + (args.steps - on) * med[f"{path}, fusers off"]) / (args.steps * ref)
            print(f"  {path:<6}{run:.3f}x")

    if "memory" not in skip:
        # extra peak memory: the adapter's weights + the first patched step (its per-run caches built inside) over
        # the unpatched step; fresh Apply states so that nothing is cached beforehand
        n = counts[-1]
        plain = step_fn(unet, args.size)
        plain()
        growth_plain = statistics.median([timed(plain)[1] for _ in range(2)])
        print(f"\nExtra peak memory, {n} instances, {args.size}² (adapter weights {weights / 2**20:.0f} MiB; "
              f"peak RSS growth of the unpatched step {growth_plain / 2**20:.0f} MiB):")
        for path in ("today", "new"):
            m = apply(n, args.size)
            fn = step_fn(legacy(m, mod) if path == "today" else m, args.size)
            first = timed(fn)[1]
            later = timed(fn)[1]
            st = mod.find_state(m)
            cache = sum(t.numel() * t.element_size() for t in st._tokens.values()) + st.kv.cached_bytes()
            extra = weights + max(first, later) - growth_plain
            print(f"  {path:<6}first step +{first / 2**20:.0f} MiB, next +{later / 2**20:.0f} MiB, per-run caches "
                  f"{cache / 2**20:.1f} MiB; extra peak = weights + {(extra - weights) / 2**20:.0f} MiB = "
                  f"{extra / weights:.3f} x weights")

    if "mis" not in skip:
        # MIS: the first int(mis·steps) steps run n+1 branches batched in one UNet call
        print(f"\nMIS at {args.mis_size}x{args.mis_size}: one UNet call with n+1 branches (x2 rows for CFG) vs the "
              "patched single-branch step; run cost = (k·branch + (steps-k)·single) / (steps·single), k = int(0.36·steps)")
        cfg = {}
        ms = {}
        mis_counts = [int(c) for c in args.mis_instances.split(",")]
        for n in mis_counts:
            m = apply(n, args.mis_size)
            ms[n] = m
            for path, mm in (("today", legacy(m, mod)), ("new", m)):
                cfg[f"{path}, single, {n}"] = step_fn(mm, args.mis_size)
                cfg[f"{path}, branches, {n}"] = step_fn(mm, args.mis_size, rows=2 * (n + 1), mis_branches=n + 1,
                                                         mod=mod)
        d = max(max_delta(cfg[f"today, branches, {n}"], cfg[f"new, branches, {n}"]) for n in mis_counts)
        med, _ = interleaved(cfg, args.rounds)
        k = int(args.steps * 0.36)
        print(f"{'instances':<11}{'path':<7}{'single s':>9}{'branch s':>10}{'x single':>10}{'run cost':>10}")
        for n in mis_counts:
            for path in ("today", "new"):
                t1, tb = med[f"{path}, single, {n}"], med[f"{path}, branches, {n}"]
                run = (k * tb + (args.steps - k) * t1) / (args.steps * t1)
                print(f"{n:<11}{path:<7}{t1:>9.2f}{tb:>10.2f}{tb / t1:>10.2f}{run:>9.2f}x")
        print(f"max |Δ| today vs new, MIS branch steps: {d:.2e}")


if __name__ == "__main__":
    main()
