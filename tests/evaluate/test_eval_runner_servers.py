"""The runner end to end against real ComfyUI servers (``main.py`` subprocesses with the pack and the tiny test
models): the shipped workflows as they are (UI format, loaders swapped for the tiny models), a 6-item benchmark on
two servers with one killed mid-run, resume, scoring with tiny random-weight models and the HTML report.

Runs on the 2024 build by default and on 0.8.0 with ``COMFYUI_PATH=$PWD/.cache/comfyui-0.8.0
PYTHONPATH=$PWD/.cache/py-0.8.0``.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from comfy_env import REPO_ROOT, find_comfyui, launch_server
from PIL import Image

from evaluate.benchmark_file import item_file_stem, write_benchmark
from evaluate.runner.engine import RunOptions, run_benchmark
from evaluate.runner.manifest import read_lines
from evaluate.runner.slots import BenchmarkWorkflow, ablation_overrides
from evaluate.runner.workflow_format import WorkflowError, input_specs_from_object_info, load_workflow, to_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKFLOWS = REPO_ROOT / "workflows"
SIZE = 128


def _module(name: str):
    """A test-node module loaded by its file (the package's __init__ would boot ComfyUI's model management)."""
    spec = importlib.util.spec_from_file_location(f"_eval_{name}", REPO_ROOT / "tests" / "comfy_testnodes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_tiny_weights(models: Path) -> None:
    sys.path.insert(0, str(find_comfyui()))  # ifa_helpers imports folder_paths (path set-up only)
    _module("tiny_instancediffusion").write_safetensors(str(models / "instancediffusion" / "tiny_id.safetensors"))
    _module("ifa_helpers").write_tiny_ifadapter(str(models / "ifadapter" / "tiny_ifa.safetensors"), seed=0, alpha=0.5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = []
    try:
        for name in ("a", "b"):
            srv = launch_server(tmp_path_factory.mktemp(f"server_{name}"))
            started.append(srv)
            _write_tiny_weights(srv.work_dir / "models")
        yield started
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture(scope="module")
def specs(servers):
    return input_specs_from_object_info(servers[0].get_json("/object_info"))


def tiny_workflow(specs: dict, name: str, arch: str, out: Path) -> Path:
    """The shipped UI-format workflow converted by the runner, its loaders swapped for the tiny test models and its
    steps cut to 2, saved as an API-format file (the runner takes both formats)."""
    prompt = to_api(load_workflow(str(WORKFLOWS / name)), specs)
    for nid, node in list(prompt.items()):
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            prompt[nid] = {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": arch, "seed": 0}}
        elif ct == "IFAInstanceDiffusionLoader":
            inp["model_name"] = "tiny_id.safetensors"
        elif ct == "IFAAdapterLoader":
            inp["ifadapter_name"] = "tiny_ifa.safetensors"
        elif ct in ("KSampler", "IFAInstanceDiffusionSampler"):
            inp["steps"] = 2
    path = out / f"{arch}.json"
    path.write_text(json.dumps(prompt))
    return path


def layout(i: int, w: int = SIZE, h: int = SIZE) -> dict:
    return {"format": "instance-layout", "version": 1, "width": w, "height": h, "prompt": f"a garden, take {i}",
            "instances": [{"description": "a red ball", "label": "ball",
                           "regions": [{"kind": "box", "box": [8 + i, 8, 60 + i, 70]}]},
                          {"description": "a blue cube", "label": "cube",
                           "regions": [{"kind": "box", "box": [64, 40 + i, 120, 110]}]}]}


def benchmark(path: Path, n: int = 6) -> Path:
    write_benchmark(str(path), [{"id": f"item-{i}", "seed": 100 + i, "layout": layout(i)} for i in range(n)])
    return path


# ------------------------------------------------------------------------------------------ shipped workflows
@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.json")))
def test_every_shipped_workflow_has_its_slots_found(specs, name):
    prompt = to_api(load_workflow(str(WORKFLOWS / name)), specs)
    if name == "Instance layout preview.json":  # draws the layout, samples nothing
        with pytest.raises(WorkflowError, match="no sampler with a seed"):
            BenchmarkWorkflow.from_prompt(prompt)
        return
    wf = BenchmarkWorkflow.from_prompt(prompt)
    assert [prompt[n]["class_type"] for n in wf.layout_nodes] == ["IFAInstanceLayout"]
    assert len(wf.seed_nodes) == 1 and prompt[wf.output_node]["class_type"] == "SaveImage"
    assert [prompt[n]["class_type"] for n in wf.size_nodes] == ["EmptyLatentImage"]
    assert [prompt[n]["class_type"] for n in wf.text_nodes] == ["CLIPTextEncode"]
    from evaluate.benchmark_file import parse_item

    item = parse_item(3, {"id": "x", "seed": 77, "layout": layout(0, 256, 192)})
    p = wf.for_item(item)
    sampler, name_ = wf.seed_nodes[0]
    assert p[sampler]["inputs"][name_] == 77
    assert (p[wf.size_nodes[0]]["inputs"]["width"], p[wf.size_nodes[0]]["inputs"]["height"]) == (256, 192)
    assert p[wf.text_nodes[0]]["inputs"]["text"] == "a garden, take 0"
    assert json.loads(p[wf.layout_nodes[0]]["inputs"]["layout"])["instances"][1]["label"] == "cube"
    assert wf.prompt == prompt, "for_item must not change the workflow"


def test_ablation_options_set_the_pack_inputs(specs):
    prompt = to_api(load_workflow(str(WORKFLOWS / "InstanceDiffusion MIS sampler.json")), specs)
    wf = BenchmarkWorkflow.from_prompt(prompt, ablation_overrides(scaleu="off", mis=0.0))
    by_type = {n["class_type"]: n["inputs"] for n in wf.prompt.values()}
    assert by_type["IFAApplyInstanceDiffusion"]["scaleu"] is False and by_type["IFAInstanceDiffusionSampler"]["mis"] == 0
    assert wf.hash != BenchmarkWorkflow.from_prompt(prompt).hash
    ifa = to_api(load_workflow(str(WORKFLOWS / "IFAdapter layout to image.json")), specs)
    wf = BenchmarkWorkflow.from_prompt(ifa, ablation_overrides(ifadapter_tokens="eot"))
    apply = next(n for n in wf.prompt.values() if n["class_type"] == "IFAApplyIFAdapter")
    assert apply["inputs"]["token_set"] == "EoT only (no appearance)"
    assert "token_set" in dict((n, o) for n, _, o in specs["IFAApplyIFAdapter"])
    with pytest.raises(WorkflowError, match="IFAApplyIFAdapter.token_set: no node"):
        BenchmarkWorkflow.from_prompt(prompt, ablation_overrides(ifadapter_tokens="eot"))


# ------------------------------------------------------------------------------------------ two servers, one dies
def test_two_servers_one_killed_mid_run_every_item_once_then_resume(servers, specs, tmp_path):
    a, b = servers
    wf = tiny_workflow(specs, "InstanceDiffusion boxes.json", "sd15", tmp_path)
    bench = benchmark(tmp_path / "bench.jsonl")
    out = tmp_path / "run"
    killed = {}

    def on_event(kind, item, server):
        if kind == "step" and server == b.url and not killed:  # the sampler of server b is running an item
            killed["item"] = item.id
            b.proc.kill()

    opts = RunOptions(str(bench), str(wf), str(out), [a.url, b.url])
    s = run_benchmark(opts, on_event=on_event)
    assert killed, "server b never started sampling an item"
    assert s.ok and s.generated == 6 and s.skipped == 0, s
    manifest = read_lines(str(out / "manifest.jsonl"))
    assert sorted(e["id"] for e in manifest) == [f"item-{i}" for i in range(6)]  # each exactly once
    by_id = {e["id"]: e for e in manifest}
    assert by_id[killed["item"]]["server"] == a.url  # the killed server's item went to the other one
    assert {e["workflow_hash"] for e in manifest} == {s.workflow_hash}
    for e in manifest:
        assert e["seed"] == 100 + int(e["id"].split("-")[1]) and e["seconds"] > 0
        with Image.open(out / e["image"]) as im:
            assert im.size == (SIZE, SIZE)
        assert e["image"] == f"images/{item_file_stem(e['id'])}.png"
    errors = read_lines(str(out / "errors.jsonl"))
    assert [(x["id"], x["server"], x["retried"]) for x in errors] == [(killed["item"], b.url, True)]
    assert not list(out.glob("images/.tmp-*"))
    # resume: nothing left to do; b is dead and says so, a answers
    s2 = run_benchmark(RunOptions(str(bench), str(wf), str(out), [a.url, b.url]))
    assert (s2.generated, s2.skipped, s2.ok) == (0, 6, True)
    assert len(read_lines(str(out / "manifest.jsonl"))) == 6
