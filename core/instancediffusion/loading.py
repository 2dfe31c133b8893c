"""Safe, memory-mapped loading of InstanceDiffusion weights (spec §5, §6, §9).

Accepted files:

- the official training snapshot ``instancediffusion_sd15.pth`` (13.6 GB; keys ``model``, ``ema``, ``opt``,
  ``scheduler``, ``iters``, ``config_dict`` (an OmegaConf object), ``text_encoder``, ``autoencoder``,
  ``diffusion``): only the adapter tensors of ``ema`` (fallback ``model``) are read;
- an adapter-only state dict under the official key names (``.safetensors`` as written by
  :func:`convert_to_safetensors`, or a torch zip file);
- logtd's split files ``position_net.ckpt`` + ``fusers.ckpt`` + ``scaleu.ckpt``.

No pickle code is ever executed. Torch zip checkpoints are parsed by :class:`_RestrictedUnpickler`: tensor-rebuild
functions and ``OrderedDict`` are allow-listed; every other global (OmegaConf classes, ``os.system``, ...) resolves
to an inert placeholder that only records its arguments. Storages are not read while unpickling: each tensor stays
a :class:`LazyTensor` pointing into the memory-mapped archive, and only the selected adapter tensors are copied out.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .fuser import FUSER_BLOCKS, FUSER_PREFIXES
from .model import AdapterConfig, InstanceDiffusion, from_official_key, is_adapter_key

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint is unreadable, truncated, or does not hold the expected InstanceDiffusion tensors."""


# ----------------------------------------------------------------------------------------------------------------
# restricted unpickler for torch zip archives


