"""Every trainer recipe end to end on CPU: a tiny random-weight base model as a single-file checkpoint loaded by
ComfyUI's own loader, a synthetic dataset of coloured shapes (with broken samples), real subprocess runs (one
process, a killed-and-resumed one, two processes under torchrun with Gloo), and the exported file used in a ComfyUI
graph. Parametrised over ``training/recipe_fixtures`` (one module per recipe).

Runs share one module-scoped reference run per recipe; every run uses one CPU thread per process so that results are
reproducible bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from training.recipe_fixtures import fixtures

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "tests" / "training" / "launch_tiny.py"
STEPS = 3
BROKEN = {"broken_image", "broken_layout", "no_layout"}
FIXTURES = fixtures()
EVAL_METRICS = ["clip_score", "instance_clip_score", "colour_binding", "box_ap", "ifs"]
# a preview / eval layout whose descriptions start with a colour word, so colour binding has instances to score
COLOURS = {"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "shapes on grey",
           "instances": [{"description": "red circle", "regions": [{"kind": "box", "box": [4, 4, 36, 36]}]},
                         {"description": "blue square", "regions": [{"kind": "box", "box": [28, 24, 60, 60]}]}]}


def write_config(path: Path, setup: dict, out: Path, **train) -> Path:
    fx = setup["fixture"]
    t = dict(output_dir=str(out), max_steps=STEPS, batch_size=2, micro_batch_size=2, lr=3e-3, warmup_steps=1,
             precision="fp32", gradient_checkpointing=False, checkpoint_every=1, keep_checkpoints=5, log_every=1,
             eval_samples=2, eval_timesteps=[100, 400, 700, 950], eval_batch_size=3, eval_train_split=True, seed=7)
    t.update(fx.train)
    t.update(train)
    model = fx.model_keys(setup["root"]) if fx.model_keys else {}
    lines = ["[model]", f'base = "{setup["base"]}"', *(f"{k} = {json.dumps(v)}" for k, v in model.items()),
             "[data]", f'folder = "{setup["data"]}"', "resolution = 64", "bucket_step = 32", "holdout = 0.25",
             "[cache]", f'dir = "{setup["cache"]}"', "[train]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in t.items()]
    layouts = [str(setup["data"] / "shape_000.json"), str(setup["root"] / "colours.json")]
    lines += ["[samples]", f"every = {STEPS}", f"layouts = {json.dumps(layouts)}", "steps = 2", "cfg = 3.0"]
    lines += ["[eval]", f"every = {STEPS}", f"metrics = {json.dumps(EVAL_METRICS)}", 'layouts = "both"',
              f'models_dir = "{setup["eval_models"]}"', 'clip = "tiny-clip"', 'detector = "tiny-owlv2"',
              'vlm = "tiny-llava"', "batch_size = 4"]
    lines += [f"[{fx.recipe}]"]
    lines += [f"{k} = {_toml(v)}" for k, v in fx.options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def trainer_cmd(recipe: str, config: Path, nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, str(LAUNCH), recipe, "--config", str(config)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(LAUNCH),
            recipe, "--config", str(config)]


def env(comfy) -> dict:
    e = dict(os.environ, COMFYUI_PATH=str(comfy.comfy_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("WORLD_SIZE", None)
    return e


def run(cmd: list[str], comfy, log: Path, timeout: float = 600) -> str:
    with open(log, "wb") as f:
        p = subprocess.run(cmd, cwd=REPO, env=env(comfy), stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    text = log.read_text(errors="replace")
    assert p.returncode == 0, text[-6000:]
    return text


@pytest.fixture(scope="module", params=list(FIXTURES))
def setup(request, comfy, tmp_path_factory):
    from training.synthetic import make_dataset

    fx = FIXTURES[request.param]
    fx.register()
    root = tmp_path_factory.mktemp(f"train-{fx.id}")
    base = comfy.models_dir / "checkpoints" / fx.base_file
    if not base.exists():
        fx.write_base(str(base))
    data = root / "data"
    assert set(make_dataset(str(data), 4, seed=3)) == BROKEN
    (root / "colours.json").write_text(json.dumps(COLOURS))
    eval_models = _tiny_eval_models(tmp_path_factory)
    return {"fixture": fx, "recipe": fx.recipe, "root": root, "base": base, "data": data, "cache": root / "cache",
            "steps": STEPS, "samples": 4, "base_sha256": hashlib.sha256(base.read_bytes()).hexdigest(),
            "eval_models": eval_models}


_EVAL_MODELS: list[Path] = []


def _tiny_eval_models(tmp_path_factory) -> Path:
    """Tiny random-weight CLIP, OWLv2 and LLaVA in a models folder (tests/evaluate/eval_tiny_models.py), once."""
    if not _EVAL_MODELS:
        sys.path.insert(0, str(REPO / "tests" / "evaluate"))
        import eval_tiny_models as tiny  # sets HF_HUB_OFFLINE: nothing downloads, here or in the trainer

        root = tmp_path_factory.mktemp("eval-models")
        tiny.save_clip(root / "clip" / "tiny-clip")
        tiny.save_owlv2(root / "detection" / "tiny-owlv2")
        tiny.save_llava(root / "vlm" / "tiny-llava")
        _EVAL_MODELS.append(root)
    return _EVAL_MODELS[0]


@pytest.fixture(scope="module")
def reference(setup, comfy):
    """One process, 3 steps, checkpoint every step: the run the others are compared with."""
    out = setup["root"] / "ref"
    cfg = write_config(setup["root"] / "ref.toml", setup, out)
    t0 = time.time()
    log = run(trainer_cmd(setup["recipe"], cfg), comfy, setup["root"] / "ref.log")
    return {"out": out, "log": log, "seconds": time.time() - t0, "config": cfg,
            "summary": json.loads((out / "summary.json").read_text()),
            "result": out / f"{setup['recipe']}.safetensors"}


def _evals(summary: dict, key: str = "eval_loss") -> dict[int, float]:
    return {int(k): v for k, v in summary[key].items()}


def test_loss_falls_bad_samples_are_reported_and_previews_are_written(setup, reference):
    s = reference["summary"]
    ev, ev_train = _evals(s), _evals(s, "eval_loss_train")
    assert set(ev) == set(ev_train) == {0, STEPS}
    if setup["fixture"].learns_in_three_steps:
        assert ev_train[STEPS] < ev_train[0], ev_train  # fixed draws on training samples: it has learned something
    assert ev[STEPS] != ev[0]  # the held-out loss follows the weights
    assert s["eval_samples"] == {"eval_loss": 1, "eval_loss_train": 2} and len(s["held_out"]) == 1
    assert {b["name"] for b in s["skipped"]} == BROKEN
    for name in BROKEN:
        assert f"skipped sample {name}" in reference["log"]
    assert "unreadable image broken_image.png" in reference["log"]
    assert "x1=999 is outside the canvas" in reference["log"]
    assert "4 samples (3 skipped, 1 held out)" in reference["log"]
    assert s["data"]["samples"] == 4
    lines = [json.loads(x) for x in (reference["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3]
    assert all(np.isfinite(m["loss"]) and m["grad_norm"] > 0 for m in lines if "loss" in m)
    assert [(m["step"], m["eval_loss"]) for m in lines if "eval_loss" in m] == sorted(ev.items())
    assert [(m["step"], m["eval_loss_train"]) for m in lines if "eval_loss" in m] == sorted(ev_train.items())
    pic = np.asarray(Image.open(reference["out"] / "samples" / f"step-{STEPS:08d}-shape_000.png"))
    assert (reference["out"] / "samples" / f"step-{STEPS:08d}-colours.png").is_file()
    assert pic.shape[1] > 2 * 64 and pic.std() > 0  # the generated image with the layout drawn beside it
    ckpts = sorted(p.name for p in (reference["out"] / "checkpoints").iterdir())
    assert ckpts == [f"step-{i:08d}.pt" for i in range(1, STEPS + 1)]


def test_eval_metrics_run_on_generated_images_and_are_logged_with_the_loss(setup, reference):
    s = reference["summary"]
    scores = {int(k): v for k, v in s["eval_metrics"].items()}
    assert set(scores) == {0, STEPS}
    keys = {"clip_score", "instance_clip_score", "colour_binding", "box_AP", "box_AP50", "ifs"}
    for values in scores.values():
        assert set(values) == keys, values
        assert 0.0 <= values["clip_score"] <= 100.0 and -1.0 <= values["instance_clip_score"] <= 1.0
        assert values["colour_binding"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 2 scored instances, 1 colour layout
        assert 0.0 <= values["box_AP"] <= 1.0 and 0.0 <= values["ifs"] <= 1.0
    lines = [json.loads(x) for x in (reference["out"] / "metrics.jsonl").read_text().splitlines()]
    logged = {m["step"]: m for m in lines if "eval/clip_score" in m}
    assert sorted(logged) == [0, STEPS]
    for at, m in logged.items():
        assert {k[5:]: v for k, v in m.items() if k.startswith("eval/")} == scores[at]
    # the images scored: the two preview layouts and the held-out sample, each with its layout drawn beside it
    held = s["held_out"][0]
    for at in (0, STEPS):
        for name in ("shape_000", "colours", held):
            pic = np.asarray(Image.open(reference["out"] / "eval" / f"step-{at:08d}-{name}.png"))
            assert pic.shape[1] > 2 * 64 and pic.std() > 0


def test_resume_after_kill_continues_exactly(setup, reference, comfy):
    out = setup["root"] / "killed"
    cfg = write_config(setup["root"] / "killed.toml", setup, out)
    first = out / "checkpoints" / "step-00000001.pt"
    with open(setup["root"] / "killed.log", "wb") as f:
        p = subprocess.Popen(trainer_cmd(setup["recipe"], cfg), cwd=REPO, env=env(comfy), stdout=f,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        while not first.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.exists(), (setup["root"] / "killed.log").read_text()[-4000:]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()  # it really died mid-run
    done_before = len(list((out / "checkpoints").glob("step-*.pt")))
    assert done_before < STEPS
    log = run(trainer_cmd(setup["recipe"], cfg), comfy, setup["root"] / "resumed.log")
    assert "resumed from" in log
    got, want = load_file(str(out / reference["result"].name)), load_file(str(reference["result"]))
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), "resumed weights differ from the uninterrupted run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weight_digests"] == reference["summary"]["weight_digests"]
    # the eval loss of the resumed run at the end is bitwise the uninterrupted run's
    assert _evals(summary)[STEPS] == _evals(reference["summary"])[STEPS]


def test_two_processes_keep_identical_weights_and_match_one_process(setup, reference, comfy):
    out = setup["root"] / "ddp"
    cfg = write_config(setup["root"] / "ddp.toml", setup, out, micro_batch_size=1, gradient_checkpointing=True)
    log = run(trainer_cmd(setup["recipe"], cfg, nproc=2), comfy, setup["root"] / "ddp.log")
    assert "reusing the cache" in log
    assert "2 processes x micro-batch 1 x 1 accumulation = batch 2" in log
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and len(s["weight_digests"]) == 2
    assert s["weight_digests"][0] == s["weight_digests"][1]  # both ranks hold bitwise identical weights
    got, want = load_file(str(out / reference["result"].name)), load_file(str(reference["result"]))
    if setup["fixture"].check_trained:
        setup["fixture"].check_trained(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=2e-5, msg=f"{k} differs from 1 process")
    # the eval loss is computed in the same chunks whatever the world size: bitwise equal on equal weights (step 0)
    ev, ref = _evals(s), _evals(reference["summary"])
    assert ev[0] == ref[0]
    # so are the [eval] metrics (rank 0 generates and scores the same images)
    assert json.dumps(s["eval_metrics"]["0"]) == json.dumps(reference["summary"]["eval_metrics"]["0"])
    assert ev[STEPS] == pytest.approx(ref[STEPS], rel=1e-4)


def test_exported_file_loads_in_the_loader_and_samples_in_a_graph(setup, reference, comfy):
    if setup["fixture"].check_export is None:
        pytest.fail(f"recipe fixture {setup['recipe']} has no check_export")
    setup["fixture"].check_export(comfy, setup, reference["result"])


def test_export_command_rebuilds_the_final_file_from_a_checkpoint(reference, tmp_path):
    from train.export import main as export_main

    dst = tmp_path / "again.safetensors"
    export_main([str(reference["out"] / "checkpoints" / f"step-{STEPS:08d}.pt"), str(dst)])
    got, want = load_file(str(dst)), load_file(str(reference["result"]))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with safe_open(str(dst), framework="pt") as a, safe_open(str(reference["result"]), framework="pt") as b:
        assert a.metadata() == b.metadata()


# only IFAdapter had a command of its own (python -m train.ifadapter) before the engine: its fixtures only
@pytest.mark.parametrize("setup", [k for k, fx in FIXTURES.items() if fx.recipe == "ifadapter"], indirect=True)
def test_the_old_ifadapter_command_still_runs(setup, reference, comfy):
    log = run([sys.executable, str(LAUNCH), "--module", "train.ifadapter", "--config", str(reference["config"]),
               "--cache-only"], comfy, setup["root"] / "old_command.log")
    assert "reusing the cache" in log and '"samples": 4' in log
