"""The recipe registry: every module ``train/recipes/<name>.py`` that defines ``RECIPE`` (a
:class:`train.engine.recipe.Recipe` subclass whose ``name`` is ``<name>``) is the recipe ``<name>``.

To add a recipe, add its module here; nothing else to register (docs/training.md, "Adding a recipe"). Modules are
imported only when their recipe is asked for.
"""
from __future__ import annotations

import importlib
import pkgutil


def recipe_names() -> list[str]:
    """The names of every recipe module in this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_recipe(name: str):
    """The :class:`~train.engine.recipe.Recipe` subclass of recipe ``name``."""
    if name not in recipe_names():
        raise ValueError(f"unknown recipe {name!r}; the recipes are {recipe_names()}")
    cls = importlib.import_module(f"{__name__}.{name}").RECIPE
    if cls.name != name:
        raise ValueError(f"train/recipes/{name}.py defines the recipe {cls.name!r}; a recipe's name is its module's")
    return cls
