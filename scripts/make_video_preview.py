"""Regenerate docs/images/video_layout_preview.webp: the example layout over time (workflows/InstanceDiffusion video.json)
as the Layout Preview over Frames node draws and animates it.

Run: ``.venv/bin/python scripts/make_video_preview.py`` (boots ComfyUI in-process, runs the node, copies its WEBP).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import comfy_env  # noqa: E402
from workflows_video import VIDEO_LAYOUT  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ifa_vp_"))
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), work, test_nodes=False)
    layout = env.nodes.NODE_CLASS_MAPPINGS["IFAInstanceLayout"]
    w, h = VIDEO_LAYOUT["width"] // 2, VIDEO_LAYOUT["height"] // 2  # half size keeps the file small
    lay = layout().build(w, h, __import__("json").dumps(VIDEO_LAYOUT))["result"][0]
    out = env.nodes.NODE_CLASS_MAPPINGS["IFALayoutPreviewFrames"]().preview(lay, 0, 8.0, 0.45, True)
    rec = out["ui"]["images"][0]
    dst = ROOT / "docs" / "images" / "video_layout_preview.webp"
    shutil.copyfile(work / "temp" / rec["subfolder"] / rec["filename"], dst)
    print(f"wrote {dst} ({dst.stat().st_size // 1024} KiB, {out['result'][0].shape[0]} frames)")


if __name__ == "__main__":
    main()
