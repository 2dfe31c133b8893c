"""IFAdapter trainer on the tiny SDXL layout: step time and peak memory at 1 and 2 processes (CPU, Gloo).

Builds the tiny random-weight SDXL (real block layout, 32 base channels) as a single-file checkpoint, a synthetic
dataset of coloured shapes, fills the cache once, then runs the real trainer (``train/ifadapter.py``) for a few
steps with one process and with two (``torchrun``), at the same global batch. Prints the median step time (first
step excluded), samples per second and peak resident memory per process, side by side with the ratios.

Run: python benchmarks/bench_train_ifadapter.py [--steps 6] [--batch 4] [--size 64] [--checkpointing]
Needs a ComfyUI (COMFYUI_PATH, or the tests' cached 2024 build).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import comfy_env  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4, help="global batch (split over the processes)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing of the frozen UNet")
    a = p.parse_args()
    comfy_dir = comfy_env.find_comfyui()
    env = dict(os.environ, COMFYUI_PATH=str(comfy_dir), OMP_NUM_THREADS="1")
    launch = REPO / "tests" / "training" / "launch_tiny.py"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        setup = (f"import sys; sys.path[:0]={[str(REPO), str(REPO / 'tests')]!r}\n"
                 "from train.engine import comfy_bridge; comfy_bridge.setup_comfy(cpu=True)\n"
                 "from training.tiny_sdxl_file import write_tiny_sdxl_checkpoint\n"
                 "from training.synthetic import make_dataset\n"
                 f"write_tiny_sdxl_checkpoint({str(tmp / 'tiny.safetensors')!r}, unet_std=0.1)\n"
                 f"make_dataset({str(tmp / 'data')!r}, {max(8, 2 * a.batch)}, size=({a.size}, {a.size}), "
                 "broken=False)\n")
        subprocess.run([sys.executable, "-c", setup], env=env, check=True, capture_output=True)
        results = {}
        for nproc in (1, 2):
            out = tmp / f"run{nproc}"
            cfg = tmp / f"run{nproc}.toml"
            cfg.write_text("\n".join([
                "[model]", f'base = "{tmp / "tiny.safetensors"}"',
                "resampler = {dim = 64, depth = 2, heads = 2, dim_head = 32, ff_mult = 2}",
                "[data]", f'folder = "{tmp / "data"}"', f"resolution = {a.size}", "bucket_step = 32",
                "[cache]", f'dir = "{tmp / "cache"}"',
                "[train]", f'output_dir = "{out}"', f"max_steps = {a.steps}", f"batch_size = {a.batch}",
                f"micro_batch_size = {a.batch // nproc}", 'precision = "fp32"', "eval_samples = 0",
                f"gradient_checkpointing = {'true' if a.checkpointing else 'false'}",
                f"checkpoint_every = {a.steps}", "warmup_steps = 0"]) + "\n")
            cmd = ([sys.executable, str(launch)] if nproc == 1 else
                   [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(launch)])
            r = subprocess.run(cmd + ["ifadapter", "--config", str(cfg)], cwd=REPO, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"trainer failed with {nproc} process(es):\n{r.stderr[-4000:]}")
            results[nproc] = json.loads((out / "summary.json").read_text())
    one, two = results[1], results[2]
    print(f"IFAdapter trainer, tiny SDXL layout, {a.size}x{a.size} images, global batch {a.batch}, {a.steps} steps, "
          f"fp32 CPU, gradient checkpointing {'on' if a.checkpointing else 'off'}, 1 thread per process")
    print(f"{'':28}{'1 process':>14}{'2 processes':>14}{'ratio 2/1':>12}")
    t1, t2 = one["step_time_median"], two["step_time_median"]
    print(f"{'step time (median) [s]':28}{t1:14.3f}{t2:14.3f}{t2 / t1:12.2f}")
    print(f"{'samples / s':28}{a.batch / t1:14.2f}{a.batch / t2:14.2f}{t1 / t2:12.2f}")
    m1, m2 = max(one["peak_memory_mb"]), max(two["peak_memory_mb"])
    print(f"{'peak RSS per process [MiB]':28}{m1:14.0f}{m2:14.0f}{m2 / m1:12.2f}")
    print(f"{'peak RSS all processes [MiB]':28}{sum(one['peak_memory_mb']):14.0f}"
          f"{sum(two['peak_memory_mb']):14.0f}{sum(two['peak_memory_mb']) / sum(one['peak_memory_mb']):12.2f}")


if __name__ == "__main__":
    main()
