"""The training engine: what every recipe shares (distributed set-up, data and buckets, the cache, the batch plan
and draws, the optimisation loop, checkpoints and exact resume, the eval loss and metrics, progress, previews,
export plumbing, the config loader). A recipe implements :class:`train.engine.recipe.Recipe`; read that module's
docstring (or docs/training.md, "Adding a recipe") and nothing else to write one.
"""
__all__ = ["Recipe"]


def __getattr__(name: str):
    """``Recipe`` on first use: importing a torch-free part of the engine (``comfy_bridge``, which the tests' ComfyUI
    discovery uses) does not import torch."""
    if name == "Recipe":
        from .recipe import Recipe

        return Recipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
