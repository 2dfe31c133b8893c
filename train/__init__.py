"""The IFAdapter trainer (``python -m train.ifadapter --config my.toml``); see docs/training.md.

A command-line capability of its own: ComfyUI's pack loading never imports it (the nodes live in ``nodes/``).
"""
