"""The trainer (``python -m train <recipe> --config my.toml``); see docs/training.md.

``train/engine/`` is what every recipe shares (its interface: ``train/engine/recipe.py``), ``train/recipes/`` one
module per recipe. A command-line capability of its own: ComfyUI's pack loading never imports it (the nodes live in
``nodes/``).
"""
