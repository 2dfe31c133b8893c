"""The command line (engine): ``python -m train <recipe> --config my.toml`` (also under ``torchrun ... -m train``)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("train")


def _logging() -> None:
    if not log.handlers:  # our own handler: ComfyUI configures the root logger its own way (level, format)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[train] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None, recipe: str | None = None) -> dict:
    """Run one recipe. ``recipe`` given: the command is that recipe's own (``python -m train.ifadapter``)."""
    from ..recipes import recipe_names

    prog = f"python -m train.{recipe}" if recipe else "python -m train"
    p = argparse.ArgumentParser(prog=prog, description="Train a recipe on a frozen base model (docs/training.md).")
    if recipe is None:
        p.add_argument("recipe", choices=recipe_names(), help="what to train")
    p.add_argument("--config", required=True, help="TOML file (docs/training.md lists every key)")
    p.add_argument("--cache-only", action="store_true", help="build the cache and stop")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    a = p.parse_args(argv)
    name = recipe or a.recipe
    _logging()
    from ..recipes import get_recipe
    from .config import ConfigError, load
    from .distributed import Dist
    from .trainer import Trainer

    recipe_cls = get_recipe(name)
    try:
        cfg = load(a.config, recipe_cls)
    except ConfigError as e:
        p.error(str(e))
    d = Dist.from_env(force_cpu=a.cpu)
    try:
        trainer = Trainer(cfg, d, recipe_cls)
        if a.cache_only:
            summary = {"cache": trainer.reader.folder, "data": trainer.reader.summary()}
            if d.main:
                print(json.dumps(summary, indent=1))
            return summary
        return trainer.run()
    finally:
        d.close()
