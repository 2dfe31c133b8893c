"""Fuser cost per SD1.5 transformer block, measured side by side with the block's own self-attention (attn1).

Prints, per resolution/width, the time of one UniFusion fuser (self-attention over h·w + 184 tokens plus its GEGLU
feed-forward) and of a plain attn1-sized self-attention over h·w tokens, and their ratio; then the whole-UNet fuser
overhead for 16 blocks. Random weights (the cost does not depend on them).

    python benchmarks/bench_instancediffusion_fuser.py [--device cuda] [--dtype fp16] [--latent 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from core.instancediffusion.fuser import FUSER_CHANNELS, GatedSelfAttentionDense, SelfAttention  # noqa: E402


def timed(fn, device: str, reps: int) -> float:
    for _ in range(2):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--dtype", default="fp16" if torch.cuda.is_available() else "fp32", choices=["fp32", "fp16", "bf16"]
    )
    ap.add_argument("--latent", type=int, default=64, help="latent side (64 = 512x512 image)")
    ap.add_argument("--reps", type=int, default=0)
    a = ap.parse_args()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    reps = a.reps or (20 if a.device == "cuda" else 3)
    sides = [a.latent, a.latent, (a.latent + 1) // 2, (a.latent + 1) // 2]
    s4 = (sides[2] + 1) // 2
    s8 = (s4 + 1) // 2
    res = [sides[0]] * 2 + [sides[2]] * 2 + [s4] * 2 + [s8] + [s4] * 3 + [sides[2]] * 3 + [sides[0]] * 3
    print(f"device={a.device} dtype={a.dtype} latent={a.latent}x{a.latent} batch=2 (cond+uncond)")
    print(f"{'block':>5} {'tokens':>7} {'C':>5} {'fuser ms':>9} {'attn1 ms':>9} {'ratio':>6}")
    tot_f = tot_a = 0.0
    cache: dict = {}
    with torch.no_grad():
        for i, (c, s) in enumerate(zip(FUSER_CHANNELS, res)):
            key = (c, s)
            if key not in cache:
                torch.manual_seed(0)
                f = GatedSelfAttentionDense(c).to(a.device, dtype)
                f.alpha_attn.fill_(0.5)
                f.alpha_dense.fill_(0.5)
                sa = SelfAttention(c, 8, c // 8).to(a.device, dtype)
                x = torch.randn(2, s * s, c, device=a.device, dtype=dtype)
                objs = torch.randn(2, 184, 768, device=a.device, dtype=dtype)
                cache[key] = (
                    timed(lambda f=f, x=x, o=objs: f(x, o), a.device, reps),
                    timed(lambda sa=sa, x=x: sa(x), a.device, reps),
                )
            tf, ta = cache[key]
            tot_f += tf
            tot_a += ta
            print(f"{i:>5} {s * s:>7} {c:>5} {tf * 1e3:>9.2f} {ta * 1e3:>9.2f} {tf / ta:>6.2f}")
    print(
        f"16 fusers: {tot_f * 1e3:.1f} ms per UNet call vs 16 attn1: {tot_a * 1e3:.1f} ms (ratio {tot_f / tot_a:.2f})"
    )


if __name__ == "__main__":
    main()
