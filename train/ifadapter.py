"""``python -m train.ifadapter --config my.toml``: the same as ``python -m train ifadapter --config my.toml`` (kept
for existing scripts; also under ``torchrun ... -m train.ifadapter``). The recipe is ``train/recipes/ifadapter.py``.
"""
from train.engine.cli import main as _main


def main(argv: list[str] | None = None) -> dict:
    return _main(argv, recipe="ifadapter")


if __name__ == "__main__":
    main()
