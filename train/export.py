"""Export trained weights as an IFAdapter ``.safetensors`` in the official key layout, with provenance metadata.

The file loads in the IFAdapter Loader node like a converted ``spd_adapter.bin``: keys ``text_proj_model.*``,
``pos_net.*``, ``adapter_modules.<i>.*``; the metadata carries the adapter configuration and resampler mask mode
(read by the loader) plus the base model's SHA-256, the training steps and a data summary.

Command line (export a training checkpoint)::

    python -m train.export runs/my_run/checkpoints/step-00010000.pt my_adapter.safetensors [--raw]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from core.ifadapter import IFAdapter, save_ifadapter

META_PREFIX = "ifadapter_train_"


def build_adapter(config: dict, official_mask_quirk: bool, state_dict: dict | None = None) -> IFAdapter:
    """An :class:`IFAdapter` of ``config`` (``IFAdapter(**config)`` kwargs), optionally filled from a state dict."""
    with torch.device("meta"):
        model = IFAdapter(official_mask_quirk=official_mask_quirk, **config)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def export_adapter(state_dict: dict, config: dict, official_mask_quirk: bool, path: str, info: dict) -> int:
    """Write ``state_dict`` (an IFAdapter's) to ``path`` atomically with ``info`` as ``ifadapter_train_*`` metadata."""
    model = build_adapter(config, official_mask_quirk, {k: v.detach().float().cpu() for k, v in state_dict.items()})
    meta = {META_PREFIX + k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in info.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.safetensors"
    n = save_ifadapter(model, tmp, metadata=meta)
    os.replace(tmp, path)
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export an IFAdapter training checkpoint to .safetensors")
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--raw", action="store_true", help="export the raw weights even when the run keeps an EMA")
    a = p.parse_args(argv)
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    weights = state["adapter"] if a.raw or state.get("ema") is None else state["ema"]
    n = export_adapter(weights, state["adapter_config"], state["official_mask_quirk"], a.output, state["export_info"])
    print(f"wrote {n} tensors to {a.output}")


if __name__ == "__main__":
    main()
