"""Where evaluation models live and which device / dtype they run on.

A model is named by the user (CLI flag, node option): either a folder name under ``<models root>/<kind>/`` (the
ComfyUI ``models`` folder, passed in: this package never imports ComfyUI) or, from the CLI only, an explicit path.
A folder name is contained like the pack's ``core/paths.py`` (no absolute path, no ``..`` out of the kind folder,
symlinks resolved). A hub name (``owner/name``) is fetched into that folder on first use only when downloads are
allowed (``allow_download``; off by default, so a shared server never fetches on a prompt's say). A missing model
gives one message naming it and the folder it goes in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:  # inside the node pack (see metrics/ground_truth.py)
    from ...core.paths import contained_path
except ImportError:  # `evaluate` as a top-level package
    from core.paths import contained_path

KINDS = ("detection", "clip", "vlm", "yolo", "inception")
MAX_NAME_CHARS = 200


class ModelNotFound(ValueError):
    """The named model is not in its folder (and may not be downloaded); the message says where it goes."""


class WrongModelKind(ValueError):
    """A model folder holds a model of another family than the one asked for."""


def kind_folder(models_root: str, kind: str) -> str:
    """``<models_root>/<kind>``, the folder models of ``kind`` are looked up in."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    return os.path.join(models_root, kind)


def _folder_name(name: str) -> str:
    """The folder a hub name is stored under: ``owner/name`` -> ``owner--name`` (one level, no separators)."""
    return name.replace("/", "--")


def _missing(name: str, folder: str, kind: str, allow_download: bool) -> ModelNotFound:
    hint = ("" if allow_download else
            "; or allow downloads (CLI --allow-download / the node's allow_download option) to fetch a hub name there")
    return ModelNotFound(f"{kind} model {name!r} not found: put it in {os.path.join(folder, _folder_name(name))} "
                         f"(a folder with its config and weights){hint}")


def resolve_model(name: str, kind: str, models_root: str | None = None, allow_path: bool = False,
                  allow_download: bool = False) -> str:  # fmt: skip
    """The real folder (or file, for ``inception`` / ``yolo`` weights) of model ``name`` of ``kind``.

    - ``allow_path`` (the CLI): an existing absolute or relative path is used as given;
    - else ``name`` is looked up under ``<models_root>/<kind>/``, as given and with ``/`` turned into ``--`` (the
      folder a hub name ``owner/name`` is downloaded to), contained in that folder;
    - not there: with ``allow_download`` a hub name is downloaded into that folder (``huggingface_hub``), else
      :class:`ModelNotFound` naming the model and the folder it goes in.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or "\x00" in name:
        shown = name[:MAX_NAME_CHARS] if isinstance(name, str) else type(name).__name__
        raise ValueError(f"{kind} model name must be a non-empty string of at most {MAX_NAME_CHARS} characters, "
                         f"got {shown!r}")
    if allow_path and os.path.exists(name):
        return os.path.realpath(name)
    if models_root is None:
        raise ModelNotFound(f"{kind} model {name!r} not found: it is no existing path and no models folder is given")
    folder = kind_folder(models_root, kind)
    for candidate in dict.fromkeys((name, _folder_name(name))):
        real = contained_path(folder, candidate)
        if real is not None and os.path.exists(real):
            return real
    if not allow_download:
        raise _missing(name, folder, kind, allow_download)
    return download(name, folder, kind)


def download(name: str, folder: str, kind: str) -> str:
    """Fetch hub repository ``name`` (``owner/name``) into ``folder/owner--name`` and return that folder."""
    parts = name.split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") for p in parts):
        raise _missing(name, folder, kind, True)
    target = contained_path(folder, _folder_name(name))
    if target is None:
        raise _missing(name, folder, kind, True)
    from huggingface_hub import snapshot_download  # only when a download is allowed and needed

    os.makedirs(folder, exist_ok=True)
    try:
        snapshot_download(repo_id=name, local_dir=target)
    except Exception as e:  # network, unknown repository, offline mode: one clear message
        raise ModelNotFound(f"{kind} model {name!r} could not be downloaded to {target}: {type(e).__name__}: "
                            f"{str(e)[:300]}") from None
    return target


@dataclass(frozen=True)
class Placement:
    """Where a model runs: ``device`` and the floating ``dtype`` of its weights."""

    device: torch.device
    dtype: torch.dtype


def placement(device: str | None = None, fp16: bool | None = None) -> Placement:
    """CUDA with fp16 when a GPU is there, else CPU with fp32; ``device`` / ``fp16`` override (fp16 needs CUDA)."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    half = dev.type == "cuda" if fp16 is None else bool(fp16)
    if half and dev.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA device, got {dev}")
    return Placement(dev, torch.float16 if half else torch.float32)


def read_config(folder: str, kind: str, name: str) -> dict:
    """The ``config.json`` of a transformers model folder, or a clear message naming the model."""
    import json

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise WrongModelKind(f"{kind} model {name!r} at {folder} is not a transformers model folder "
                             f"(no config.json)")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError:
            raise WrongModelKind(f"{kind} model {name!r}: {path} is not valid JSON") from None


def check_model_type(folder: str, kind: str, name: str, allowed: tuple[str, ...]) -> str:
    """The folder's ``model_type``; :class:`WrongModelKind` naming the model unless it is one of ``allowed``
    (an empty ``allowed`` accepts any)."""
    mt = read_config(folder, kind, name).get("model_type")
    if allowed and mt not in allowed:
        raise WrongModelKind(f"{kind} model {name!r} at {folder} is a {mt!r} model; a {kind} model must be one of "
                             f"{', '.join(allowed)}")
    return str(mt)
