"""Safe loading of IFAdapter checkpoints, strict key/shape checking and conversion to safetensors.

Accepted files:

- ``.safetensors`` with flat keys ``text_proj_model.*``, ``pos_net.*``, ``adapter_modules.<i>.*`` (what
  :func:`convert_to_safetensors` writes; preferred: no pickle, memory-mapped);
- the released ``spd_adapter.bin`` (a torch pickle of ``{"text_proj_model": sd, "adapter_modules": sd,
  "pos_net": sd}``), read by :mod:`core.checkpoints` so no pickled code can run.

Nothing is allocated before the file has passed: sizes read from it within the official ones
(:func:`check_config_bounds`), every key and shape as that configuration expects, every tensor floating point and a
dense view of its own bytes. NaN / Inf weights are refused. Errors name the file and the tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..checkpoints import (
    CheckpointError,
    LazyTensor,
    TorchArchive,
    check_tensors,
    check_total,
    materialise,
    open_torch,
    read_safetensors,
    safetensors_header,
)
from .adapter import IFAdapter
from .families import DEFAULT_FAMILY, FAMILIES

SECTIONS = ("text_proj_model", "adapter_modules", "pos_net")
CONFIG_METADATA_KEY = "ifadapter_config"  # safetensors metadata: JSON of IFAdapter(...) kwargs
# safetensors metadata: the resampler word mask the weights were trained with ("official-quirk" or "all-words")
MASK_METADATA_KEY = "ifadapter_resampler_mask"
MASK_MODES = {"official-quirk": True, "all-words": False}
OFFICIAL_CONFIG = {"hidden_size": 1280, "heads": 20, "context_dim": 2048, "resampler_kwargs": {}, "family": "sdxl"}
# descriptive fields save_ifadapter writes next to the IFAdapter(...) kwargs; on load they must equal the family's
DESCRIPTION_FIELDS = ("text_encoders", "layers")
OFFICIAL_RESAMPLER = {"dim": 2560, "depth": 4, "dim_head": 128, "heads": 20, "ff_mult": 4}
OFFICIAL_PARAMS = 519_750_464  # the released spd_adapter.bin (255 tensors)
MAX_PARAMS = OFFICIAL_PARAMS + OFFICIAL_PARAMS // 20  # headroom 5 %; sizes are capped at the official ones anyway
SDXL_CONTEXT_DIM = 2048


class IFAdapterCheckpointError(CheckpointError):
    """The file is not a loadable IFAdapter checkpoint; the message says what was wrong and what was expected."""


def _flatten(sd: Mapping, source: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in sd.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, source, name + "."))
        elif isinstance(value, (Tensor, LazyTensor)):
            flat[name] = value
        else:
            raise IFAdapterCheckpointError(f"{source}: entry {name!r} is a {type(value).__name__}, expected a tensor")
    return flat


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(int(d) for d in (v.shape if hasattr(v, "shape") else v)) for k, v in state_dict.items()}


def _check_layout(shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str], source: str) -> dict:
    """The file's configuration, after the bounds, the strict key/shape check and the size cap; nothing allocated."""
    check_total(shapes, source, MAX_PARAMS, "IFAdapter")
    config = adapter_config(shapes, metadata, source)
    with torch.device("meta"):
        model = IFAdapter(**config)
    check_state_dict(model, shapes, source=source)
    return config


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read and check a checkpoint into a flat ``{key: tensor}`` dict, without executing pickled code.

    Nested dicts (the official layout) are flattened with ``.``-joined keys. Before any tensor is read, the layout
    is checked (configuration within the official sizes, exact keys and shapes) and, for pickles, every tensor must
    be a dense view of bytes the file really holds and shares with no other tensor. Raises
    :class:`IFAdapterCheckpointError` naming the file (and the tensor) otherwise.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IFAdapter checkpoint not found: {path}")
    try:
        if path.endswith(".safetensors"):
            shapes, _dtypes, metadata = safetensors_header(path)
            _check_layout(shapes, metadata, path)
            return read_safetensors(path)
        root, arc = open_torch(path)
        try:
            return _read_pickled(root, arc, path)
        finally:
            if arc is not None:
                arc.close()
    except IFAdapterCheckpointError:
        raise
    except CheckpointError as e:
        raise IFAdapterCheckpointError(str(e)) from None


