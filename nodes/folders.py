"""Model folders of the pack: ``models/ifadapter`` and ``models/instancediffusion``.

Registered so that ``extra_model_paths.yaml`` entries named ``ifadapter:`` / ``instancediffusion:`` work, on every
ComfyUI version (the 2024 build's ``add_model_folder_path`` has no ``is_default`` argument).
"""
from __future__ import annotations

import logging
import os

import folder_paths

from ..core.paths import model_name_ok

FOLDERS = ("ifadapter", "instancediffusion")
EXTENSIONS = {".safetensors", ".bin", ".pth", ".pt", ".ckpt"}

log = logging.getLogger("comfyui-ifadapter")


def register_model_folders() -> None:
    for name in FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        entry = folder_paths.folder_names_and_paths.get(name)
        if entry is None:
            folder_paths.folder_names_and_paths[name] = ([default], set(EXTENSIONS))
        else:
            paths, exts = entry[0], entry[1]
            if default not in paths:
                paths.append(default)
            if not exts:  # created by extra_model_paths.yaml before us: accept our extensions explicitly
                exts.update(EXTENSIONS)
        if not os.path.isdir(default):
            log.info("[comfyui-ifadapter] model folder %s does not exist yet; put %s weights there", default, name)


def model_list(name: str) -> list[str]:
    """Files in the model folder ``name`` (all registered paths), for a loader's combo widget."""
    try:
        return folder_paths.get_filename_list(name)
    except Exception:  # a broken extra path must not break the node list
        log.exception("[comfyui-ifadapter] could not list models/%s", name)
        return []


def model_path(name: str, filename: str) -> str:
    """Full path of ``filename`` in the model folder ``name``, or a clear error naming where it was looked for.

    ``filename`` must be a relative name that stays inside the folder (ComfyUI's validation already limits it to
    the folder's file list); only regular files are returned (no devices, FIFOs or directories). Symlinks that the
    server's owner placed inside a model folder are followed, as ComfyUI does for every model folder."""
    if not model_name_ok(filename):
        raise ValueError(f"{name} model name {str(filename)[:200]!r} is not allowed: pick a file from the list")
    path = folder_paths.get_full_path(name, filename)
    inside = path is not None and any(_within(d, path) for d in folder_paths.get_folder_paths(name))
    if path is None or not inside or not os.path.isfile(path):
        where = ", ".join(folder_paths.get_folder_paths(name))
        raise FileNotFoundError(f"{name} model {filename!r} not found; looked in: {where}")
    return path


def _within(folder: str, path: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(folder), os.path.abspath(path)]) == os.path.abspath(folder)
    except ValueError:  # another drive on Windows
        return False


def output_folder(name: str) -> str:
    """The first folder registered for ``name`` (where converters write), created if missing."""
    folder = folder_paths.get_folder_paths(name)[0]
    os.makedirs(folder, exist_ok=True)
    return folder
