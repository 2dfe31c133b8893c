"""Session check (not CI): a 16-frame graph with AnimateDiff-Evolved context windows, grounded by a layout over time.

Needs ComfyUI-AnimateDiff-Evolved (``--ad PATH``) and a ComfyUI it supports (``COMFYUI_PATH``, e.g. 0.8.0). Builds,
with random weights and the real SD1.5 / SDXL widths that motion modules require:

- a motion module with exactly the keys and shapes AnimateDiff-Evolved expects (made from its own classes), saved to
  ``models/animatediff_models`` (SD1.5: AnimateDiff v2 layout with a mid block; SDXL: the AnimateDiff-SDXL beta
  layout, 3 down blocks);
- sd15: ComfyUI's SD1.5 UNet (860 M) + a full-size InstanceDiffusion adapter -> Apply InstanceDiffusion;
- sdxl: an SDXL UNet at real widths with the 16 IFAdapter layers (transformer depth 4 at the 1280 level to fit the
  memory of a CPU box) + official-size IFAdapter processors -> Encode Appearance Tokens -> Apply IFAdapter;

then runs Load AnimateDiff Model -> Apply AnimateDiff Model -> Context Options (Standard Uniform, length 8, overlap
4) -> Use Evolved Sampling -> KSampler on 16 frames, and prints which frames each window's rows were grounded on.

Run: COMFYUI_PATH=.cache/comfyui-0.8.0 PYTHONPATH=.cache/py-0.8.0 .venv/bin/python scripts/animatediff_check.py \
     --ad /work/ext/ComfyUI-AnimateDiff-Evolved [--arch sd15|sdxl|both]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import comfy_env  # noqa: E402

FRAMES, SIZE = 16, 64  # 16 frames of 64x64 px (latent 8x8): the windowing is what is checked, not the pictures


def moving_layout(size: int) -> dict:
    return {"format": "instance-layout", "version": 2, "width": size, "height": size, "frames": FRAMES,
            "prompt": "a cat in a garden", "instances": [
                {"description": "a ginger cat", "regions": [], "keyframes": [
                    {"frame": 0, "regions": [{"kind": "box", "box": [0, 16, 24, 48]}]},
                    {"frame": FRAMES - 1, "regions": [{"kind": "box", "box": [40, 16, 64, 48]}]}]},
                {"description": "a red ball", "regions": [{"kind": "box", "box": [24, 40, 40, 56]}],
                 "frames": [4, 11]}]}


def ad_module(name: str):
    return next(m for k, m in sys.modules.items() if k.endswith(f"animatediff.{name}") and m is not None)


def write_motion_module(folder: Path, arch: str) -> str:
    """A random motion module built from AnimateDiff-Evolved's own classes (so keys and shapes are exactly its)."""
    mad = ad_module("motion_module_ad")
    blocks = {"sd15": (4, True), "sdxl": (3, False)}[arch]
    seed_sd = {f"down_blocks.{blocks[0] - 1}.motion_modules.0.temporal_transformer.transformer_blocks.0."
               f"attention_blocks.1.pos_encoder.pe": torch.zeros(1, 32, 8)}
    if blocks[1]:
        seed_sd["mid_block.motion_modules.0.temporal_transformer.norm.weight"] = torch.zeros(1)
    sd_type = mad.ModelTypeSD.SD1_5 if arch == "sd15" else mad.ModelTypeSD.SDXL
    info = mad.AnimateDiffInfo(sd_type, mad.AnimateDiffFormat.ANIMATEDIFF,
                               mad.AnimateDiffVersion.V2 if blocks[1] else mad.AnimateDiffVersion.V1, "random")
    model = mad.AnimateDiffModel(seed_sd, info)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("pos_encoder.pe"):
            sd[k] = v.clone()
        elif "norm" in k:
            sd[k] = torch.ones_like(v) if k.endswith("weight") else torch.zeros_like(v)
        else:
            sd[k] = torch.randn(v.shape, generator=g) * 0.02
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = f"random_mm_{arch}.safetensors"
    save_file(sd, str(folder / name))
    print(f"motion module {name}: {len(sd)} tensors, {sum(v.numel() for v in sd.values()) / 1e6:.1f} M params")
    return name


def real_sdxl_ifadapter_model():
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    cfg = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
           "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
           "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 1, 1, 4, 4],
           "channel_mult": [1, 2, 4], "transformer_depth_middle": 4, "use_linear_in_transformer": True,
           "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 1, 1, 1, 4, 4, 4],
           "use_temporal_attention": False, "use_temporal_resblock": False, "dtype": torch.float32}
    model = comfy.supported_models.SDXL(cfg).get_model({}, "")
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0, 0.02)
    model.diffusion_model.eval().requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def register_nodes(env, arch: str) -> None:
    """Script-local loader nodes for the random real-size models (no files for UNet / adapters)."""
    from bench_ifadapter import official_size_processors
    from bench_instancediffusion import build_sd15_unet, full_adapter
    from comfy_testnodes.tiny_models import tiny_checkpoint

    classes = env.nodes.NODE_CLASS_MAPPINGS
    id_mod = sys.modules[classes["IFAApplyInstanceDiffusion"].__module__]
    ifa_mod = sys.modules[classes["IFAApplyIFAdapter"].__module__]
    pack = ifa_mod.__name__.rsplit(".", 2)[0]

    class RealSize:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"arch": (["sd15", "sdxl"],)}}

        RETURN_TYPES = ("MODEL", "CLIP", "VAE", "INSTANCEDIFFUSION", "IFADAPTER")
        FUNCTION = "load"
        CATEGORY = "testing"

        def load(self, arch):
            _, clip, vae = tiny_checkpoint(arch)  # tiny text encoders/VAE with the real context widths
            if arch == "sd15":
                return (build_sd15_unet(), clip, vae, full_adapter(id_mod), None)
            ifa_cls = __import__(f"{pack}.core.ifadapter", fromlist=["IFAdapter"]).IFAdapter
            torch.manual_seed(0)
            adapter = official_size_processors(ifa_cls)
            return (real_sdxl_ifadapter_model(), clip, vae, None, adapter)

    classes["IFACheck_RealSize"] = RealSize