def _read_pickled(root: Any, arc: TorchArchive | None, path: str) -> dict[str, Tensor]:
    if not isinstance(root, Mapping):
        raise IFAdapterCheckpointError(f"{path}: expected a dict of tensors, found a {type(root).__name__}")
    flat = _flatten(root, path)
    _check_layout(_shapes(flat), {}, path)
    check_tensors(flat, path, arc)
    return materialise(flat, arc, None, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a ``.safetensors`` file (``{}`` for pickles or files without metadata)."""
    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        return {}
    try:
        return safetensors_header(path)[2]
    except CheckpointError as e:
        raise IFAdapterCheckpointError(str(e)) from None


def adapter_config(state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None,
                   source: str = "checkpoint") -> dict:
    """The ``IFAdapter(...)`` configuration a checkpoint was saved with.

    Order: the ``ifadapter_config`` JSON in safetensors metadata (written by :func:`save_ifadapter` and
    :func:`convert_to_safetensors`: the kwargs, the ``family`` - SDXL when absent, as in files written before
    families existed - and the family's ``text_encoders`` and ``layers``, which must equal the family's); otherwise
    the official configuration, the family read from which processor indices hold weights of which width
    (:func:`_family_from_shapes`), with the per-layer width and head count read from the shapes of the first patched
    processor (``to_k_ap.weight`` ``[hidden, context]`` and ``q_norm.weight`` ``[hidden / heads]``). A file lacking those keys gets the official values, so the strict
    check then lists exactly what is missing. Either way the sizes must lie within the official ones
    (:func:`check_config_bounds`): a file cannot make the loader describe, let alone allocate, a bigger model.
    """
    shapes = _shapes(state_dict)
    raw = (metadata or {}).get(CONFIG_METADATA_KEY)
    if raw:
        try:
            cfg = json.loads(raw)
        except ValueError as exc:
            raise IFAdapterCheckpointError(
                f"{source}: metadata {CONFIG_METADATA_KEY!r} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict):
            raise IFAdapterCheckpointError(f"{source}: metadata {CONFIG_METADATA_KEY!r} is not a JSON object")
        unknown = sorted(set(cfg) - set(OFFICIAL_CONFIG) - set(DESCRIPTION_FIELDS))
        if unknown:
            raise IFAdapterCheckpointError(
                f"{source}: metadata {CONFIG_METADATA_KEY!r} has unknown fields {unknown}; expected "
                f"{sorted(OFFICIAL_CONFIG) + list(DESCRIPTION_FIELDS)}"
            )
        described = {k: cfg.pop(k) for k in DESCRIPTION_FIELDS if k in cfg}
        fam = cfg.get("family", DEFAULT_FAMILY)
        if fam not in FAMILIES:
            raise IFAdapterCheckpointError(f"{source}: metadata family {fam!r} is not one of {list(FAMILIES)}; "
                                           "refused before allocating")
        cfg = {**OFFICIAL_CONFIG, "context_dim": FAMILIES[fam].context_dim, **cfg}
        expected = FAMILIES[fam].describe()
        for key, value in described.items():
            if value != expected[key]:
                raise IFAdapterCheckpointError(
                    f"{source}: metadata {key} {str(value)[:200]} does not match an {FAMILIES[fam].label} IFAdapter's "
                    f"{expected[key]}; refused before allocating")
    else:
        cfg = dict(OFFICIAL_CONFIG)
        cfg["family"] = _family_from_shapes(shapes)
        first = f"adapter_modules.{min(FAMILIES[cfg['family']].key_to_index.values())}."
        to_k, q_norm = shapes.get(first + "to_k_ap.weight"), shapes.get(first + "q_norm.weight")
        if to_k is not None and q_norm is not None and len(to_k) == 2 and len(q_norm) == 1 and q_norm[0]:
            hidden, context = int(to_k[0]), int(to_k[1])
            if hidden % int(q_norm[0]) == 0:
                cfg.update(hidden_size=hidden, heads=hidden // int(q_norm[0]), context_dim=context)
        cfg["resampler_kwargs"] = _resampler_config(shapes)
    check_config_bounds(cfg, source)
    return cfg


def _family_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The family of a file without metadata (an official-style ``.bin``): the one whose first patched processor
    index holds a ``to_k_ap`` as wide as the family's text; SDXL (the released weights) when none fits."""
    for name, fam in FAMILIES.items():
        to_k = shapes.get(f"adapter_modules.{min(fam.key_to_index.values())}.to_k_ap.weight")
        if to_k is not None and len(to_k) == 2 and int(to_k[1]) == fam.context_dim:
            return name
    return DEFAULT_FAMILY


def check_config_bounds(cfg: Mapping, source: str) -> None:
    """Refuse sizes outside the official ones: a known family, hidden size 1..1280 divisible into 1..20 heads,
    context the family's text width (SDXL 2048, SD1.5 768, SD2.x 1024), resampler dim 1..2560, depth 1..4, heads
    1..20, dim_head 1..128, ff_mult 1..4. Smaller adapters pass (tests)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise IFAdapterCheckpointError(f"{source}: {what}; refused before allocating")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    hidden, heads, ctx = cfg.get("hidden_size"), cfg.get("heads"), cfg.get("context_dim")
    need(is_int(hidden) and 1 <= hidden <= 1280, f"hidden size {hidden!r}: an IFAdapter layer is 1..1280 wide")
    need(is_int(heads) and 1 <= heads <= 20 and hidden % heads == 0,
         f"{heads!r} heads: an IFAdapter layer has 1..20 heads dividing its width {hidden}")
    fam = cfg.get("family", DEFAULT_FAMILY)
    need(isinstance(fam, str) and fam in FAMILIES, f"family {fam!r}: one of {list(FAMILIES)} expected")
    want = FAMILIES[fam].context_dim
    need(ctx == want, f"context width {ctx!r}: an {FAMILIES[fam].label} IFAdapter reads {want}-wide text")
    rk = cfg.get("resampler_kwargs") or {}
    need(isinstance(rk, Mapping) and set(rk) <= set(OFFICIAL_RESAMPLER),
         f"resampler settings {sorted(rk) if isinstance(rk, Mapping) else rk!r}: only "
         f"{sorted(OFFICIAL_RESAMPLER)} may differ from the official ones")
    for key, top in OFFICIAL_RESAMPLER.items():
        v = rk.get(key, top)
        need(is_int(v) and 1 <= v <= top, f"resampler {key} {v!r}: an IFAdapter resampler has 1..{top}")


def _resampler_config(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """Resampler sizes that differ from the official ones, read from the shapes (the query count stays 4: the
    token layout 3 x 4 + EoT is fixed). Empty for the official file or when the keys to read are missing."""
    p = "text_proj_model."
    latents, to_q = shapes.get(p + "latents"), shapes.get(p + "layers.0.0.to_q.weight")
    q_norm, gate = shapes.get(p + "layers.0.0.q_norm.weight"), shapes.get(p + "layers.0.1.gate_proj.weight")
    if any(t is None for t in (latents, to_q, q_norm, gate)) or len(latents) != 3 or len(q_norm) != 1:
        return {}
    if len(to_q) < 1 or len(gate) < 1:
        return {}
    dim, dim_head = int(latents[2]), int(q_norm[0])
    found = {
        "dim": dim,
        "depth": len({k.split(".")[2] for k in shapes if k.startswith(p + "layers.")}),
        "dim_head": dim_head,
        "heads": int(to_q[0]) // max(dim_head, 1),
        "ff_mult": int(gate[0]) // max(dim, 1),
    }
    if found == OFFICIAL_RESAMPLER or min(found.values()) < 1:
        return {}
    return found


def _describe(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Strictly compare a flat state dict with ``model.state_dict()``; raise listing every problem.

    The error names the missing keys, the unexpected keys and each shape mismatch (expected vs found) so a user
    can tell a wrong file (e.g. an IP-Adapter or an InstanceDiffusion checkpoint) from a truncated one.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state_dict = _shapes(state_dict)
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = sorted(
        f"{k}: expected {list(expected[k])}, found {list(state_dict[k])}"
        for k in expected
        if k in state_dict and state_dict[k] != expected[k]
    )
    if not (missing or unexpected or mismatched):
        return
    fam = getattr(model, "family", FAMILIES[DEFAULT_FAMILY])
    lines = [f"{source} is not an IFAdapter ({fam.label}, spd_adapter layout) checkpoint:"]
    if missing:
        lines.append(f"  missing {len(missing)} of {len(expected)} keys: {_describe(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {_describe(unexpected)}")
    if mismatched:
        lines.append(f"  {len(mismatched)} shape mismatches: {_describe(mismatched, 6)}")
    if unexpected and not any(k.startswith(SECTIONS) for k in unexpected[:1]):
        lines.append(f"  expected top-level sections {SECTIONS}; found e.g. {unexpected[0]!r}")
    found_idx = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("adapter_modules.")})
    want_idx = sorted(fam.key_to_index.values())
    if found_idx and found_idx != want_idx:
        lines.append(f"  adapter_modules indices found {found_idx}, expected {want_idx}")
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
    config = adapter_config(state_dict, metadata, os.fspath(path))
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

    state_dict = read_state_dict(src)  # checked: layout, sizes, storages, dtypes, finite values
    config = adapter_config(state_dict, read_metadata(src), os.fspath(src))
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
    """The metadata of a written file: the ``IFAdapter(...)`` kwargs plus the family's text encoder layout and
    layer list (``[block, id, transformer block, adapter_modules index]``), checked against the family on load."""
    fam = FAMILIES[config.get("family", DEFAULT_FAMILY)]
    described = {**dict(config), **fam.describe()}
    return {"format": "pt", "model": f"ifadapter-{fam.name}", CONFIG_METADATA_KEY: json.dumps(described, sort_keys=True)}


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


def base_model_refusal(context_dim: int | None, family: str = DEFAULT_FAMILY) -> str | None:
    """None if a UNet with this cross-attention width can take an IFAdapter of ``family``, else why not.

    An SDXL IFAdapter's tokens are 2048 wide (CLIP-L 768 + CLIP-G 1280) and its layers SDXL's; an SD1.5 adapter reads
    CLIP-L (768), an SD2.x one OpenCLIP-H (1024). The full check (conditioning width, layers) is
    :func:`model_refusal`.
    """
    fam = FAMILIES[family]
    if context_dim == fam.context_dim:
        return None
    found = next((f for f in FAMILIES.values() if f.context_dim == context_dim), None)
    looks = f"{found.label}" if found is not None else "an unknown model"
    return (
        f"this IFAdapter was trained for {fam.label} models (cross-attention width {fam.context_dim}); the connected "
        f"model looks like {looks} (cross-attention width {context_dim}). Connect an {fam.label} model, or load an "
        f"IFAdapter trained for {looks if found is not None else 'that model'}."
    )
