"""Every trainer recipe on its tiny test model: step time and peak memory at 1 and 2 processes (CPU, Gloo), side by
side.

Recipes come from the registry (``train/recipes/``) and their tiny models from the test fixtures
(``tests/training/recipe_fixtures/``: the tiny random-weight base model with the real block layout, as a single-file
checkpoint, and the recipe's small module sizes). For each recipe: a synthetic dataset of coloured shapes, the cache
filled once, then the real trainer (``python -m train <recipe>``) for a few steps with one process and with two
(``torchrun``), at the same global batch. Prints the median step time (first step excluded), samples per second and
peak resident memory per process and in all, with the ratios.

Run: python benchmarks/bench_train.py [--recipes a,b] [--steps 6] [--batch 4] [--size 64] [--checkpointing]
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


def _toml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def run_recipe(fixture_id: str, recipe: str, a, env: dict, tmp: Path) -> dict[int, dict]:
    """Summaries of the 1- and 2-process runs of ``recipe`` on test fixture ``fixture_id``'s tiny model."""
    launch = REPO / "tests" / "training" / "launch_tiny.py"
    base = tmp / f"{fixture_id}-base.safetensors"
    setup = (f"import sys; sys.path[:0]={[str(REPO), str(REPO / 'tests')]!r}\n"
             "from train.engine import comfy_bridge; comfy_bridge.setup_comfy(cpu=True)\n"
             "from training.recipe_fixtures import fixtures\n"
             "from training.synthetic import make_dataset\n"
             f"fx = fixtures()[{fixture_id!r}]; fx.register(); fx.write_base({str(base)!r})\n"
             f"make_dataset({str(tmp / 'data')!r}, {max(8, 2 * a.batch)}, size=({a.size}, {a.size}), broken=False)\n"
             "import json; print(json.dumps(fx.options))\n")
    r = subprocess.run([sys.executable, "-c", setup], env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{recipe}: setting up the tiny model failed:\n{r.stderr[-4000:]}")
    options = json.loads(r.stdout.strip().splitlines()[-1])
    results = {}
    for nproc in (1, 2):
        out = tmp / f"{fixture_id}-run{nproc}"
        cfg = tmp / f"{fixture_id}-run{nproc}.toml"
        cfg.write_text("\n".join([
            "[model]", f'base = "{base}"',
            "[data]", f'folder = "{tmp / "data"}"', f"resolution = {a.size}", "bucket_step = 32",
            "[cache]", f'dir = "{tmp / ("cache-" + fixture_id)}"',
            "[train]", f'output_dir = "{out}"', f"max_steps = {a.steps}", f"batch_size = {a.batch}",
            f"micro_batch_size = {a.batch // nproc}", 'precision = "fp32"', "eval_samples = 0",
            f"gradient_checkpointing = {'true' if a.checkpointing else 'false'}",
            f"checkpoint_every = {a.steps}", "warmup_steps = 0", f"[{recipe}]"]
            + [f"{k} = {_toml(v)}" for k, v in options.items()]) + "\n")
        cmd = ([sys.executable, str(launch)] if nproc == 1 else
               [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(launch)])
        r = subprocess.run(cmd + [recipe, "--config", str(cfg)], cwd=REPO, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{recipe}: trainer failed with {nproc} process(es):\n{r.stderr[-4000:]}")
        results[nproc] = json.loads((out / "summary.json").read_text())
    return results


def main() -> None:
    from training.recipe_fixtures import fixtures

    from train.recipes import recipe_names

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", default="", help="comma-separated test fixture names: a recipe's name, or e.g. "
                                                 "ifadapter_sd15 (default: every fixture of a recipe)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4, help="global batch (split over the processes)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing of the frozen UNet")
    a = p.parse_args()
    known = fixtures()
    recipes = [r for r in a.recipes.split(",") if r] or [i for i, fx in known.items() if fx.recipe in recipe_names()]
    missing = [r for r in recipes if r not in known]
    if missing:
        sys.exit(f"no test fixture (tests/training/recipe_fixtures/) for {missing}; recipes with one: {list(known)}")
    comfy_dir = comfy_env.find_comfyui()
    env = dict(os.environ, COMFYUI_PATH=str(comfy_dir), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            rows[recipe] = run_recipe(recipe, known[recipe].recipe, a, env, Path(tmp))
    print(f"Trainer recipes on their tiny test models, {a.size}x{a.size} images, global batch {a.batch}, {a.steps} "
          f"steps, fp32 CPU, gradient checkpointing {'on' if a.checkpointing else 'off'}, 1 thread per process")
    head = f"{'recipe':<20}{'':30}{'1 process':>12}{'2 processes':>13}{'ratio 2/1':>11}"
    print(head)
    for recipe, res in rows.items():
        one, two = res[1], res[2]
        t1, t2 = one["step_time_median"], two["step_time_median"]
        m1, m2 = max(one["peak_memory_mb"]), max(two["peak_memory_mb"])
        s1, s2 = sum(one["peak_memory_mb"]), sum(two["peak_memory_mb"])
        for label, v1, v2, fmt in (("step time (median) [s]", t1, t2, ".3f"),
                                   ("samples / s", a.batch / t1, a.batch / t2, ".2f"),
                                   ("peak RSS per process [MiB]", m1, m2, ".0f"),
                                   ("peak RSS all processes [MiB]", s1, s2, ".0f")):
            print(f"{recipe:<20}{label:30}{v1:12{fmt}}{v2:13{fmt}}{v2 / v1:11.2f}")


if __name__ == "__main__":
    main()
