"""Safe loading of IFAdapter checkpoints, strict key/shape checking and conversion to safetensors.

Accepted files:

- ``.safetensors`` with flat keys ``text_proj_model.*``, ``pos_net.*``, ``adapter_modules.<i>.*`` (what
  :func:`convert_to_safetensors` writes; preferred: no pickle, memory-mapped);
- the released ``spd_adapter.bin`` (a torch pickle of ``{"text_proj_model": sd, "adapter_modules": sd,
  "pos_net": sd}``), read with ``torch.load(weights_only=True, mmap=True)`` so no pickled code can run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import torch
from torch import Tensor

from .adapter import PATCHED_INDICES, IFAdapter

SECTIONS = ("text_proj_model", "adapter_modules", "pos_net")
CONFIG_METADATA_KEY = "ifadapter_config"  # safetensors metadata: JSON of IFAdapter(...) kwargs
# safetensors metadata: the resampler word mask the weights were trained with ("official-quirk" or "all-words")
MASK_METADATA_KEY = "ifadapter_resampler_mask"
MASK_MODES = {"official-quirk": True, "all-words": False}
OFFICIAL_CONFIG = {"hidden_size": 1280, "heads": 20, "context_dim": 2048, "resampler_kwargs": {}}
SDXL_CONTEXT_DIM = 2048
_MODEL_NAMES = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL", 4096: "a T5-conditioned model"}


class IFAdapterCheckpointError(ValueError):
    """The file is not a loadable IFAdapter checkpoint; the message says what was wrong and what was expected."""


def _flatten(sd: Mapping, prefix: str = "") -> dict[str, Tensor]:
    flat: dict[str, Tensor] = {}
    for key, value in sd.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, Tensor):
            flat[name] = value
        else:
            raise IFAdapterCheckpointError(f"entry {name!r} is a {type(value).__name__}, expected a tensor")
    return flat


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint into a flat ``{key: tensor}`` dict without executing pickled code.

    safetensors files are memory-mapped; pickles go through ``torch.load(weights_only=True)`` (memory-mapped when
    the file is in the zip format). Nested dicts (the official layout) are flattened with ``.``-joined keys.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IFAdapter checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) pickles cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: never fall back to an unsafe load
        raise IFAdapterCheckpointError(
            f"{path}: refused to load: the pickle holds objects outside torch's safe allow-list or is corrupt "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). IFAdapter weights are plain "
            "tensors; if you trust the file, convert it once with convert_to_safetensors() in a separate Python "
            "session and load the .safetensors file instead."
        ) from exc
    if not isinstance(obj, Mapping):
        raise IFAdapterCheckpointError(f"{path}: expected a dict of tensors, found a {type(obj).__name__}")
    return _flatten(obj)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a ``.safetensors`` file (``{}`` for pickles or files without metadata)."""
    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        return {}
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def adapter_config(state_dict: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> dict:
    """The ``IFAdapter(...)`` configuration a checkpoint was saved with.

    Order: the ``ifadapter_config`` JSON in safetensors metadata (written by :func:`save_ifadapter` and
    :func:`convert_to_safetensors`); otherwise the official configuration, with the per-layer width and head count
    read from the shapes of the first patched processor (``to_k_ap.weight`` ``[hidden, context]`` and
    ``q_norm.weight`` ``[hidden / heads]``). A file lacking those keys gets the official values, so the strict
    check then lists exactly what is missing.
    """
    raw = (metadata or {}).get(CONFIG_METADATA_KEY)
    if raw:
        try:
            cfg = json.loads(raw)
        except ValueError as exc:
            raise IFAdapterCheckpointError(f"metadata {CONFIG_METADATA_KEY!r} is not valid JSON: {exc}") from None
        unknown = sorted(set(cfg) - set(OFFICIAL_CONFIG))
        if unknown:
            raise IFAdapterCheckpointError(
                f"metadata {CONFIG_METADATA_KEY!r} has unknown fields {unknown}; expected {sorted(OFFICIAL_CONFIG)}"
            )
        return {**OFFICIAL_CONFIG, **cfg}
    cfg = dict(OFFICIAL_CONFIG)
    first = f"adapter_modules.{PATCHED_INDICES[0]}."
    to_k, q_norm = state_dict.get(first + "to_k_ap.weight"), state_dict.get(first + "q_norm.weight")
    if to_k is not None and q_norm is not None and to_k.dim() == 2 and q_norm.dim() == 1 and q_norm.shape[0]:
        hidden, context = int(to_k.shape[0]), int(to_k.shape[1])
        if hidden % int(q_norm.shape[0]) == 0:
            cfg.update(hidden_size=hidden, heads=hidden // int(q_norm.shape[0]), context_dim=context)
    cfg["resampler_kwargs"] = _resampler_config(state_dict)
    return cfg


def _resampler_config(sd: Mapping[str, Tensor]) -> dict:
    """Resampler sizes that differ from the official ones, read from the shapes (the query count stays 4: the
    token layout 3 x 4 + EoT is fixed). Empty for the official file or when the keys to read are missing."""
    p = "text_proj_model."
    latents, to_q = sd.get(p + "latents"), sd.get(p + "layers.0.0.to_q.weight")
    q_norm, gate = sd.get(p + "layers.0.0.q_norm.weight"), sd.get(p + "layers.0.1.gate_proj.weight")
    if any(t is None for t in (latents, to_q, q_norm, gate)) or latents.dim() != 3 or q_norm.dim() != 1:
        return {}
    dim, dim_head = int(latents.shape[2]), int(q_norm.shape[0])
    found = {
        "dim": dim,
        "depth": len({k.split(".")[2] for k in sd if k.startswith(p + "layers.")}),
        "dim_head": dim_head,
        "heads": int(to_q.shape[0]) // max(dim_head, 1),
        "ff_mult": int(gate.shape[0]) // max(dim, 1),
    }
    official = {"dim": 2560, "depth": 4, "dim_head": 128, "heads": 20, "ff_mult": 4}
    if found == official or min(found.values()) < 1:
        return {}
    return found


def _describe(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Strictly compare a flat state dict with ``model.state_dict()``; raise listing every problem.

    The error names the missing keys, the unexpected keys and each shape mismatch (expected vs found) so a user
    can tell a wrong file (e.g. an IP-Adapter or an InstanceDiffusion checkpoint) from a truncated one.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = sorted(
        f"{k}: expected {list(expected[k])}, found {list(state_dict[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    )
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} is not an IFAdapter (SDXL, spd_adapter layout) checkpoint:"]
    if missing:
        lines.append(f"  missing {len(missing)} of {len(expected)} keys: {_describe(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {_describe(unexpected)}")
    if mismatched:
        lines.append(f"  {len(mismatched)} shape mismatches: {_describe(mismatched, 6)}")
    if unexpected and not any(k.startswith(SECTIONS) for k in unexpected[:1]):
        lines.append(f"  expected top-level sections {SECTIONS}; found e.g. {unexpected[0]!r}")
    found_idx = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("adapter_modules.")})
    if found_idx and found_idx != sorted(PATCHED_INDICES):
        lines.append(f"  adapter_modules indices found {found_idx}, expected {sorted(PATCHED_INDICES)}")
    raise IFAdapterCheckpointError("\n".join(lines))


def load_ifadapter(
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    official_mask_quirk: bool | None = None,
) -> IFAdapter:
    """Load an IFAdapter checkpoint (``.safetensors`` or the official ``.bin``) into :class:`IFAdapter`.

    The module is built on the meta device and the file's tensors are assigned to it (no 2 GB random init, and the
    memory map is kept where possible). ``dtype`` None keeps the file's dtype. ``official_mask_quirk`` None takes
    the resampler mask mode the file was trained with (``ifadapter_resampler_mask`` metadata, written by the
    trainer), else the released code's quirk. Raises :class:`IFAdapterCheckpointError` if any key or shape differs
    from the official layout.
    """
    state_dict = read_state_dict(path)
    metadata = read_metadata(path)
    config = adapter_config(state_dict, metadata)
    if official_mask_quirk is None:
        official_mask_quirk = resampler_mask_quirk(metadata)
    with torch.device("meta"):
        model = IFAdapter(official_mask_quirk=official_mask_quirk, **config)
    check_state_dict(model, state_dict, source=os.fspath(path))
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)


