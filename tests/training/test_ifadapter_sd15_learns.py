"""An SD1.5 IFAdapter learns from its instance input: ``python -m train ifadapter`` on a tiny SD1.5 and a synthetic
dataset where the colours are given only in the instance descriptions (the caption is the same for every image) and
the places only in the layout. The same run with every description zeroed (``[ifadapter] zero_descriptions``: boxes
kept, so the baseline can still learn where shapes are, only not their colours; same images, seeds and draws) is the
baseline: the held-out loss of the adapter that reads the descriptions must end clearly below the baseline's. (A
baseline with the boxes zeroed too cannot learn at all: the adapter acts only inside boxes, so its loss stays at the
untrained model's, step 0 of both curves.)

The tiny base is a v-prediction model: with a random frozen UNet, the ε target has no part an instance input could
predict without the UNet reading the image out of x_t (E[ε | instances] = 0), while v = (ε - σ x0) / √(σ² + 1) has
one, -σ x0 / √(σ² + 1), which the boxes and colours tell. Both curves are printed (pytest -s) and written to
``<tmp>/learning_curves.json``. Slow: two runs of 200 steps on CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "tests" / "training" / "launch_tiny.py"
STEPS, EVAL_EVERY = 200, 50


def _config(root: Path, base: Path, data: Path, name: str, zero: bool) -> Path:
    lines = ["[model]", f'base = "{base}"',
             "[data]", f'folder = "{data}"', "resolution = 96", "bucket_step = 32", "holdout = 0.25",
             "random_crop = false",
             "[cache]", f'dir = "{root / "cache"}"',
             "[train]", f'output_dir = "{root / name}"', f"max_steps = {STEPS}", "batch_size = 8",
             "micro_batch_size = 8", "lr = 0.01", "warmup_steps = 10", 'precision = "fp32"',
             "gradient_checkpointing = false", f"checkpoint_every = {STEPS}", "log_every = 10",
             f"eval_every = {EVAL_EVERY}", "eval_samples = 16", "eval_timesteps = [100, 300, 500, 700, 900]",
             "eval_batch_size = 4", "seed = 5",
             "[ifadapter]", "drop_local = 0.0", "drop_global = 0.0", 'resampler_mask = "all-words"',
             f"zero_descriptions = {'true' if zero else 'false'}",
             "resampler = {dim = 64, depth = 2, heads = 2, dim_head = 32, ff_mult = 2}"]
    path = root / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(comfy, config: Path, log: Path) -> dict:
    env = dict(os.environ, COMFYUI_PATH=str(comfy.comfy_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    with open(log, "wb") as f:
        p = subprocess.run([sys.executable, str(LAUNCH), "ifadapter", "--config", str(config)], cwd=REPO, env=env,
                           stdout=f, stderr=subprocess.STDOUT, timeout=1800)
    assert p.returncode == 0, log.read_text(errors="replace")[-6000:]
    summary = json.loads((config.parent / config.stem / "summary.json").read_text())
    return {int(k): v for k, v in summary["eval_loss"].items()}


def test_held_out_loss_with_instance_descriptions_falls_below_the_control(comfy, tmp_path):
    from training.synthetic import make_dataset
    from training.tiny_sd15_file import register, write_tiny_sd15_checkpoint

    register()
    base = comfy.models_dir / "checkpoints" / "tiny_sd15_vpred_learn.safetensors"
    write_tiny_sd15_checkpoint(str(base), seed=1, v_prediction=True, unet_std=0.1)
    caption = "shapes on a grey background"
    make_dataset(str(tmp_path / "data"), 64, size=(96, 96), seed=11, broken=False, caption=caption)
    data = tmp_path / "data"
    with_inst = _train(comfy, _config(tmp_path, base, data, "instances", False), tmp_path / "instances.log")
    zeroed = _train(comfy, _config(tmp_path, base, data, "zeroed", True), tmp_path / "zeroed.log")
    steps = sorted(with_inst)
    curves = {"steps": steps, "instances": [with_inst[s] for s in steps], "zeroed": [zeroed[s] for s in steps]}
    (tmp_path / "learning_curves.json").write_text(json.dumps(curves, indent=1))
    print("\nheld-out eval loss (16 samples x t = 100, 300, 500, 700, 900; v-prediction)")
    for s in steps:
        print(f"  step {s:4d}: descriptions {with_inst[s]:.5f}   descriptions zeroed {zeroed[s]:.5f}")
    assert steps == sorted(zeroed) == list(range(0, STEPS + 1, EVAL_EVERY))
    assert with_inst[0] == zeroed[0]  # the same untrained adapter (zero gates)
    assert zeroed[STEPS] < zeroed[0]  # the boxes alone teach the baseline something
    # below at each of the last three evaluations (as the InstanceDiffusion learning test asks); measured on the
    # 2024 build: 3.8882 / 3.8795 / 3.8781 against 3.9276 / 3.9031 / 3.8882, the descriptions' run falling steadily
    # while the baseline's wanders (its final margin, 0.010, is 7 % of the baseline's own gain: the colour signal that
    # 4 coarse layers of a random 32-channel UNet can pass on is small)
    assert all(with_inst[s] < zeroed[s] for s in steps[-3:]), curves
    assert with_inst[STEPS] < min(zeroed[s] for s in steps[1:]), curves  # and below the baseline's best
