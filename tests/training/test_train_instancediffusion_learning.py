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
for this recipe).

Why (measured with a colour probe: the trained adapter's held-out loss on the same images with every instance's
colour word replaced by another colour): the adapter ignores the descriptions entirely. Right vs wrong colours
differ by < 1e-7 after every run tried, from scratch or fine-tuning, lr 1e-2 / 3e-3 / 1e-3 / 3e-4, 150-300 steps,
1-3 small shapes, one large shape, or one colour filling the whole image (box = image), on this 32-channel base and
on a 64-channel one (GroupNorm groups of 2 channels, so a uniform per-channel shift survives the UNet's last
GroupNorm, which at 32 channels normalises it away). After 300 steps at lr 1e-3 the UNet's output (one latent, t =
700) moves 0.00046 (of 3.47) when "a red circle" becomes "a blue circle", 0.036 when the instance is removed; the
box token's colour-dependent part shrank from 0.39 at the official initialisation to 0.034 (training suppresses it
as noise). At lr 1e-2 the position net's MLP blows up (grounding-token norm 2.8 -> 2019, the colour part 14 % -> 0.5
%). InstanceDiffusion has no path from an instance to its pixels but self-attention whose queries are the frozen
UNet's features: a random frozen UNet's features carry neither object content nor (away from the borders) position,
and the 4 informative tokens of an instance are diluted among 184 grounding + HW visual keys behind zero-initialised
gates (an explanation consistent with these measurements, not itself measured). With lr 1e-3 and 300 steps the
instance run does end below the zeroed run at all six evaluations (3.77596 vs 3.77646 at step 300, 0.013 %), but the
probe shows that gap is not colour. Showing the recipe learn colours needs a base whose features carry content and
position (a real SD1.5) and GPU-hours; neither is available here.
The test is therefore a strict xfail: it states the requirement, records the curves, and turns into a
failure (XPASS, strict) the day the gap appears, so the marker cannot outlive the problem.
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