class Opaque:
    """Inert stand-in for any non-allow-listed pickled global (e.g. an OmegaConf DictConfig). Never executes code."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        obj.__dict__["_kwargs"] = kwargs
        obj.__dict__["_state"] = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a placeholder
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:  # APPEND(S) on a placeholder
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("_list", []).extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self._qualname}>"


def _placeholder(module: str, name: str) -> type:
    return type(f"Opaque[{module}.{name}]", (Opaque,), {"_qualname": f"{module}.{name}"})


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


@dataclass(frozen=True)
class StorageRef:
    """A storage record ``data/<key>`` of the archive: ``numel`` elements of ``dtype``."""

    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor not yet read: a strided view into one storage of the archive."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.size)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *rest: Any) -> LazyTensor:
    if not isinstance(storage, StorageRef):
        raise CheckpointError(f"malformed checkpoint: tensor rebuilt from {type(storage).__name__}, not a storage")
    return LazyTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *state: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # only tensor-producing rebuild functions are callable here; anything else yields a placeholder
    if func in (_rebuild_tensor, _rebuild_parameter):
        return func(*args)
    return Opaque(func, new_type, args, state)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("collections", "OrderedDict"): OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch ``data.pkl`` without importing or calling anything outside the allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _placeholder(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"malformed checkpoint: unsupported persistent id {pid!r:.80}")
        stype, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        dtype = stype.dtype if isinstance(stype, _StorageType) else stype if isinstance(stype, torch.dtype) else None
        if dtype is None:
            raise CheckpointError(f"malformed checkpoint: storage {key!r} has unknown type {stype!r:.80}")
        return StorageRef(str(key), dtype, int(numel))


class TorchArchive:
    """A torch zip checkpoint opened read-only and memory-mapped; ``root`` is the unpickled object tree in which
    every tensor is a :class:`LazyTensor`. Use :meth:`read` to materialise one. Close (or use ``with``) when done."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as e:
            raise CheckpointError(
                f"{self.path}: not a PyTorch zip checkpoint, or the file is truncated ({e})"
            ) from None
        names = self._zip.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise CheckpointError(f"{self.path}: no single '<name>/data.pkl' record; not a torch.save zip file")
        self._prefix = pkl[0][: -len("data.pkl")]
        bo = self._prefix + "byteorder"
        if bo in names and self._zip.read(bo).strip() not in (b"little", b""):
            raise CheckpointError(f"{self.path}: big-endian checkpoints are not supported")
        self._file = open(self.path, "rb")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self.root = _RestrictedUnpickler(self._zip.open(pkl[0])).load()
        except CheckpointError:
            self.close()
            raise
        except Exception as e:  # corrupt pickle stream
            self.close()
            raise CheckpointError(f"{self.path}: cannot parse data.pkl ({type(e).__name__}: {e})") from None

    def _data_offset(self, key: str) -> tuple[int, int]:
        name = f"{self._prefix}data/{key}"
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: storage record {name!r} is missing (truncated file?)") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{self.path}: storage {name!r} is compressed; torch.save writes them stored")
        header = self._mm[info.header_offset : info.header_offset + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{self.path}: bad local zip header for {name!r} (corrupt or truncated file)")
        n_name, n_extra = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + n_name + n_extra
        if start + info.file_size > len(self._mm):
            raise CheckpointError(f"{self.path}: storage {name!r} runs past the end of the file (truncated)")
        return start, info.file_size

    def read(self, t: LazyTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Copy one tensor out of the mapped file (optionally cast); no other storage is touched."""
        start, nbytes = self._data_offset(t.storage.key)
        itemsize = torch.empty(0, dtype=t.dtype).element_size()
        numel = nbytes // itemsize
        if numel < t.storage.numel:
            raise CheckpointError(
                f"{self.path}: storage {t.storage.key!r} holds {numel} elements, the header says {t.storage.numel}"
            )
        if t.size and min(t.size) > 0:
            last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
            if t.offset < 0 or last >= numel:
                raise CheckpointError(f"{self.path}: tensor view exceeds its storage {t.storage.key!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read-only buffer: we copy before anyone can write
            flat = (
                torch.frombuffer(self._mm, dtype=t.dtype, count=numel, offset=start)
                if numel
                else torch.empty(0, dtype=t.dtype)
            )
            out = torch.as_strided(flat, t.size, t.stride, t.offset).clone(memory_format=torch.contiguous_format)
        return out if dtype is None else out.to(dtype)

    def close(self) -> None:
        for obj in (getattr(self, "_mm", None), getattr(self, "_file", None), getattr(self, "_zip", None)):
            if obj is not None:
                try:
                    obj.close()
                except (BufferError, ValueError):
                    pass

    def __enter__(self) -> TorchArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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


def _open_any(path: PathLike) -> tuple[Any, TorchArchive | None]:
    """(root object, archive or None). Torch zip -> restricted lazy reader; legacy pickle -> weights_only load."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"{p}: file not found")
    with open(p, "rb") as f:
        magic = f.read(4)
    if zipfile.is_zipfile(p):
        arc = TorchArchive(p)
        return arc.root, arc
    if magic == b"PK\x03\x04":
        raise CheckpointError(f"{p}: zip checkpoint without a central directory: the file is truncated or corrupt")
    try:
        return torch.load(p, map_location="cpu", weights_only=True), None
    except Exception as e:
        raise CheckpointError(
            f"{p}: cannot be read safely as a legacy torch checkpoint with weights_only=True ({type(e).__name__}: {e})"
        ) from None


def _materialise(
    tensors: Mapping[str, Any], arc: TorchArchive | None, dtype: torch.dtype | None
) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in tensors.items():
        if isinstance(v, LazyTensor):
            if arc is None:
                raise CheckpointError("internal: lazy tensor without archive")
            out[k] = arc.read(v, dtype)
        else:
            out[k] = v if dtype is None else v.to(dtype)
    return out


def load_adapter_state_dict(path: PathLike, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read the adapter tensors (official key names) from a ``.safetensors``, an official ``.pth`` or an
    adapter-only torch file. Returns (state dict, origin: "ema" | "model" | "state_dict" | "safetensors")."""
    p = os.fspath(path)
    if p.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(p, framework="pt", device="cpu") as f:
                keys = list(f.keys())
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
                check_adapter_keys(shapes, p)
                sd = {k: f.get_tensor(k) for k in keys}
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{p}: unreadable safetensors file ({type(e).__name__}: {e})") from None
        return ({k: v.to(dtype) for k, v in sd.items()} if dtype is not None else sd), "safetensors"
    root, arc = _open_any(p)
    try:
        lazy, origin = select_adapter_tensors(root, p)
        return _materialise(lazy, arc, dtype), origin
    finally:
        if arc is not None:
            arc.close()


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
        root, arc = _open_any(path)
        try:
            if not isinstance(root, Mapping):
                raise CheckpointError(f"{path}: expected {what}, got {type(root).__name__}")
            out.update(_materialise(extract(root, path), arc, dtype))
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
    meta = {"format": "instancediffusion-sd15-adapter", "origin": origin, "source": os.path.basename(os.fspath(src))}
    save_file({k: v.contiguous() for k, v in state.items()}, os.fspath(dst), metadata=meta)
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
