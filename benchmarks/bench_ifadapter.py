"""Whole-UNet cost of IFAdapter: a real-size SDXL UNet step, unpatched vs patched with 1, 4 and 10 instances.

The UNet is ComfyUI's own SDXL (``comfy.supported_models.SDXL``: 2.57 B parameters, the real block layout and
widths) with random weights; the patch is exactly what the Apply IFAdapter node installs (the pack's
``IFAdapterLayer`` contributions in ``ChainedAttn2`` on the 16 attn2 keys), driven by random-weight processors of the
official size (1280 wide, 20 heads, CBAM, gate lambda = 0.5 so the semantic-map path really runs) and random
instance tokens (13 x 2048 per instance, cond and uncond). The resampler only runs when tokens are encoded (once
per prompt), so it is not part of a step and is built tiny here.

One step = one UNet call on a CFG batch of 2 (``cond_or_uncond = [1, 0]``), like ComfyUI's sampler. Configurations
are timed interleaved (round robin, best of ``--repeats``) so machine load hits all of them alike; the ratios are
printed side by side. Peak memory is the process RSS high-water mark during the step above the RSS before it
(sampled every 2 ms), plus the adapter's per-generation caches.

``--paths crop,union`` adds the previous processor path (``impl="union"``: every instance on the union of the boxes)
as extra configurations, timed in the same rounds, with the largest output difference between the paths.
The extra peak memory of a patched step is its peak RSS above the unpatched step's, compared with the adapter's own
weights (all of ``spd_adapter``: resampler, box embedding and the 16 processors, at their official size).

Run: python benchmarks/bench_ifadapter.py [--size 512] [--repeats 3] [--dtype fp32] [--instances 1,4,10]
     [--paths crop[,union]]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def official_size_processors(ifa_cls, sam_std: float | None = None):
    """An IFAdapter with the 16 official-size processors (gate tanh(0.5)) and a small resampler, random weights
    (normal 0.02; the CBAM spatial conv at ``sam_std`` when given), built on the meta device then materialised once.
    ``ifa_cls`` is the pack's ``core.ifadapter.IFAdapter`` as the caller imported it."""
    with torch.device("meta"):
        adapter = ifa_cls(resampler_kwargs=dict(dim=64, depth=1, heads=1, dim_head=64, ff_mult=1))
    adapter = adapter.to_empty(device="cpu")
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.02)
        for proc in adapter.processors().values():
            proc.alpha.fill_(0.5)
            if sam_std is not None:
                proc.cbam.sam.conv.weight.normal_(0, sam_std)
    return adapter.requires_grad_(False)


