"""Recipe ``ifadapter`` on the tiny SD1.5 (``training/tiny_sd15_file.py``): the SD1.5 family (CLIP-L tokens, the
middle block and output blocks 3-5, no micro-conditioning), detected from the base model."""
from __future__ import annotations

import functools

from . import RecipeFixture
from .ifadapter import FIXTURE as SDXL_FIXTURE
from .ifadapter import _check_export, _check_trained


def _register() -> None:
    from training.tiny_sd15_file import register

    register()


def _write_base(path: str) -> None:
    from training.tiny_sd15_file import write_tiny_sd15_checkpoint

    write_tiny_sd15_checkpoint(path, unet_std=0.1)


FIXTURE = RecipeFixture(
    recipe="ifadapter", name="ifadapter_sd15", base_file="tiny_sd15_train.safetensors", register=_register,
    write_base=_write_base, options=SDXL_FIXTURE.options,
    # 3 steps on 64x64 images: the middle block's grid is 1x1 there, its gate moves least (a few 1e-4)
    check_trained=functools.partial(_check_trained, layers=4, min_gate=1e-5),
    check_export=functools.partial(_check_export, arch="sd15"))
