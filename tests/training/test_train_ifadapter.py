"""The IFAdapter trainer end to end on CPU: a tiny SDXL single-file checkpoint loaded by ComfyUI's own loader, a
synthetic dataset of coloured shapes (with broken samples), real subprocess runs (one process, a killed-and-resumed
one, two processes under torchrun with Gloo), and the exported file used in a ComfyUI graph.

Runs share one module-scoped reference run; every run uses one CPU thread per process so that results are
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
from integration.graphs import base_graph
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "tests" / "training" / "launch_tiny.py"
STEPS = 3
BROKEN = {"broken_image", "broken_layout", "no_layout"}


def write_config(path: Path, base: Path, data: Path, cache: Path, out: Path, **train) -> Path:
    t = dict(output_dir=str(out), max_steps=STEPS, batch_size=2, micro_batch_size=2, lr=3e-3, warmup_steps=1,
             precision="fp32", gradient_checkpointing=False, checkpoint_every=1, keep_checkpoints=5, log_every=1,
             eval_samples=2, seed=7)
    t.update(train)
    lines = ["[model]", f'base = "{base}"', "resampler = {dim = 64, depth = 2, heads = 2, dim_head = 32, ff_mult = 2}",
             "[data]", f'folder = "{data}"', "resolution = 64", "bucket_step = 32",
             "[cache]", f'dir = "{cache}"', "[train]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in t.items()]
    lines += ["[samples]", f"every = {STEPS}", f'layouts = ["{data / "shape_000.json"}"]', "steps = 2", "cfg = 3.0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def trainer_cmd(config: Path, nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, str(LAUNCH), "--config", str(config)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(LAUNCH),
            "--config", str(config)]


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


@pytest.fixture(scope="module")
def setup(comfy, tmp_path_factory):
    from training.synthetic import make_dataset
    from training.tiny_sdxl_file import register, write_tiny_sdxl_checkpoint

    register()
    root = tmp_path_factory.mktemp("train")
    base = comfy.models_dir / "checkpoints" / "tiny_sdxl_train.safetensors"
    write_tiny_sdxl_checkpoint(str(base), unet_std=0.1)
    data = root / "data"
    assert set(make_dataset(str(data), 4, seed=3)) == BROKEN
    return {"root": root, "base": base, "data": data, "cache": root / "cache"}


@pytest.fixture(scope="module")
def reference(setup, comfy):
    """One process, 3 steps, checkpoint every step: the run the others are compared with."""
    out = setup["root"] / "ref"
    cfg = write_config(setup["root"] / "ref.toml", setup["base"], setup["data"], setup["cache"], out)
    t0 = time.time()
    log = run(trainer_cmd(cfg), comfy, setup["root"] / "ref.log")
    return {"out": out, "log": log, "seconds": time.time() - t0,
            "summary": json.loads((out / "summary.json").read_text())}


def test_loss_falls_bad_samples_are_reported_and_previews_are_written(reference):
    s = reference["summary"]
    ev = {int(k): v for k, v in s["eval_loss"].items()}
    assert ev[STEPS] < ev[0], ev  # fixed evaluation draws: the adapter has learned something
    assert {b["name"] for b in s["skipped"]} == BROKEN
    for name in BROKEN:
        assert f"skipped sample {name}" in reference["log"]
    assert "unreadable image broken_image.png" in reference["log"]
    assert "x1=999 is outside the canvas" in reference["log"]
    assert s["data"]["samples"] == 4
    lines = [json.loads(x) for x in (reference["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3]
    assert all(np.isfinite(m["loss"]) and m["grad_norm"] > 0 for m in lines if "loss" in m)
    pic = np.asarray(Image.open(reference["out"] / "samples" / f"step-{STEPS:08d}-shape_000.png"))
    assert pic.shape[1] > 2 * 64 and pic.std() > 0  # the generated image with the layout drawn beside it
    ckpts = sorted(p.name for p in (reference["out"] / "checkpoints").iterdir())
    assert ckpts == [f"step-{i:08d}.pt" for i in range(1, STEPS + 1)]


def _weights(path: Path) -> dict:
    return load_file(str(path))


def test_resume_after_kill_continues_exactly(setup, reference, comfy):
    out = setup["root"] / "killed"
    cfg = write_config(setup["root"] / "killed.toml", setup["base"], setup["data"], setup["cache"], out)
    first = out / "checkpoints" / "step-00000001.pt"
    with open(setup["root"] / "killed.log", "wb") as f:
        p = subprocess.Popen(trainer_cmd(cfg), cwd=REPO, env=env(comfy), stdout=f, stderr=subprocess.STDOUT)
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
    log = run(trainer_cmd(cfg), comfy, setup["root"] / "resumed.log")
    assert "resumed from" in log
    got, want = _weights(out / "ifadapter.safetensors"), _weights(reference["out"] / "ifadapter.safetensors")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), "resumed weights differ from the uninterrupted run"
    assert json.loads((out / "summary.json").read_text())["weight_digests"] == reference["summary"]["weight_digests"]


def test_two_processes_keep_identical_weights_and_match_one_process(setup, reference, comfy):
    out = setup["root"] / "ddp"
    cfg = write_config(setup["root"] / "ddp.toml", setup["base"], setup["data"], setup["cache"], out,
                       micro_batch_size=1, gradient_checkpointing=True)
    log = run(trainer_cmd(cfg, nproc=2), comfy, setup["root"] / "ddp.log")
    assert "reusing the cache" in log
    assert "2 processes x micro-batch 1 x 1 accumulation = batch 2" in log
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and len(s["weight_digests"]) == 2
    assert s["weight_digests"][0] == s["weight_digests"][1]  # both ranks hold bitwise identical weights
    got, want = _weights(out / "ifadapter.safetensors"), _weights(reference["out"] / "ifadapter.safetensors")
    gates = [float(v) for k, v in want.items() if k.endswith(".alpha")]
    assert len(gates) == 16 and min(abs(g) for g in gates) > 1e-3  # the zero-initialised gates did train
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=2e-5, msg=f"{k} differs from 1 process")


def test_exported_adapter_loads_in_the_loader_and_samples_in_a_ksampler_graph(setup, reference, comfy):
    name = "trained_tiny.safetensors"
    dst = comfy.models_dir / "ifadapter" / name
    dst.write_bytes((reference["out"] / "ifadapter.safetensors").read_bytes())
    with safe_open(str(dst), framework="pt") as f:
        meta = f.metadata()
    sha = hashlib.sha256(setup["base"].read_bytes()).hexdigest()
    assert meta["ifadapter_train_base_model_sha256"] == sha
    assert meta["ifadapter_train_steps"] == str(STEPS)
    assert meta["ifadapter_resampler_mask"] == "all-words"
    assert json.loads(meta["ifadapter_train_data"])["samples"] == 4
    layout = {"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "shapes",
              "instances": [{"description": "a red circle", "regions": [{"kind": "box", "box": [4, 4, 40, 40]}]},
                            {"description": "a blue square", "regions": [{"kind": "box", "box": [30, 20, 60, 60]}]}]}
    g = base_graph("sdxl", 64, 64, steps=2, positive="shapes", negative="", save=True)
    g["ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": setup["base"].name}}
    g["lay"] = {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": json.dumps(layout), "file": "",
                                                               "width": 0, "height": 0}}
    g["ifa"] = {"class_type": "IFAAdapterLoader", "inputs": {"ifadapter_name": name, "dtype": "auto"}}
    g["tok"] = {"class_type": "IFAEncodeAppearanceTokens", "inputs": {"clip": ["ckpt", 1], "ifadapter": ["ifa", 0],
                                                                       "layout": ["lay", 0]}}
    g["apply"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
        "model": ["ckpt", 0], "ifadapter": ["ifa", 0], "tokens": ["tok", 0], "layout": ["lay", 0], "scale": 1.0,
        "start_percent": 0.0, "end_percent": 1.0}}
    g["sample"]["inputs"]["model"] = ["apply", 0]
    out = comfy.run(g)
    img = np.asarray(Image.open(comfy.output_path(out["save"]["images"][0])))
    assert img.shape == (64, 64, 3) and img.std() > 0
    adapter = comfy.node_class("IFAAdapterLoader")().load(name, "auto")[0]
    assert adapter.official_mask_quirk is False  # the mask mode it was trained with
    want = _weights(reference["out"] / "ifadapter.safetensors")
    assert all(torch.equal(adapter.state_dict()[k], want[k]) for k in want)


def test_export_command_rebuilds_the_final_file_from_a_checkpoint(reference, tmp_path):
    from train.export import main as export_main

    dst = tmp_path / "again.safetensors"
    export_main([str(reference["out"] / "checkpoints" / f"step-{STEPS:08d}.pt"), str(dst)])
    got, want = _weights(dst), _weights(reference["out"] / "ifadapter.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with safe_open(str(dst), framework="pt") as a, safe_open(str(reference["out"] / "ifadapter.safetensors"),
                                                               framework="pt") as b:
        assert a.metadata() == b.metadata()
