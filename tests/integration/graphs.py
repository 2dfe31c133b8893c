"""Builders for API-format graphs used by the integration tests (plain dicts, exactly what ComfyUI's /prompt takes)."""
from __future__ import annotations


def base_graph(arch: str = "sd15", width: int = 256, height: int = 192, steps: int = 2, seed: int = 1,
               positive: str = "a photo of a cat and a dog", negative: str = "blurry", cfg: float = 5.0,
               batch: int = 1, model_ref=("ckpt", 0), save: bool = True, sampler: str = "euler") -> dict:
    """Tiny loader -> CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode -> SaveImage."""
    g = {
        "ckpt": {"class_type": "IFATest_TinyCheckpointLoader", "inputs": {"arch": arch, "seed": 0}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["ckpt", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height,
                                                               "batch_size": batch}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": list(model_ref), "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
            "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
    }
    if save:
        g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "ifa_test"}}
    return g


def add_ifadapter(g: dict, layout_json: str, width: int, height: int, ifadapter_name: str, tag: str) -> dict:
    """Instance Layout -> IFAdapter Loader -> Encode Appearance Tokens -> Apply IFAdapter on ``g``'s checkpoint, the
    patched model captured under ``tag`` (IFATest_CaptureModel) and fed to the KSampler."""
    g["lay"] = {"class_type": "IFAInstanceLayout",
                "inputs": {"width": width, "height": height, "layout": layout_json}}
    g["ifa"] = {"class_type": "IFAAdapterLoader", "inputs": {"ifadapter_name": ifadapter_name, "dtype": "auto"}}
    g["tok"] = {"class_type": "IFAEncodeAppearanceTokens",
                "inputs": {"clip": ["ckpt", 1], "ifadapter": ["ifa", 0], "layout": ["lay", 0]}}
    g["apply"] = {"class_type": "IFAApplyIFAdapter", "inputs": {
        "model": ["ckpt", 0], "ifadapter": ["ifa", 0], "tokens": ["tok", 0], "layout": ["lay", 0],
        "scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    g["cap"] = {"class_type": "IFATest_CaptureModel", "inputs": {"model": ["apply", 0], "tag": tag}}
    g["sample"]["inputs"]["model"] = ["cap", 0]
    return g
