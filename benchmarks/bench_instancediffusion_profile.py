"""Where InstanceDiffusion's extra time goes: torch.profiler over one unpatched and one patched SD1.5 UNet step.

Builds the same real-size SD1.5 UNet and full-size random adapter as :mod:`bench_instancediffusion`, runs one CFG
step (uncond + cond rows in one UNet call, fp32) unpatched and patched under ``torch.profiler``, with every fuser
call (``middle_patch``, per ``transformer_index``) and every ScaleU call (``output_block_patch``, per output block)
inside its own ``record_function`` scope, and prints:

- per module: fuser 0..15 (visual tokens N, width C) and ScaleU 0..11, milliseconds and share of the unpatched step;
- per operator inside the fusers and inside ScaleU (self CPU time summed over the 16 / 12 calls);
- the FLOP count of both steps (``torch.utils.flop_counter``: matmuls, convolutions, attention) and their ratio,
  the floor the patched/unpatched time ratio cannot go below unless the adapter's FLOPs go down.

Both the pack's path and the path before the per-run caches (:func:`bench_instancediffusion.legacy`) are profiled
in the same process, interleaved.

Usage: ``python benchmarks/bench_instancediffusion_profile.py [--size 512] [--instances 10] [--repeats 2]``
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_instancediffusion as bench  # noqa: E402  (also puts the repository and tests/ on sys.path)
import comfy_env  # noqa: E402


class Scoped:
    """Wraps a patch object so each call runs inside a profiler scope named after the module it applies."""

    def __init__(self, inner, kind: str):
        self.inner, self.kind = inner, kind

    def __deepcopy__(self, memo):
        return self

    def to(self, *a, **k):
        self.inner.to(*a, **k)
        return self

    def __call__(self, *args):
        if self.kind == "fuser":
            x, extra = args
            name = f"ifa.fuser.{int(extra['transformer_index'])}.N{x.shape[1]}.C{x.shape[2]}"
        else:
            block = args[2].get("block")
            name = f"ifa.scaleu.{block[1]}.C{args[1].shape[1]}.{args[1].shape[2]}x{args[1].shape[3]}"
        with record_function(name):
            return self.inner(*args)


def scoped(model):
    """A clone of a patched MODEL whose fuser and ScaleU patches run in profiler scopes."""
    m = model.clone()
    patches = m.model_options["transformer_options"]["patches"]
    patches["middle_patch"] = [Scoped(p, "fuser") for p in patches["middle_patch"]]
    patches["output_block_patch"] = [Scoped(p, "scaleu") for p in patches["output_block_patch"]]
    return m


def scope_times(prof) -> tuple[dict[str, float], dict[str, collections.Counter]]:
    """(ms per ifa.* scope, {"fuser"/"scaleu": Counter(op name -> self ms summed over that kind's scopes)})."""
    per_scope: dict[str, float] = collections.defaultdict(float)
    ops = {"fuser": collections.Counter(), "scaleu": collections.Counter()}

    def walk(ev, kind):
        for ch in ev.cpu_children:
            ops[kind][ch.name] += ch.self_cpu_time_total / 1e3
            walk(ch, kind)

    for ev in prof.events():
        if ev.name.startswith("ifa.") and ev.device_type.name == "CPU":
            per_scope[ev.name] += ev.cpu_time_total / 1e3
            walk(ev, ev.name.split(".")[1])
    return per_scope, ops


def flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def profile_step(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    return wall, prof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="profiled steps per configuration (median per scope)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp(prefix="ifa_prof_")))
    apply_cls = env.nodes.NODE_CLASS_MAPPINGS["IFAApplyInstanceDiffusion"]
    mod = sys.modules[apply_cls.__module__]
    from comfy_testnodes.tiny_models import tiny_checkpoint

    unet = bench.build_sd15_unet()
    adapter = bench.full_adapter(mod)
    clip = tiny_checkpoint("sd15")[1]
    patched = apply_cls().apply(unet, adapter, clip, bench.layout(args.instances, args.size, masks=False), 1.0, 1.0,
                                "auto", True)[0]
    fns = {"unpatched": bench.step_fn(unet, args.size),
           "today": bench.step_fn(scoped(bench.legacy(patched, mod)), args.size),
           "new": bench.step_fn(scoped(patched), args.size)}
    for fn in fns.values():
        fn()  # warm-up; builds the per-run caches (position net, grounding K/V)
    flop = {k: flops(fn) for k, fn in fns.items()}
    walls: dict[str, list[float]] = collections.defaultdict(list)
    scopes = {k: collections.defaultdict(list) for k in ("today", "new")}
    ops_runs = {k: [] for k in ("today", "new")}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            wall, prof = profile_step(fn)
            walls[name].append(wall * 1e3)
            if name != "unpatched":
                per, ops = scope_times(prof)
                for k, v in per.items():
                    scopes[name][k].append(v)
                ops_runs[name].append(ops)
    t = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\n{args.instances} instances, {args.size}², fp32, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} profiled steps per path (profiler overhead included); 'today' = the path before the "
          "per-run caches, 'new' = the pack's path")
    for k in fns:
        print(f"{k:<10} step {t[k]:8.0f} ms  ratio {t[k] / t['unpatched']:.3f}   "
              f"FLOPs {flop[k] / 1e9:8.1f} G  ratio {flop[k] / flop['unpatched']:.3f}")
    print(f"\n{'module':<30}{'today ms':>10}{'new ms':>10}{'new, % of unpatched step':>27}")
    names = sorted(set(scopes["today"]) | set(scopes["new"]), key=lambda s: (s.split(".")[1], int(s.split(".")[2])))
    tot = {k: collections.Counter() for k in scopes}
    for name in names:
        row = {}
        for path in scopes:
            row[path] = statistics.median(scopes[path][name]) if scopes[path].get(name) else 0.0
            tot[path][name.split(".")[1]] += row[path]
        print(f"{name[4:]:<30}{row['today']:>10.1f}{row['new']:>10.1f}{100 * row['new'] / t['unpatched']:>26.1f}%")
    for kind in ("fuser", "scaleu"):
        print(f"{'all ' + kind:<30}{tot['today'][kind]:>10.1f}{tot['new'][kind]:>10.1f}"
              f"{100 * tot['new'][kind] / t['unpatched']:>26.1f}%")
    rest = {p: t[p] - t["unpatched"] - sum(tot[p].values()) for p in scopes}
    print(f"{'rest (patched - unpatched - above)':<30}{rest['today']:>10.1f}{rest['new']:>10.1f}"
          f"{100 * rest['new'] / t['unpatched']:>26.1f}%")
    for kind in ("fuser", "scaleu"):
        for path in scopes:
            merged = collections.Counter()
            for o in ops_runs[path]:
                merged.update(o[kind])
            print(f"\noperators inside {kind}, {path} path (self ms, all calls of one step, mean of runs):")
            for op, ms in merged.most_common(12):
                print(f"  {op:<52}{ms / len(ops_runs[path]):>9.1f}")


if __name__ == "__main__":
    main()
