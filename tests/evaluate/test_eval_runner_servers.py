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
            inp["steps"] = 1
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
@pytest.fixture(scope="module")
def sd15_run(servers, specs, tmp_path_factory):
    """The 6-item benchmark through the shipped InstanceDiffusion workflow on both servers; server b is killed while
    its sampler runs its first item."""
    a, b = servers
    tmp = tmp_path_factory.mktemp("sd15_run")
    wf = tiny_workflow(specs, "InstanceDiffusion boxes.json", "sd15", tmp)
    bench = benchmark(tmp / "bench.jsonl")
    out = tmp / "run"
    killed = {}

    def on_event(kind, item, server):
        if kind == "step" and server == b.url and not killed:  # the sampler of server b is running an item
            killed["item"] = item.id
            b.proc.kill()

    s = run_benchmark(RunOptions(str(bench), str(wf), str(out), [a.url, b.url]), on_event=on_event)
    return {"summary": s, "killed": killed, "bench": bench, "wf": wf, "out": out}


def test_two_servers_one_killed_mid_run_every_item_generated_once(servers, sd15_run):
    a, b = servers
    s, killed, out = sd15_run["summary"], sd15_run["killed"], sd15_run["out"]
    assert killed, "server b never started sampling an item"
    assert s.ok and s.generated == 6 and s.skipped == 0, s
    manifest = read_lines(str(out / "manifest.jsonl"))
    assert sorted(e["id"] for e in manifest) == [f"item-{i}" for i in range(6)]  # each exactly once
    by_id = {e["id"]: e for e in manifest}
    assert by_id[killed["item"]]["server"] == a.url  # the killed server's item went to the other one
    assert {e["workflow_hash"] for e in manifest} == {s.workflow_hash}
    for e in manifest:
        assert e["seed"] == 100 + int(e["id"].split("-")[1]) and e["seconds"] > 0 and e["finished"].endswith("Z")
        with Image.open(out / e["image"]) as im:
            assert im.size == (SIZE, SIZE)
        assert e["image"] == f"images/{item_file_stem(e['id'])}.png"
    errors = read_lines(str(out / "errors.jsonl"))
    assert [(x["id"], x["server"], x["retried"]) for x in errors] == [(killed["item"], b.url, True)]
    assert not list(out.glob("images/.tmp-*"))
    saved = json.loads((out / "workflow.json").read_text())
    assert {n["class_type"] for n in saved.values()} >= {"IFAInstanceLayout", "IFAApplyInstanceDiffusion", "SaveImage"}


def test_resume_skips_done_items_and_refuses_another_workflow(servers, sd15_run, tmp_path):
    a, b = servers
    out, bench = sd15_run["out"], sd15_run["bench"]
    logs = []
    s2 = run_benchmark(RunOptions(str(bench), str(sd15_run["wf"]), str(out), [a.url, b.url]), log=logs.append)
    assert (s2.generated, s2.skipped, s2.ok) == (0, 6, True)
    assert any(b.url in m and "unreachable" in m for m in logs), logs  # the dead server is named
    assert len(read_lines(str(out / "manifest.jsonl"))) == 6
    with pytest.raises(ValueError, match="made with workflow .* use a new --out"):
        run_benchmark(RunOptions(str(bench), str(sd15_run["wf"]), str(out), [a.url],
                                 overrides=ablation_overrides(scaleu="off")))


def test_sdxl_ifadapter_run_with_the_token_set_ablation(servers, specs, tmp_path):
    a, _ = servers
    wf = tiny_workflow(specs, "IFAdapter layout to image.json", "sdxl", tmp_path)
    bench = benchmark(tmp_path / "bench.jsonl")
    full = run_benchmark(RunOptions(str(bench), str(wf), str(tmp_path / "full"), [a.url], limit=2))
    eot = run_benchmark(RunOptions(str(bench), str(wf), str(tmp_path / "eot"), [a.url], limit=2,
                                   overrides=ablation_overrides(ifadapter_tokens="eot")))
    assert full.ok and eot.ok and full.generated == eot.generated == 2 and full.workflow_hash != eot.workflow_hash
    name = f"images/{item_file_stem('item-0')}.png"
    with Image.open(tmp_path / "full" / name) as x, Image.open(tmp_path / "eot" / name) as y:
        assert x.size == y.size == (SIZE, SIZE) and x.tobytes() != y.tobytes()