def _boot_comfy():
    import comfy_env

    comfy_dir = comfy_env.find_comfyui()
    sys.path.insert(0, str(comfy_dir))
    os.chdir(comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    args.use_pytorch_cross_attention = True
    import importlib

    # the pack as ComfyUI would import it (relative imports inside), registered under a plain name
    spec = importlib.util.spec_from_file_location("ifa_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["ifa_pack"] = pack
    spec.loader.exec_module(pack)
    return comfy_env.comfyui_version(comfy_dir)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def delta(self) -> int:
        return self.peak - self.base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (latent = size/8); default 512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--instances", default="1,4,10")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--paths", default="crop", help="processor paths to time: crop (default), union (previous)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    version = _boot_comfy()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    from ifa_pack.core.ifadapter import IFAdapter
    from ifa_pack.core.ifadapter.runtime import IFAdapterRuntime, InstanceTokens
    from ifa_pack.nodes.ifadapter import IFADAPTER_KEYS, IFAdapterLayer
    from ifa_pack.nodes.patches import add_attn2_contribution
    from ifa_pack.nodes.steps import StepWindow

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    torch.manual_seed(0)
    cfg = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
           "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
           "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
           "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
           "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
           "use_temporal_attention": False, "use_temporal_resblock": False, "dtype": dtype}
    t0 = time.time()
    model = comfy.supported_models.SDXL(cfg).get_model({}, "")
    unet = model.diffusion_model
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0, 0.02)
    unet.eval().requires_grad_(False)
    n_params = sum(p.numel() for p in unet.parameters())
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    print(f"ComfyUI {version}; SDXL UNet {n_params / 1e9:.2f} B params ({a.dtype}) built in {time.time() - t0:.0f}s; "
          f"torch threads {torch.get_num_threads()}")

    adapter = official_size_processors(IFAdapter, sam_std=0.1)
    proc_params = sum(p.numel() for proc in adapter.processors().values() for p in proc.parameters())
    print(f"IFAdapter processors: 16 x {proc_params // 16:,} params (official size), gate tanh(0.5)")

    lat = a.size // 8
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, lat, lat, generator=g).to(dtype)
    ctx = (torch.randn(2, 77, 2048, generator=g) * 0.5).to(dtype)
    y = torch.randn(2, 2816, generator=g).to(dtype)
    t = torch.full((2,), 500.0)
    sigma = torch.full((2,), 5.0)

    def layout(n):
        boxes = []
        for i in range(n):  # a spread of overlapping boxes of different sizes
            x0, y0 = (i % 4) * 0.22, (i // 4) * 0.3
            boxes.append([x0, y0, min(1.0, x0 + 0.3 + 0.05 * (i % 3)), min(1.0, y0 + 0.35)])
        return torch.tensor(boxes)

    configs = {"unpatched": patcher}
    always_on = StepWindow(0.0, 1.0, "ratio", 1e9, 0.0)
    paths = a.paths.split(",")
    for n in [int(v) for v in a.instances.split(",")]:
        tok = InstanceTokens(torch.randn(n, 13, 2048, generator=g), torch.randn(n, 13, 2048, generator=g),
                             layout(n))
        for path in paths:
            m = patcher.clone()
            runtime = IFAdapterRuntime(adapter, tok, 1.0)
            runtime.impl = path
            for key in IFADAPTER_KEYS:
                add_attn2_contribution(m, key, IFAdapterLayer(runtime, key, always_on, 1.0))
            configs[f"{n} inst" + ("" if path == "crop" else f" ({path})")] = m

    def step(m):
        to = dict(m.model_options["transformer_options"])
        to.update(cond_or_uncond=[1, 0], sigmas=sigma)
        with torch.no_grad():
            return unet(x, t, context=ctx, y=y, transformer_options=to)

    outs, best, peak = {}, {k: float("inf") for k in configs}, {k: 0 for k in configs}
    for k, m in configs.items():  # warm-up (fills the K/V and geometry caches: once per generation)
        t1 = time.perf_counter()
        outs[k] = step(m).float()
        print(f"  warm-up {k}: {time.perf_counter() - t1:.1f}s", flush=True)
    for _ in range(a.repeats):
        for k, m in configs.items():
            with PeakRSS() as pk:
                t1 = time.perf_counter()
                step(m)
                dt = time.perf_counter() - t1
            best[k] = min(best[k], dt)
            peak[k] = max(peak[k], pk.delta)
            print(f"  {k}: {dt:.1f}s, peak RSS +{pk.delta / 2**20:.0f} MB", flush=True)
    base = best["unpatched"]
    print(f"\nSDXL UNet step, {a.size}x{a.size} (latent {lat}x{lat}, IFAdapter layers {-(-lat // 4)}x{-(-lat // 4)}),"
          f" CFG batch 2, {a.dtype}, CPU, best of {a.repeats}")
    # the adapter's own weights at the official size: 519.75 M parameters (resampler + box net + 16 processors)
    weights_mb = 519_750_000 * torch.finfo(dtype).bits / 8 / 2**20
    print(f"{'config':<18} {'step s':>8} {'ratio':>7} {'peak RSS +MB':>13} {'extra vs unpatched MB':>22} "
          f"{'max |diff| vs unpatched':>24}")
    for k in configs:
        diff = (outs[k] - outs["unpatched"]).abs().max().item()
        extra = (peak[k] - peak["unpatched"]) / 2**20
        print(f"{k:<18} {best[k]:8.2f} {best[k] / base:7.3f} {peak[k] / 2**20:13.0f} {extra:22.0f} {diff:24.4g}")
        assert torch.isfinite(outs[k]).all()
    for k in configs:
        if k.endswith(")"):
            crop = k.split(" (")[0]
            print(f"max |{crop} - {k}| = {(outs[crop] - outs[k]).abs().max().item():.3g} (same inputs, two paths)")
    print(f"\nExtra memory of a patched step = the adapter's weights ({weights_mb:.0f} MB at the official size, "
          f"{a.dtype}) + cached K/V + the step's transient peak above the unpatched step's; budget: weights + 5 % "
          f"= {weights_mb * 1.05:.0f} MB")
    for k, m in configs.items():
        if k == "unpatched":
            continue
        contrib = m.model_options["transformer_options"]["patches_replace"]["attn2"][("middle", 0, 0)].contributions[0]
        kv_mb = sum(v.k.numel() * v.k.element_size() * 2 for v in contrib.runtime._caches.kv.values()) / 2**20
        transient = max(0.0, (peak[k] - peak["unpatched"]) / 2**20)
        total = weights_mb + kv_mb + transient
        print(f"{k}: cached K/V {kv_mb:.1f} MB (all 16 layers), transient {transient:.0f} MB; extra {total:.0f} MB = "
              f"weights + {100 * (total / weights_mb - 1):.1f} %")


if __name__ == "__main__":
    main()
