"""Safe, memory-mapped loading of InstanceDiffusion weights (spec §5, §6, §9).

Accepted files:

- the official training snapshot ``instancediffusion_sd15.pth`` (13.6 GB; keys ``model``, ``ema``, ``opt``,
  ``scheduler``, ``iters``, ``config_dict`` (an OmegaConf object), ``text_encoder``, ``autoencoder``,
  ``diffusion``): only the adapter tensors of ``ema`` (fallback ``model``) are read;
- an adapter-only state dict under the official key names (``.safetensors`` as written by
  :func:`convert_to_safetensors`, or a torch zip file);
- logtd's split files ``position_net.ckpt`` + ``fusers.ckpt`` + ``scaleu.ckpt``.

No pickle code is ever executed (see :mod:`core.checkpoints`: allow-listed tensor rebuilds, dangerous globals refused,
other classes such as OmegaConf's read as inert placeholders). Only the selected adapter tensors are copied out, and
only after the widths read from the file are within the released model's (:func:`check_config_bounds`) and every
tensor is a dense view of its own bytes (:func:`core.checkpoints.check_tensors`); NaN / Inf weights are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

import torch

from ..checkpoints import (
    CheckpointError,
    LazyTensor,
    Opaque,
    StorageRef,
    TorchArchive,
    check_tensors,
    check_total,
    materialise,
    open_torch,
    read_safetensors,
    safetensors_header,
)
from .fuser import FUSER_BLOCKS, FUSER_PREFIXES
from .model import AdapterConfig, InstanceDiffusion, from_official_key, is_adapter_key

PathLike = str | os.PathLike
__all__ = ["CheckpointError", "LazyTensor", "Opaque", "StorageRef", "TorchArchive"]  # re-exported for callers

OFFICIAL_PARAMS = 368_812_473  # the released SD1.5 adapter (513 tensors)
MAX_PARAMS = OFFICIAL_PARAMS + OFFICIAL_PARAMS // 20  # headroom 5 %; widths are capped at the official ones anyway


# ----------------------------------------------------------------------------------------------------------------
# expected keys and strict checks


def expected_shapes(config: AdapterConfig | None = None) -> dict[str, tuple[int, ...]]:
    """Official adapter key -> shape. Default: the released SD1.5 model (513 keys, 368,812,473 params); built on the
    meta device, so no memory is used."""
    with torch.device("meta"):
        model = InstanceDiffusion(config=config or AdapterConfig())
    return {k: tuple(v.shape) for k, v in model.official_state_dict().items()}


_CNX = "position_net.convnext_tiny_backbone."


def infer_config(shapes: Mapping[str, tuple[int, ...]]) -> AdapterConfig:
    """Read the adapter widths back from tensor shapes (official key names).

    The fuser width of transformer_index i is ``<fuser i>.linear.bias``'s length, ScaleU's from ``scaleu_b_i``, the
    position-net MLP width from ``linears_list.0.0.weight``, the mask encoder's from its downsample convs and the
    number of blocks per stage. A key that is absent keeps the released model's value, so a truncated file is
    reported as *missing keys* by :func:`check_adapter_keys`, not as odd widths. The text/grounding width stays 768
    (CLIP-L): it is not inferred.
    """
    d = AdapterConfig()

    def dim0(key: str, default: int) -> int:
        s = shapes.get(key)
        return int(s[0]) if s is not None and len(s) >= 1 else default

    fusers = tuple(dim0(p + "linear.bias", c) for p, c in zip(FUSER_PREFIXES, d.fuser_channels))
    scaleu = tuple(dim0(f"scaleu_b_{i}", c) for i, c in enumerate(d.scaleu_channels))
    mid = dim0("position_net.linears_list.0.0.weight", d.mid_dim)
    dims = tuple(
        dim0(f"{_CNX}downsample_layers.{i}.{0 if i == 0 else 1}.weight", c) for i, c in enumerate(d.convnext_dims)
    )
    depths = []
    for i, n_default in enumerate(d.convnext_depths):
        blocks = {k.split(".")[4] for k in shapes if k.startswith(f"{_CNX}stages.{i}.") and k.count(".") >= 5}
        depths.append(max((int(b) + 1 for b in blocks if b.isdigit()), default=n_default))
    return AdapterConfig(fusers, scaleu, mid, dims, tuple(depths))


def check_config_bounds(config: AdapterConfig, source: str) -> None:
    """Refuse widths or depths read from a file that exceed the released model's (or are not positive), before a
    model of that size is even described: a tiny file must not make the loader build or allocate a huge one.
    Smaller adapters (test models, the tiny SD1.5-layout ones) pass."""
    official = AdapterConfig()
    for f in fields(AdapterConfig):
        got, top = getattr(config, f.name), getattr(official, f.name)
        for i, (g, t) in enumerate(zip(got, top) if isinstance(top, tuple) else [(got, top)]):
            if not 1 <= int(g) <= t:
                where = f"{f.name}[{i}]" if isinstance(top, tuple) else f.name
                raise CheckpointError(
                    f"{source}: its tensor shapes give {where} = {g}; an InstanceDiffusion adapter has 1..{t} there "
                    "(the released SD1.5 model's value is the largest); refused before allocating")


def _fmt_keys(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_adapter_keys(
    shapes: Mapping[str, tuple[int, ...]], source: str, expected: Mapping[str, tuple[int, ...]] | None = None
) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and wrongly shaped adapter keys.

    ``expected`` None: the shapes implied by the widths read from ``shapes`` themselves (:func:`infer_config`);
    every key of that layout must be present with exactly its shape, nothing else may be there."""
    config = None
    if expected is None:
        config = infer_config(shapes)
        check_config_bounds(config, source)
        expected = expected_shapes(config)
    missing = set(expected) - set(shapes)
    unexpected = set(shapes) - set(expected)
    wrong = [
        f"{k}: {tuple(shapes[k])} (expected {expected[k]})"
        for k in sorted(set(shapes) & set(expected))
        if tuple(shapes[k]) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_fmt_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_fmt_keys(unexpected)}")
    if wrong:
        problems.append(
            f"{len(wrong)} shape mismatch(es): " + "; ".join(wrong[:8]) + (" ..." if len(wrong) > 8 else "")
        )
    if problems:
        what = "SD1.5 adapter" if config is None or config.is_official else f"adapter with widths {config}"
        raise CheckpointError(
            f"{source}: not a complete InstanceDiffusion {what} ({len(expected)} tensors expected): "
            + " | ".join(problems)
        )


