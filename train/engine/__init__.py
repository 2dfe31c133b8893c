"""The training engine: what every recipe shares (distributed set-up, data and buckets, the cache, the batch plan
and draws, the optimisation loop, checkpoints and exact resume, the eval loss and metrics, progress, previews,
export plumbing, the config loader). A recipe implements :class:`train.engine.recipe.Recipe`; read that module's
docstring (or docs/training.md, "Adding a recipe") and nothing else to write one.
"""
from .recipe import Recipe

__all__ = ["Recipe"]