def convert_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None) -> int:
    """Convert an IFAdapter checkpoint to a flat ``.safetensors`` file after a strict layout check.

    ``dtype`` (e.g. ``torch.float16``) optionally casts floating tensors. Returns the number of tensors written.
    """
    from safetensors.torch import save_file

    state_dict = read_state_dict(src)
    config = adapter_config(state_dict, read_metadata(src))
    with torch.device("meta"):
        model = IFAdapter(**config)
    check_state_dict(model, state_dict, source=os.fspath(src))
    out = {}
    for key, value in state_dict.items():
        value = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        out[key] = value.contiguous()
    save_file(out, os.fspath(dst), metadata=_metadata(config))
    return len(out)


def resampler_mask_quirk(metadata: Mapping[str, str]) -> bool:
    """Whether a file's resampler was trained with the official word-mask quirk (True when the metadata is silent,
    as for the released weights)."""
    mode = metadata.get(MASK_METADATA_KEY)
    if mode is None:
        return True
    if mode not in MASK_MODES:
        raise IFAdapterCheckpointError(f"metadata {MASK_METADATA_KEY!r} is {mode!r}; expected one of {list(MASK_MODES)}")
    return MASK_MODES[mode]


def _metadata(config: Mapping) -> dict[str, str]:
    return {"format": "pt", "model": "ifadapter-sdxl", CONFIG_METADATA_KEY: json.dumps(dict(config), sort_keys=True)}


def save_ifadapter(model: IFAdapter, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> int:
    """Write ``model`` as a flat ``.safetensors`` file with its configuration in the metadata; returns #tensors.

    Non-official sizes (e.g. a tiny test adapter) therefore load through :func:`load_ifadapter` unchanged. The
    resampler mask mode is recorded too; ``metadata`` adds more string entries (e.g. the trainer's provenance).
    """
    from safetensors.torch import save_file

    out = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(_metadata(model.config))
    meta[MASK_METADATA_KEY] = "official-quirk" if model.official_mask_quirk else "all-words"
    save_file(out, os.fspath(path), metadata=meta)
    return len(out)


def base_model_refusal(context_dim: int | None) -> str | None:
    """None if a UNet with this cross-attention width can take IFAdapter, else a message saying why not.

    IFAdapter's layers and tokens are 2048 wide (SDXL: CLIP-L 768 + CLIP-G 1280); SD1.x (768), SD2.x (1024) and
    other families cannot use it.
    """
    if context_dim == SDXL_CONTEXT_DIM:
        return None
    family = _MODEL_NAMES.get(context_dim, "an unknown model") if context_dim is not None else "an unknown model"
    return (
        f"IFAdapter only works with SDXL models (cross-attention width {SDXL_CONTEXT_DIM}); the connected model "
        f"looks like {family} (cross-attention width {context_dim}). Load an SDXL checkpoint, or use the "
        "InstanceDiffusion nodes for SD1.5."
    )
