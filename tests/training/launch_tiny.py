"""Run the trainer with the tiny test models registered in ComfyUI's model detection (for subprocesses and
torchrun): ``torchrun --nproc_per_node 2 tests/training/launch_tiny.py <recipe> --config run.toml``;
``launch_tiny.py --module train.ifadapter --config run.toml`` runs a recipe's own entry point instead."""
import importlib
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from train.engine import comfy_bridge  # noqa: E402

comfy_bridge.setup_comfy(cpu=True)

from training.recipe_fixtures import register_all  # noqa: E402

register_all()
argv = sys.argv[1:]
if argv[:1] == ["--module"]:
    importlib.import_module(argv[1]).main(argv[2:])
else:
    from train.engine.cli import main  # noqa: E402

    main(argv)
