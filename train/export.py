"""Export a training checkpoint through its recipe (the file the run would have written at that step).

Command line::

    python -m train.export runs/my_run/checkpoints/step-00010000.pt out.safetensors [--raw]
"""
from __future__ import annotations

import argparse

import torch


def export_checkpoint(checkpoint: str, output: str, raw: bool = False) -> str:
    """Write ``output`` from ``checkpoint`` with its recipe's ``export``; EMA weights unless ``raw``. Returns the
    recipe's name."""
    from train.recipes import get_recipe

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = state.get("recipe", "ifadapter")
    trained = state["trainable"] if "trainable" in state else state["adapter"]
    weights = trained if raw or state.get("ema") is None else state["ema"]
    info = state.get("recipe_info") or {k: state[k] for k in ("adapter_config", "official_mask_quirk")}
    get_recipe(name)().export(weights, info, output, state["export_info"])
    return name


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export a training checkpoint (any recipe) to its result file")
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--raw", action="store_true", help="export the raw weights even when the run keeps an EMA")
    a = p.parse_args(argv)
    name = export_checkpoint(a.checkpoint, a.output, a.raw)
    print(f"wrote {a.output} ({name})")


if __name__ == "__main__":
    main()
