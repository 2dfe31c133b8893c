"""InstanceDiffusion learns from its instance input: on coloured shapes whose colour is only in the instance
description and whose place is only in the layout (one global prompt, "shapes on a grey background", labels without
colour), the held-out loss of a run falls clearly below the same run with every grounding input zeroed
(``[instancediffusion] zero_instances``, the ablation baseline). Both runs: the same tiny SD1.5 single-file
checkpoint, seed, data, steps and draws; the engine's held-out eval loss at fixed timesteps and noise.

The tiny base is a v-prediction model (as in ``test_ifadapter_sd15_learns.py``): with a random frozen UNet the ε
target has no part an instance input could predict without the UNet reading the image out of x_t
(E[ε | instances] = 0), while v = (ε − σ·x_0) / √(σ² + 1) has one, −σ·x_0 / √(σ² + 1), which the boxes and colours
tell. The real model is ε-prediction; the recipe trains both (the engine picks the target). Prints both curves
(``pytest -s``) and writes them to ``<tmp>/learning_curves.json``. Slow: two runs of 120 steps on CPU.

Measured here (2024 build, 6.5 min), held-out loss at steps 0, 30, 60, 90, 120: with the instance input 4.03078,
3.81506, 3.77128, 3.73931, 3.72907; zeroed 4.03078, 3.81382, 3.77163, 3.73763, 3.72931. Both fall 7.5 %, within
0.05 % of each other: the tiny model does NOT show the instance input being used (issue 16's "it learns" is not met
for this recipe). Tried without success (each ~6.5 min here): every sample grounded (no modality / null drops),
larger shapes (0.4-0.8 of the side), 150 steps at lr 0.01 (ends 0.017 % above the control) and at lr 0.03 (above it
at every evaluation); earlier, with the tiny base's v_pred flag still ignored by ComfyUI (so ε-prediction), the
gap was 0.01-0.02 %. Not yet tried: a fine-tuning start with open gates at v-prediction, batch 8 / 200 steps (the
SD1.5 IFAdapter learning test's setting), a different ``unet_std``. The test is therefore a strict xfail: it states
the requirement, records the curves, and turns into a failure (XPASS, strict) the day the gap appears, so the marker
cannot outlive the problem.
"""
from __future__ import annotations

import json

import pytest
from test_train_recipes import run, trainer_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = 120
EVERY = 30


def _config(path, base, data, cache, out, zero: bool):
    lines = [
        "[model]", f'base = "{base}"',
        "[data]", f'folder = "{data}"', "resolution = 96", "holdout = 0.25",
        "[cache]", f'dir = "{cache}"',
        "[train]", f'output_dir = "{out}"', f"max_steps = {STEPS}", "batch_size = 4", "micro_batch_size = 4",
        "lr = 0.01", "warmup_steps = 10", "ema_decay = 0.0", 'precision = "fp32"', "gradient_checkpointing = false",
        f"checkpoint_every = {STEPS}", "log_every = 25", f"eval_every = {EVERY}", "eval_samples = 16",
        "eval_timesteps = [100, 300, 500, 700, 900]", "eval_batch_size = 4", "seed = 5",
        "[instancediffusion]", "random_flip = false", "prob_use_caption = 1.0", "mid_dim = 64", "convnext_dims = [8, 16, 32, 64]", "convnext_depths = [1, 1, 1, 1]",
        f"zero_instances = {'true' if zero else 'false'}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.xfail(strict=True, reason="issue 16: on the tiny v-prediction SD1.5 the instance run is not below the "
                   "zeroed run at the last three evaluations (curves in the module docstring)")
def test_held_out_loss_with_the_instance_input_ends_below_the_zeroed_run(comfy, tmp_path_factory):
    from training.synthetic import make_dataset
    from training.tiny_sd15_file import register, write_tiny_sd15_checkpoint

    register()
    root = tmp_path_factory.mktemp("id-learning")
    base = comfy.models_dir / "checkpoints" / "tiny_sd15_vpred_learn.safetensors"
    if not base.exists():
        write_tiny_sd15_checkpoint(str(base), seed=1, v_prediction=True, unet_std=0.1)
    data = root / "data"
    make_dataset(str(data), 64, size=(96, 96), seed=11, broken=False, caption="shapes on a grey background")
    curves = {}
    for name, zero in (("instances", False), ("zeroed", True)):
        out = root / name
        cfg = _config(root / f"{name}.toml", base, data, root / "cache", out, zero)
        run(trainer_cmd("instancediffusion", cfg), comfy, root / f"{name}.log", timeout=3000)
        summary = json.loads((out / "summary.json").read_text())
        curves[name] = {int(k): v for k, v in summary["eval_loss"].items()}
    a, z = curves["instances"], curves["zeroed"]
    steps = sorted(a)
    (root / "learning_curves.json").write_text(json.dumps({"steps": steps, "instances": [a[s] for s in steps],
                                                           "zeroed": [z[s] for s in steps]}, indent=1))
    print("\nheld-out eval loss (16 samples x t = 100, 300, 500, 700, 900; v-prediction)")
    for s in steps:
        print(f"  step {s:4d}: instances {a[s]:.5f}   instance input zeroed {z[s]:.5f}")
    assert steps == sorted(z) == list(range(0, STEPS + 1, EVERY))
    assert a[0] == z[0]  # the same untrained adapter (zero gates: the grounding has no effect yet)
    print(f"  gap at the end: {100 * (z[STEPS] - a[STEPS]) / z[STEPS]:.4f} % of the zeroed run's loss")
    # below the baseline at each of the last three evaluations (the margin is small here: see the docstring)
    assert all(a[s] < z[s] for s in steps[-3:]), curves