# ------------------------------------------------------------------------------------------ bad input
def test_bad_lines_unreachable_server_and_wrong_size_are_named_and_the_run_goes_on(servers, specs, tmp_path):
    from comfy_env import free_port

    a, _ = servers
    wf = tiny_workflow(specs, "InstanceDiffusion boxes.json", "sd15", tmp_path)
    outside = layout(0)
    outside["instances"][0]["regions"][0]["box"] = [0, 0, 400, 10]
    lines = [json.dumps({"id": "good-1", "seed": 1, "layout": layout(1)}),
             "{not json",
             json.dumps({"id": "outside", "seed": 2, "layout": outside}),
             json.dumps({"id": "odd-size", "seed": 3, "layout": layout(2, 132, 132)}),
             json.dumps({"id": "good-1", "seed": 4, "layout": layout(3)}),
             json.dumps({"id": "good-2", "seed": 5, "layout": layout(4)})]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(lines) + "\n")
    dead = f"http://127.0.0.1:{free_port()}"
    logs = []
    s = run_benchmark(RunOptions(str(bench), str(wf), str(tmp_path / "run"), [dead, a.url]), log=logs.append)
    assert s.generated == 2 and not s.ok
    text = "\n".join(s.failed)
    assert "item 2: not valid JSON" in text
    assert "item 3 ('outside'): not a valid layout: instance 1" in text and "x1=400" in text
    assert "item 4 ('odd-size'): the image is 128x128 but its layout is 132x132" in text
    assert "item 5 ('good-1'): the id is already used by item 1" in text
    assert any(dead in m and "unreachable" in m and "takes no items" in m for m in logs), logs
    errors = {x["number"] for x in read_lines(str(tmp_path / "run" / "errors.jsonl"))}
    assert errors == {2, 3, 4, 5}
    ids = sorted(e["id"] for e in read_lines(str(tmp_path / "run" / "manifest.jsonl")))
    assert ids == ["good-1", "good-2"]
    with pytest.raises(RuntimeError, match="no server answered"):
        run_benchmark(RunOptions(str(bench), str(wf), str(tmp_path / "run2"), [dead]))


# ------------------------------------------------------------------------------------------ score and report
@pytest.fixture(scope="module")
def eval_models(tmp_path_factory):
    import eval_tiny_models as tiny

    return tiny.save_eval_models(tmp_path_factory.mktemp("eval_models"))


