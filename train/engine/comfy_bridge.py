"""The trainer's only door into ComfyUI: find it, import it headless, load a checkpoint, reach the pack's nodes.

The trainer runs outside ComfyUI's server but must use ComfyUI's own code for everything the base model does
(checkpoint detection and loading, SDXL micro-conditioning, text encoding, sampling for preview images), and the
pack's own patches (e.g. ``nodes/patches.py`` + ``IFAdapterLayer`` of ``nodes/ifadapter.py``) so that a trained
model behaves in ComfyUI exactly as it did in training.

ComfyUI is found like the tests find it: ``COMFYUI_PATH``, else the ComfyUI this pack is installed in
(``<ComfyUI>/custom_nodes/<pack>``); otherwise an error says how to point at one.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_ALIAS = "ifadapter_pack"  # the package name the pack's node modules are imported under


def _is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir() and (path / "nodes.py").is_file()


def installed_comfyui() -> Path | None:
    """``COMFYUI_PATH`` (an error if it is not a ComfyUI folder), else the ComfyUI this pack is installed in, else
    None. The one discovery rule: the tests (``tests/comfy_env.py``) use it too, before their own fallback."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if not _is_comfyui(path):
            raise RuntimeError(f"COMFYUI_PATH={env!r} is not a ComfyUI folder (no main.py, nodes.py and comfy/ there)")
        return path
    parent = REPO_ROOT.parent
    if parent.name == "custom_nodes" and _is_comfyui(parent.parent):
        return parent.parent
    return None


def find_comfyui() -> Path:
    """The ComfyUI folder to use: ``COMFYUI_PATH``, else the one this pack is installed in."""
    found = installed_comfyui()
    if found is not None:
        return found
    raise RuntimeError(
        "the trainer needs ComfyUI (it loads the base model with ComfyUI's loaders): install this pack in "
        "ComfyUI/custom_nodes/ and run it from there, or set COMFYUI_PATH=/path/to/ComfyUI")


def setup_comfy(cpu: bool | None = None) -> Path:
    """Put ComfyUI on ``sys.path`` and import its model code headless (idempotent).

    ``cpu`` True forces ComfyUI's CPU mode (``--cpu``); None lets it pick the device (CUDA when available).
    When ComfyUI is already imported (e.g. inside the tests' in-process ComfyUI) it is used as it is.
    """
    if "comfy.model_management" in sys.modules:
        return Path(sys.modules["comfy"].__path__[0]).parent
    root = find_comfyui()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from comfy.cli_args import args  # must precede comfy.model_management

    if cpu:
        args.cpu = True
    args.use_pytorch_cross_attention = True
    import comfy.model_management  # noqa: F401
    import comfy.sd  # noqa: F401

    return root


def pack_module(name: str) -> types.ModuleType:
    """Import one of the pack's node modules (``"patches"``, ``"ifadapter"``) without ComfyUI's pack loader.

    The node modules import ``core`` relatively (``from ..core...``). They are imported under the package alias
    :data:`PACK_ALIAS` whose ``core`` *is* the top-level ``core`` the trainer uses, so both sides share one set of
    classes (one ``IFAdapter``, one ``IFAttnProcessor``). ``nodes/__init__.py`` (which registers every capability
    with ComfyUI) is not run.
    """
    if PACK_ALIAS not in sys.modules:
        import core

        for info in pkgutil.walk_packages(core.__path__, "core."):
            importlib.import_module(info.name)
        pack = types.ModuleType(PACK_ALIAS)
        pack.__path__ = [str(REPO_ROOT)]
        sys.modules[PACK_ALIAS] = pack
        for mod_name, mod in list(sys.modules.items()):
            if mod_name == "core" or mod_name.startswith("core."):
                sys.modules[f"{PACK_ALIAS}.{mod_name}"] = mod
        nodes_pkg = types.ModuleType(f"{PACK_ALIAS}.nodes")
        nodes_pkg.__path__ = [str(REPO_ROOT / "nodes")]
        sys.modules[f"{PACK_ALIAS}.nodes"] = nodes_pkg
    return importlib.import_module(f"{PACK_ALIAS}.nodes.{name}")


def checkpoint_path(name: str) -> str:
    """A checkpoint given as a path, or as a name inside ComfyUI's ``models/checkpoints`` folder(s)."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    import folder_paths

    path = folder_paths.get_full_path("checkpoints", name)
    if path is None:
        raise FileNotFoundError(
            f"base model {name!r} is neither a file nor in ComfyUI's models/checkpoints; found there: "
            f"{folder_paths.get_filename_list('checkpoints')[:20]}")
    return path


def load_base_model(name: str):
    """``(model_patcher, clip, vae)`` of a single-file checkpoint through ComfyUI's own loader."""
    import comfy.sd
    import torch

    path = checkpoint_path(name)
    with torch.no_grad():  # as inside ComfyUI's executor: model construction copies into parameters
        out = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True, output_clipvision=False)
    model, clip, vae = out[:3]
    if model is None or clip is None or vae is None:
        raise ValueError(f"{path}: ComfyUI found no {'model' if model is None else 'CLIP' if clip is None else 'VAE'} "
                         "in this checkpoint; the trainer needs a single-file checkpoint (UNet + CLIP + VAE)")
    return model, clip, vae