# ----------------------------------------------------------------------------------------------------------------
# selecting the adapter tensors from the supported layouts


def _is_tensor(v: Any) -> bool:
    return isinstance(v, (LazyTensor, torch.Tensor))


def _adapter_subset(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not _is_tensor(v):
            continue
        key = k[len("model.diffusion_model.") :] if k.startswith("model.diffusion_model.") else k
        if is_adapter_key(key):
            out[key] = v
    return out


def select_adapter_tensors(root: Any, source: str) -> tuple[dict[str, Any], str]:
    """From an unpickled checkpoint pick the official-named adapter tensors (lazy or real) and say where from.

    Training snapshot: ``ema`` if it holds every adapter key, else ``model`` (the official loader's order).
    Otherwise a flat state dict (optionally under ``state_dict`` or prefixed ``model.diffusion_model.``).
    """
    if not isinstance(root, Mapping):
        raise CheckpointError(f"{source}: top-level object is {type(root).__name__}, expected a dict")
    if "ema" in root or "model" in root:
        tried = []
        for name in ("ema", "model"):
            sd = root.get(name)
            if not isinstance(sd, Mapping):
                continue
            sub = _adapter_subset(sd)
            try:
                check_adapter_keys({k: tuple(v.shape) for k, v in sub.items()}, f"{source}[{name!r}]")
                return sub, name
            except CheckpointError as e:
                tried.append(str(e))
        if tried:
            raise CheckpointError(" ; ".join(tried))
        raise CheckpointError(f"{source}: 'ema'/'model' entries are not state dicts")
    sd = root.get("state_dict", root)
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' is not a dict")
    sub = _adapter_subset(sd)
    if not sub:
        raise CheckpointError(
            f"{source}: no InstanceDiffusion keys (position_net.*, *.fuser.*, scaleu_*) found; top-level keys: "
            f"{_fmt_keys(str(k) for k in sd)}"
        )
    check_adapter_keys({k: tuple(v.shape) for k, v in sub.items()}, source)
    return sub, "state_dict"


def load_adapter_state_dict(path: PathLike, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read the adapter tensors (official key names) from a ``.safetensors``, an official ``.pth`` or an
    adapter-only torch file. Returns (state dict, origin: "ema" | "model" | "state_dict" | "safetensors")."""
    p = os.fspath(path)
    if p.endswith(".safetensors"):
        shapes, _dtypes, _meta = safetensors_header(p)
        check_total(shapes, p, MAX_PARAMS, "InstanceDiffusion adapter")
        check_adapter_keys(shapes, p)
        return read_safetensors(p, dtype), "safetensors"
    root, arc = open_torch(p)
    try:
        lazy, origin = select_adapter_tensors(root, p)
        return _read_checked(lazy, arc, dtype, p), origin
    finally:
        if arc is not None:
            arc.close()


def _read_checked(tensors: Mapping[str, Any], arc: TorchArchive | None, dtype: torch.dtype | None,
                  source: str) -> dict[str, torch.Tensor]:
    """The selected tensors, copied out only after the size, dtype, storage-bounds and aliasing checks."""
    check_total({k: tuple(v.shape) for k, v in tensors.items()}, source, MAX_PARAMS, "InstanceDiffusion adapter")
    check_tensors(tensors, source, arc)
    return materialise(tensors, arc, dtype, source)


def _logtd_position_net(root: Mapping, path: PathLike) -> dict:
    """position_net.ckpt: the UniFusion state dict, keys without the ``position_net.`` prefix."""
    return {(k if k.startswith("position_net.") else "position_net." + k): v for k, v in root.items() if _is_tensor(v)}


def _logtd_fusers(root: Mapping, path: PathLike) -> dict:
    """fusers.ckpt: ``{group: {idx: {"state": sd}}}`` -> official fuser keys (missing blocks: strict check)."""
    part = {}
    for block, prefix in zip(FUSER_BLOCKS, FUSER_PREFIXES):
        group, _, idx = block.partition(".")
        idx = idx or "1"  # middle_block is stored as "1"
        entry = root.get(group, {}).get(idx) if isinstance(root.get(group), Mapping) else None
        if entry is None:
            continue  # reported as missing keys by the strict check
        state = entry.get("state") if isinstance(entry, Mapping) else None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: {group}[{idx!r}] has no 'state' dict")
        part.update({prefix + k: v for k, v in state.items() if _is_tensor(v)})
    return part


def _logtd_scaleu(root: Mapping, path: PathLike) -> dict:
    """scaleu.ckpt: ``{i: {"scaleu_b": (C,), "scaleu_s": (1,)}}`` -> ``scaleu_b_i`` / ``scaleu_s_i``."""
    return {f"{name}_{int(i)}": entry[name] for i, entry in root.items() if isinstance(entry, Mapping)
            for name in ("scaleu_b", "scaleu_s") if name in entry and _is_tensor(entry[name])}


def load_logtd_split(
    position_net_path: PathLike, fusers_path: PathLike, scaleu_path: PathLike, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Read logtd's three files and return the adapter state dict under the official key names.

    position_net.ckpt: the UniFusion state dict without prefix; fusers.ckpt: ``{"input_blocks": {"1": {"params":
    ..., "state": sd}, ...}, "middle_block": {"1": ...}, "output_blocks": {"3": ...}}``; scaleu.ckpt:
    ``{"0": {"scaleu_b": (C,), "scaleu_s": (1,)}, ..., "11": ...}``. Strict: every key must be present.
    """
    out: dict[str, Any] = {}
    for path, what, extract in (
        (position_net_path, "a state dict", _logtd_position_net),
        (fusers_path, "a dict of blocks", _logtd_fusers),
        (scaleu_path, "a dict of 12 blocks", _logtd_scaleu),
    ):
        root, arc = open_torch(path)
        try:
            if not isinstance(root, Mapping):
                raise CheckpointError(f"{path}: expected {what}, got {type(root).__name__}")
            out.update(_read_checked(extract(root, path), arc, dtype, os.fspath(path)))
        finally:
            if arc is not None:
                arc.close()
    check_adapter_keys(
        {k: tuple(v.shape) for k, v in out.items()}, f"logtd files ({position_net_path}, {fusers_path}, {scaleu_path})"
    )
    return out


def build_model(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
) -> InstanceDiffusion:
    """An :class:`InstanceDiffusion` in eval mode holding ``state`` (official key names, strictly checked).

    The widths come from the tensor shapes (:func:`infer_config`). Built on the meta device and filled with
    ``assign=True``: no random initialisation, no second copy."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    check_adapter_keys(shapes, "state dict")
    with torch.device("meta"):
        model = InstanceDiffusion(config=infer_config(shapes))
    sd = {}
    for k, v in state.items():
        name = from_official_key(k)
        if name is None:
            raise CheckpointError(f"state dict: {k!r} is not an adapter key")
        sd[name] = v.to(device=device, dtype=dtype if dtype is not None else v.dtype)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


LOGTD_PARTS = ("position_net", "fusers", "scaleu")


def logtd_part(path: PathLike) -> str | None:
    """Which of logtd's split files ``path`` is ("position_net", "fusers", "scaleu"), by its name; else None."""
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".safetensors"):
        return None
    for part in LOGTD_PARTS:
        stem = part.rstrip("s")
        if name.startswith(stem) or name.startswith(stem.replace("_", "")):
            return part
    return None


def find_logtd_set(path: PathLike) -> tuple[str, str, str]:
    """Given any one of logtd's files, the (position_net, fusers, scaleu) paths: the same folder first, then logtd's
    own ``instance_models/{positionnet,fuser,scaleu}_models`` sibling folders. Raises naming what is missing."""
    p = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(p)
    parent = os.path.dirname(folder)
    found: dict[str, str] = {}
    for part in LOGTD_PARTS:
        if logtd_part(p) == part:
            found[part] = p
            continue
        stem = part.rstrip("s")
        dirs = [folder] + [os.path.join(parent, d) for d in (f"{stem.replace('_', '')}_models", f"{stem}_models")]
        for d in dirs:
            if not os.path.isdir(d):
                continue
            hits = sorted(f for f in os.listdir(d) if logtd_part(f) == part)
            if hits:
                found[part] = os.path.join(d, hits[0])
                break
    missing = [f"{part}.ckpt" for part in LOGTD_PARTS if part not in found]
    if missing:
        raise CheckpointError(
            f"{p} looks like one of logtd's split InstanceDiffusion files, but {', '.join(missing)} was not found "
            f"next to it (looked in {folder}); put position_net.ckpt, fusers.ckpt and scaleu.ckpt in one folder"
        )
    return found["position_net"], found["fusers"], found["scaleu"]


def load_any(path: PathLike, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Adapter state dict from any supported file: a single file (:func:`load_adapter_state_dict`) or one of
    logtd's three split files (the other two are found next to it). Returns (state, origin)."""
    if logtd_part(path) is not None:
        return load_logtd_split(*find_logtd_set(path), dtype=dtype), "logtd"
    return load_adapter_state_dict(path, dtype)


def load_instancediffusion(
    path: PathLike, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
) -> InstanceDiffusion:
    """Load any supported file (see module docstring; logtd's split set via any one of its files) into an
    eval-mode :class:`InstanceDiffusion`."""
    state, _origin = load_any(path, dtype)
    return build_model(state, dtype, device)


def convert_to_safetensors(src: PathLike, dst: PathLike, dtype: torch.dtype | None = torch.float16) -> dict[str, str]:
    """Write the adapter tensors of ``src`` (any supported file, logtd's set via any one of its files) to a compact safetensors file under the
    official key names (``dtype`` None keeps fp32; fp16 ≈ 0.74 GB). Returns the metadata written."""
    from safetensors.torch import save_file

    state, origin = load_any(src, dtype)
    meta = {"format": ADAPTER_FORMAT, "origin": origin, "source": os.path.basename(os.fspath(src))}
    save_file({k: v.contiguous() for k, v in state.items()}, os.fspath(dst), metadata=meta)
    return meta


ADAPTER_FORMAT = "instancediffusion-sd15-adapter"


def save_adapter(module_state: Mapping[str, torch.Tensor], path: PathLike, info: Mapping[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> dict[str, str]:
    """Write an :class:`InstanceDiffusion` state dict (module names, e.g. a trained or EMA copy) as a ``.safetensors``
    adapter under the official key names, checked strictly as the loader checks it, atomically (temporary file +
    rename). ``info`` becomes string metadata next to ``format`` / ``origin``; returns the metadata written."""
    import json

    from safetensors.torch import save_file

    from .model import to_official_key

    state = {to_official_key(k): v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in module_state.items()}
    check_adapter_keys({k: tuple(v.shape) for k, v in state.items()}, os.fspath(path))
    meta = {"format": ADAPTER_FORMAT, "origin": "trained"}
    for k, v in (info or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    dst = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}.safetensors"
    save_file(state, tmp, metadata=meta)
    os.replace(tmp, dst)
    return meta


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m core.instancediffusion.loading SRC DST [--fp32]`` (see scripts/convert_instancediffusion.py)."""
    import argparse
    import time

    ap = argparse.ArgumentParser(
        description="Convert an InstanceDiffusion checkpoint (official instancediffusion_sd15.pth, logtd's "
        "position_net/fusers/scaleu .ckpt set, or an adapter file) to a compact .safetensors adapter file."
    )
    ap.add_argument("src", help="instancediffusion_sd15.pth, position_net.ckpt (its siblings are found), ...")
    ap.add_argument("dst", help="output .safetensors path")
    ap.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16, about 0.74 GB)")
    args = ap.parse_args(argv)
    if not args.dst.endswith(".safetensors"):
        ap.error("DST must end with .safetensors")
    t0 = time.time()
    try:
        meta = convert_to_safetensors(args.src, args.dst, None if args.fp32 else torch.float16)
    except CheckpointError as e:
        print(f"error: {e}")
        return 2
    size = os.path.getsize(args.dst) / 2**20
    print(f"wrote {args.dst} ({size:.1f} MiB, from {meta['origin']}) in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
