"""Per-recipe test fixtures: what the shared trainer tests (``test_train_recipes.py``) need to run a recipe end to
end on a tiny random-weight model. One module per recipe, named like the recipe, defining ``FIXTURE``; every module
here is picked up, so a new recipe's tests are one new file.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RecipeFixture:
    """How to run one recipe on a tiny model.

    Attributes:
        recipe: the recipe's name (``python -m train <recipe>``).
        name: the fixture's name (the test id; default: the recipe's), for a recipe tested on several base models.
        base_file: the tiny base checkpoint's file name in ComfyUI's ``models/checkpoints``.
        register: lets ComfyUI's checkpoint detection recognise the tiny model (idempotent; also run by
            ``launch_tiny.py`` in every trainer subprocess).
        write_base: ``write_base(path)`` writes the tiny single-file checkpoint (UNet + CLIP + VAE).
        options: the ``[<recipe>]`` table of the tiny runs (small module sizes).
        check_trained: ``check_trained(weights)`` on the exported tensors of a 3-step run: asserts that the parts that
            start at zero (gates) did move, so the equality tests compare trained weights.
        check_export: ``check_export(comfy, setup, path)``: the exported file loads in the pack's loader node and
            samples in a real ComfyUI graph, and the loaded weights are the exported ones.
        train: ``[train]`` keys of the tiny runs that differ for this recipe (e.g. its learning rate).
        model_keys: ``model_keys(root)`` -> extra ``[model]`` keys (e.g. an ``init`` file it writes under ``root``).
        learns_in_three_steps: whether three steps must lower the eval loss on training samples; a recipe where
            they do not shows its learning in a longer test of its own (named in its fixture).
    """

    recipe: str
    base_file: str
    register: Callable[[], None]
    write_base: Callable[[str], None]
    options: dict = field(default_factory=dict)
    check_trained: Callable[[dict], None] | None = None
    check_export: Callable[..., None] | None = None
    train: dict = field(default_factory=dict)
    model_keys: Callable[[Path], dict] | None = None
    learns_in_three_steps: bool = True
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.recipe


def fixtures() -> dict[str, RecipeFixture]:
    """Every recipe fixture in this package, by fixture id (the recipe's name unless the fixture names itself)."""
    out = {}
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not m.name.startswith("_"):
            fx = importlib.import_module(f"{__name__}.{m.name}").FIXTURE
            out[fx.id] = fx
    return dict(sorted(out.items()))


def register_all() -> None:
    for fx in fixtures().values():
        fx.register()