def test_score_and_report_on_the_run(sd15_run, eval_models):
    from evaluate.report.write import write_report
    from evaluate.scoring.cli import score_run

    out = sd15_run["out"]
    metrics = ["ap", "ifs", "clip", "clip_image", "attr_colour"]
    pairs = [("detection", "tiny-owlv2"), ("clip", "tiny-clip"), ("vlm", "tiny-llava")]
    summary = score_run(str(out), metrics, pairs, str(eval_models), device="cpu")
    recs = read_lines(str(out / "scores" / "instances.jsonl"))
    assert len(recs) == 12 and summary["images"] == 6 and summary["instances"] == 12
    assert sorted({r["item"] for r in recs}) == [f"item-{i}" for i in range(6)]
    assert [r["instance"] for r in recs[:2]] == [1, 2] and recs[0]["category"] == "ball"
    for r in recs:
        assert 0 <= r["iou"] <= 1 and isinstance(r["localised"], bool) and -1 <= r["clip"] <= 1
        assert r["attr_colour"] in (0, 1, None)
        assert r["failed"] == (not r["localised"] or r["vlm"]["tiny-llava"] is not True)
    # the summary is what the per-instance records add up to
    assert summary["localised"] == pytest.approx(sum(r["localised"] for r in recs) / 12)
    ok = sum(r["localised"] and r["vlm"]["tiny-llava"] is True for r in recs)
    assert summary["ifs"]["tiny-llava"] == pytest.approx(ok / 12) == pytest.approx(summary["ifs"]["mean"])
    assert summary["failed_instances"] == sum(r["failed"] for r in recs)
    assert 0 <= summary["box"]["AP"] <= 1 and summary["ifs_versions"]["prompt"] == "ifs-v1"
    assert summary["models"] == ["detection=tiny-owlv2", "clip=tiny-clip", "vlm=tiny-llava"]

    paths = write_report(str(out))
    names = sorted(Path(p).name for p in paths)
    assert names == ["instances.jsonl", "report.html", "report.json", "report.md"]
    md = (out / "report" / "report.md").read_text()
    assert "| box AP |" in md and "| IFS rate (tiny-llava) |" in md and s_hash(sd15_run) in md
    rep = json.loads((out / "report" / "report.json").read_text())
    assert {r["key"] for r in rep["metrics"]} >= {"box.AP", "localised", "ifs.mean", "clip", "clip_image"}
    page = (out / "report" / "report.html").read_text()
    assert page.count('class="card') == 6 and page.count("data:image/png;base64,") == 6
    assert 'src="http' not in page and "<link" not in page


def s_hash(run) -> str:
    return run["summary"].workflow_hash


def test_score_cli_names_a_model_of_the_wrong_kind_and_a_missing_one(sd15_run, eval_models, capsys):
    from evaluate.__main__ import main

    out = str(sd15_run["out"])
    rc = main(["score", "--run", out, "--metrics", "ap", "--models",
               f"detection={eval_models / 'clip' / 'tiny-clip'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: detection model" in err and "clip" in err, err
    rc = main(["score", "--run", out, "--metrics", "ap", "--models", "detection=IDEA-Research/grounding-dino-tiny",
               "--models-root", str(eval_models)])
    err = capsys.readouterr().err
    assert rc == 2 and "not found: put it in" in err and "IDEA-Research--grounding-dino-tiny" in err, err
    rc = main(["score", "--run", out, "--metrics", "ifs", "--models", "detection=tiny-owlv2",
               "--models-root", str(eval_models)])
    assert rc == 2 and "metric 'ifs' needs a vlm model" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ in-process, CLI
def test_cli_runs_in_process_without_servers(specs, tmp_path):
    """``python -m evaluate run`` with no --servers boots ComfyUI in its own process (a subprocess here, as a user
    runs it) and generates through the executor; then score and report run from the same CLI."""
    import os
    import subprocess

    from comfy_env import make_custom_nodes_dir

    models = tmp_path / "models"
    for kind in ("instancediffusion", "ifadapter"):
        (models / kind).mkdir(parents=True)
    _write_tiny_weights(models)
    custom = make_custom_nodes_dir(tmp_path / "custom_nodes")
    wf = tiny_workflow(specs, "InstanceDiffusion boxes.json", "sd15", tmp_path)
    bench = benchmark(tmp_path / "bench.jsonl", n=2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evaluate", "run", "--benchmark", str(bench), "--workflow", str(wf), "--out",
           str(out), "--comfyui", str(find_comfyui()), "--custom-nodes", str(custom), "--comfy-models", str(models)]
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generated 2, already done 0, failed 0" in r.stdout
    manifest = read_lines(str(out / "manifest.jsonl"))
    assert sorted(e["id"] for e in manifest) == ["item-0", "item-1"] and {e["server"] for e in manifest} == {
        "in-process"}
    assert "100%" in r.stderr  # the progress bar ran to the end
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert r.returncode == 0 and "generated 0, already done 2" in r.stdout, r.stderr[-3000:]