def graph(arch: str, mm_name: str) -> dict:
    lay = moving_layout(SIZE)
    g = {
        "real": {"class_type": "IFACheck_RealSize", "inputs": {"arch": arch}},
        "lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": SIZE, "height": SIZE,
                                                              "layout": json.dumps(lay)}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": lay["prompt"], "clip": ["real", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["real", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE,
                                                               "batch_size": FRAMES}},
        "mm": {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": mm_name}},
        "apply_mm": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["mm", 0]}},
        "ctx": {"class_type": "ADE_StandardUniformContextOptions", "inputs": {
            "context_length": 8, "context_stride": 1, "context_overlap": 4, "fuse_method": "pyramid",
            "use_on_equal_length": False, "start_percent": 0.0, "guarantee_steps": 1}},
        "cap": {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["ground", 0], "tag": arch}},
        "evolved": {"class_type": "ADE_UseEvolvedSampling", "inputs": {
            "model": ["cap", 0], "beta_schedule": "autoselect", "m_models": ["apply_mm", 0],
            "context_options": ["ctx", 0]}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["evolved", 0], "seed": 1, "steps": 2, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "denoise": 1.0}},
        "lat": {"class_type": "IFATest_SaveLatentTensor", "inputs": {"samples": ["sample", 0], "prefix": arch}},
    }
    if arch == "sd15":
        g["ground"] = {"class_type": "IFAApplyInstanceDiffusion", "inputs": {
            "model": ["real", 0], "instancediffusion": ["real", 3], "clip": ["real", 1], "layout": ["lay", 0],
            "strength": 1.0, "alpha": 1.0, "preset": "auto", "scaleu": True}}
    else:
        g["tok"] = {"class_type": "IFAEncodeAppearanceTokens", "inputs": {
            "clip": ["real", 1], "ifadapter": ["real", 4], "layout": ["lay", 0]}}
        g["ground"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
            "model": ["real", 0], "ifadapter": ["real", 4], "tokens": ["tok", 0], "layout": ["lay", 0],
            "scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    return g


def windows_seen(env, arch: str) -> list:
    model = sys.modules[env.nodes.NODE_CLASS_MAPPINGS["IFATest_CaptureModel"].__module__].CAPTURED[arch]
    if arch == "sd15":
        st = sys.modules[env.nodes.NODE_CLASS_MAPPINGS["IFAApplyInstanceDiffusion"].__module__].find_state(model)
        return sorted({(k[0], k[3], tuple(v.tolist())) for k, v in st._rows.items()})
    layer = next(c for p in model.model_options["transformer_options"]["patches_replace"]["attn2"].values()
                 for c in p.contributions)
    return sorted({(k[2],) for k in layer.runtime._geometry})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ad", required=True, help="path of ComfyUI-AnimateDiff-Evolved")
    ap.add_argument("--arch", choices=["sd15", "sdxl", "both"], default="both")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ifa_ad_"))
    orig = comfy_env.make_custom_nodes_dir

    def with_ad(path, **kw):  # the pack + test nodes, and AnimateDiff-Evolved next to them
        d = orig(path, **kw)
        link = Path(d) / "ComfyUI-AnimateDiff-Evolved"
        if not link.exists():
            os.symlink(os.path.realpath(args.ad), link)
        return d

    comfy_env.make_custom_nodes_dir = with_ad
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), work)
    if "ADE_UseEvolvedSampling" not in env.nodes.NODE_CLASS_MAPPINGS:
        raise SystemExit("AnimateDiff-Evolved did not load; see the log above")
    env.folder_paths.add_model_folder_path("animatediff_models", str(work / "models" / "animatediff_models"))
    print(f"ComfyUI {env.version}; AnimateDiff-Evolved at {os.path.realpath(args.ad)}")
    for arch in (["sd15", "sdxl"] if args.arch == "both" else [args.arch]):
        register_nodes(env, arch)
        mm_name = write_motion_module(work / "models" / "animatediff_models", arch)
        t0 = time.time()
        out = env.run(graph(arch, mm_name))
        from safetensors.torch import load_file

        lat = load_file(out["lat"]["text"][0])["samples"]
        method = "InstanceDiffusion" if arch == "sd15" else "IFAdapter"
        print(f"\n{arch} + {method}: {FRAMES} frames {SIZE}x{SIZE}, context length 8 overlap 4, 2 steps, CFG 5: "
              f"latent {tuple(lat.shape)}, finite {bool(torch.isfinite(lat).all())}, {time.time() - t0:.0f}s")
        for w in windows_seen(env, arch):
            print("  grounded rows:", w)


if __name__ == "__main__":
    main()
