"""Safe reading of weight files, shared by both back-ends: nothing in a file runs, and nothing is allocated before
the file has shown that it holds what it claims.

- Torch zip checkpoints (``torch.save``) are parsed by :class:`_RestrictedUnpickler`: tensor-rebuild functions and
  ``OrderedDict`` are allow-listed; globals that can run code (``os.system``, ``subprocess``, ``builtins.eval``, ...)
  refuse the file outright; every other global becomes an inert placeholder (logged by name). Storages are not read
  while unpickling: each tensor stays a :class:`LazyTensor` pointing into the memory-mapped archive. The unpickler
  is pickle's pure-Python reader with every step counted before it runs (:data:`MAX_PICKLE_BYTES`,
  :data:`MAX_PICKLE_WORK`: steps plus the container elements a call may copy), so a small pickle cannot build
  gigabytes; zip entries are checked from the directory (count, declared size, deflate ratio) before inflating.
- Legacy (pre-zip) torch pickles are pre-read with the same unpickler; their declared storages must fit in the file
  before ``torch.load(weights_only=True)`` may allocate them.
- ``.safetensors`` errors name the file.

Before any tensor is copied out, :func:`check_tensors` refuses non-floating dtypes, views that reach past their
storage or overlap themselves, and tensors that share bytes with another (compared by their place in the file, so
two zip entries naming one record count as shared); after, :func:`check_finite` refuses
NaN / Inf. Every message names the file and the tensor.
"""

from __future__ import annotations

import _compat_pickle
import logging
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

PathLike = str | os.PathLike
log = logging.getLogger("comfyui-ifadapter")

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class CheckpointError(ValueError):
    """A weight file is unreadable, unsafe, truncated or not what it claims; the message names the file and what is
    wrong with it."""


# ----------------------------------------------------------------------------------------------------------------
# restricted unpickler for torch zip archives

# Modules whose globals can run code, touch files or the network, or rebuild code objects: a weight file never needs
# them, so a reference to one is a tampered file, refused before anything else is read.
DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "sys", "shutil", "socket",
    "importlib", "runpy", "pickle", "_pickle", "cPickle", "marshal", "ctypes", "_ctypes", "code", "codeop", "pty",
    "webbrowser", "multiprocessing", "signal", "pdb", "bdb", "timeit", "commands", "popen2", "shelve", "tempfile",
    "glob", "io", "_io", "pathlib", "http", "urllib", "urllib2", "requests", "asyncio", "threading", "_thread",
    "gc", "inspect", "operator", "functools", "types", "ast", "cProfile", "profile", "trace", "zipimport",
    "pkgutil", "site", "sysconfig", "platform", "mmap", "fcntl", "resource", "select", "selectors",
    "ssl", "smtplib", "ftplib", "telnetlib", "xmlrpc", "distutils", "setuptools", "pip",
})
DANGEROUS_NAMES = frozenset({
    "eval", "exec", "execfile", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "apply", "system", "popen", "spawn",
    "execv", "execve", "execl", "execlp", "execvp", "fork", "load", "loads",
})


def _dangerous(module: str, name: str) -> bool:
    root = module.split(".", 1)[0]
    if root in DANGEROUS_MODULES:
        return True
    return name.split(".")[-1] in DANGEROUS_NAMES and (module, name) not in _ALLOWED


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

    def dim(self) -> int:
        return len(self.size)

    def numel(self) -> int:
        n = 1
        for s in self.size:
            n *= s
        return n


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
    if (not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)) or len(size) != len(stride)
            or len(size) > MAX_TENSOR_DIMS):
        raise CheckpointError(f"malformed checkpoint: a tensor of storage {storage.key!r:.40} has size and stride "
                              f"that are not two lists of the same length (at most {MAX_TENSOR_DIMS} dimensions)")
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


# Bounds on the unpickler's work, checked while it runs (before an object is built): a weight file's pickle is an
# index of its tensors (~30 steps and ~130 bytes per tensor: 23 KiB for IFAdapter, a few hundred KiB for a whole
# SD1.5 snapshot), so these leave ample room while a small hostile pickle that rebuilds memoised containers over and
# over (one list turned into 2,000 OrderedDicts) stops after a few hundred MB instead of gigabytes.
MAX_PICKLE_BYTES = 32 * 2**20   # bytes of one pickle stream (data.pkl; each pickle of a legacy file)
MAX_PICKLE_WORK = 2_000_000     # pickle steps plus container elements copied by calls and state updates
MAX_PLACEHOLDER_CLASSES = 1000  # distinct unknown globals (an OmegaConf config names ~10)
MAX_TENSOR_DIMS = 16
MAX_ZIP_ENTRIES = 200_000       # records of a torch zip (one per storage, plus ~5)
MAX_ZIP_RATIO = 100             # uncompressed / compressed size of a deflated entry (torch stores its entries)


class _BoundedReader:
    """A file wrapper that refuses to read past ``limit`` bytes in all, before asking the file for them."""

    def __init__(self, file: Any, limit: int, source: str) -> None:
        self.file, self.limit, self.source, self.used = file, limit, source, 0

    def _refuse(self) -> CheckpointError:
        return CheckpointError(
            f"{self.source}: refused: its pickle is larger than {self.limit / 2**20:g} MB; the index of a weight "
            "file is far smaller (a hostile or corrupt file)")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.limit - self.used + 1
        if self.used + n > self.limit:
            raise self._refuse()
        data = self.file.read(n)
        self.used += len(data)
        return data

    def readline(self) -> bytes:
        line = self.file.readline(self.limit - self.used + 1)
        self.used += len(line)
        if self.used > self.limit:
            raise self._refuse()
        return line


_SIZED = (list, tuple, dict, set, frozenset)


def _inner(args: Any) -> int:
    """Elements of the containers inside ``args`` (a call may copy each of them, e.g. ``OrderedDict(pairs)``)."""
    return sum(len(a) for a in args if isinstance(a, _SIZED)) if isinstance(args, _SIZED) else 0


def _call_cost(args: Any) -> int:
    """Work of ``f(*args)``: unpacking copies ``args`` (any iterable, a string too), and ``f`` may copy the
    containers it is given. Charged before the call: the lengths are known, nothing is built yet."""
    n = len(args) if isinstance(args, (*_SIZED, str, bytes, bytearray)) else 0
    return n + _inner(args)


def _build_cost(up: Any) -> int:
    """BUILD sets an object's state: only placeholders (which keep it by reference) and ``OrderedDict`` (a state
    dict's ``_metadata``, copied into its ``__dict__``) may take one; anything else is a forged pickle."""
    state, inst = up.stack[-1], up.stack[-2]
    if isinstance(inst, Opaque):
        return 1
    if type(inst) is OrderedDict and (isinstance(state, dict) or (
            isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None)))
            and state[1] is None)):
        return len(state if isinstance(state, dict) else state[0] or ())
    raise CheckpointError(f"malformed checkpoint: the pickle sets the state of a {type(inst).__name__} object; "
                          "weight files never do")


_EXTRA_COST = {
    pickle.REDUCE[0]: lambda up: _call_cost(up.stack[-1]),
    pickle.NEWOBJ[0]: lambda up: _call_cost(up.stack[-1]),
    pickle.NEWOBJ_EX[0]: lambda up: _call_cost(up.stack[-2]) + _call_cost(up.stack[-1]),
    pickle.OBJ[0]: lambda up: _call_cost(up.stack),
    pickle.INST[0]: lambda up: _call_cost(up.stack),
    pickle.BUILD[0]: _build_cost,
}


def _load_bytearray8(up: Any) -> None:
    # pickle's own reader allocates the declared length before reading it; read first (bounded), then copy
    (n,) = struct.unpack("<Q", up.read(8))
    up.append(bytearray(up.read(n)))


def _counting_dispatch() -> dict[int, Any]:
    """pickle's pure-Python opcode table with every step charged to the unpickler's budget first."""
    base = dict(pickle._Unpickler.dispatch)
    base[pickle.BYTEARRAY8[0]] = _load_bytearray8
    table = {}
    for code, step in base.items():
        extra = _EXTRA_COST.get(code)

        def run(up: Any, step: Any = step, extra: Any = extra) -> None:
            up.charge(1 if extra is None else 1 + extra(up))
            step(up)

        table[code] = run
    return table


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickles a torch ``data.pkl`` without importing or calling anything outside the allow-list, within
    :data:`MAX_PICKLE_BYTES` and :data:`MAX_PICKLE_WORK` (pickle's pure-Python reader, each step counted before it
    runs, so a small pickle cannot make it build gigabytes).

    ``placeholders`` collects the names of unknown globals that were replaced by inert :class:`Opaque` classes."""

    dispatch = _counting_dispatch()

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(_BoundedReader(file, MAX_PICKLE_BYTES, source))
        self.source = source
        self.placeholders: set[str] = set()
        self._classes: dict[tuple[str, str], type] = {}
        self.work = 0

    def charge(self, n: int) -> None:
        self.work += n
        if self.work > MAX_PICKLE_WORK:
            raise CheckpointError(
                f"{self.source}: refused: its pickle asks for more than {MAX_PICKLE_WORK:,} steps and copied "
                "elements before building the weights; a weight file's index needs far fewer (a hostile file that "
                "rebuilds memoised objects over and over)")

    def find_class(self, module: str, name: str) -> Any:
        # protocol-2 pickles (torch.save's default) name Python 2 modules: map them as pickle itself does, so that
        # "__builtin__.eval" is judged and reported as builtins.eval
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if _dangerous(module, name):
            raise CheckpointError(
                f"{self.source}: refused: the pickle references {module}.{name}, which can run code or reach the "
                "system; weight files never need it (the file was tampered with or is not a weight file)")
        if (module, name) not in self._classes:
            if len(self._classes) >= MAX_PLACEHOLDER_CLASSES:
                raise CheckpointError(f"{self.source}: refused: the pickle names more than {MAX_PLACEHOLDER_CLASSES} "
                                      "unknown classes; weight files name a handful")
            self._classes[(module, name)] = _placeholder(module, name)
            self.placeholders.add(f"{module}.{name}")
        return self._classes[(module, name)]

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
        _check_zip_directory(self.path)
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
        if bo in names and self._entry(bo, 64).read(65).strip() not in (b"little", b""):
            raise CheckpointError(f"{self.path}: big-endian checkpoints are not supported")
        self._file = open(self.path, "rb")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        unpickler = _RestrictedUnpickler(self._entry(pkl[0], MAX_PICKLE_BYTES), self.path)
        try:
            self.root = unpickler.load()
            self.placeholders = sorted(unpickler.placeholders)
        except CheckpointError as e:
            self.close()
            if str(e).startswith(self.path):
                raise
            raise CheckpointError(f"{self.path}: {e}") from None
        except Exception as e:  # corrupt pickle stream
            self.close()
            raise CheckpointError(f"{self.path}: cannot parse data.pkl ({type(e).__name__}: {e})") from None

    def _entry(self, name: str, max_bytes: int) -> Any:
        """A reading stream of the archive entry ``name``, after its sizes in the zip directory are checked: at
        most ``max_bytes`` uncompressed and, if deflated, at most :data:`MAX_ZIP_RATIO` times its compressed size.
        Nothing is inflated before that."""
        info = self._zip.getinfo(name)
        if info.file_size > max_bytes:
            raise CheckpointError(f"{self.path}: refused: {name!r} declares {info.file_size:,} bytes, more than "
                                  f"{max_bytes:,}; a weight file's index is far smaller (a hostile or corrupt file)")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise CheckpointError(f"{self.path}: refused: {name!r} inflates {info.compress_size:,} bytes to "
                                  f"{info.file_size:,} (more than {MAX_ZIP_RATIO}x: a zip bomb); torch stores its "
                                  "records uncompressed")
        try:
            return self._zip.open(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
            raise CheckpointError(f"{self.path}: cannot read {name!r} ({e})") from None

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

    def storage_nbytes(self, key: str) -> int:
        """Bytes the archive really holds for storage ``key`` (its record, not what the pickle claims)."""
        return self._data_offset(key)[1]

    def storage_span(self, key: str) -> tuple[int, int]:
        """(first byte in the file, bytes) of storage ``key``'s record: two zip entries that point at one record
        have the same span, so tensors are compared by where their bytes lie in the file, not by record name."""
        return self._data_offset(key)

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




def _check_zip_directory(path: str) -> None:
    """Refuse a zip whose end record announces more than :data:`MAX_ZIP_ENTRIES` entries, before ``zipfile``
    builds an object for each of them (a small file of empty entries would otherwise cost ~10x its size)."""
    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # what ZipFile itself reads first: the (zip64) end-of-directory record
    except (OSError, struct.error):
        return  # unreadable: ZipFile reports it
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_ENTRIES:
        raise CheckpointError(f"{path}: refused: the zip directory announces {end[zipfile._ECD_ENTRIES_TOTAL]:,} "
                              f"entries, more than {MAX_ZIP_ENTRIES:,}; a weight file has one per tensor")


# ----------------------------------------------------------------------------------------------------------------
# opening any torch file

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER of pre-zip files


def _legacy_declared_bytes(path: str) -> int:
    """Sum of the storage sizes a legacy (pre-zip) torch pickle declares, read with the restricted unpickler (no
    allocation, no code). Raises :class:`CheckpointError` if the file is not such a pickle."""
    storages: dict[str, int] = {}

    class _Scan(_RestrictedUnpickler):
        def persistent_load(self, pid: Any) -> Any:
            if isinstance(pid, tuple) and pid and pid[0] == "module":
                return None
            ref = super().persistent_load(pid)
            storages[ref.key] = ref.numel * _itemsize(ref.dtype)
            return ref

    with open(path, "rb") as f:
        try:
            magic = _Scan(f, path).load()
            if magic != _LEGACY_MAGIC:
                raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip file nor a legacy "
                                      "torch pickle)")
            _Scan(f, path).load()  # protocol version
            _Scan(f, path).load()  # sys info
            _Scan(f, path).load()  # the object tree
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    return sum(storages.values())


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def open_torch(path: PathLike) -> tuple[Any, TorchArchive | None]:
    """(root object, archive or None) of a torch file. Zip -> restricted lazy reader (placeholders logged); legacy
    pickle -> pre-read with the restricted unpickler, storages bounded by the file size, then
    ``torch.load(weights_only=True)``."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"{p}: file not found")
    with open(p, "rb") as f:
        magic = f.read(4)
    if zipfile.is_zipfile(p):
        arc = TorchArchive(p)
        if arc.placeholders:
            log.info("[comfyui-ifadapter] %s: non-weight entries use classes outside the allow-list; read as inert "
                     "placeholders (never called): %s", p, ", ".join(arc.placeholders))
        return arc.root, arc
    if magic == b"PK\x03\x04":
        raise CheckpointError(f"{p}: zip checkpoint without a central directory: the file is truncated or corrupt")
    declared, size = _legacy_declared_bytes(p), os.path.getsize(p)
    if declared > size:
        raise CheckpointError(f"{p}: its storages claim {declared:,} bytes but the file has only {size:,}; refused "
                              "before allocating (a corrupt or hostile file)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True), None
    except Exception as e:
        raise CheckpointError(
            f"{p}: refused to load as a legacy torch checkpoint with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})") from None


# ----------------------------------------------------------------------------------------------------------------
# checks before and after reading


def check_dtypes(dtypes: Mapping[str, torch.dtype], source: str) -> None:
    """Refuse integer, bool and complex tensors: weights are floating point. Names the first offenders."""
    bad = [f"{k} ({str(d).replace('torch.', '')})" for k, d in dtypes.items() if d not in FLOAT_DTYPES]
    if bad:
        raise CheckpointError(
            f"{source}: tensor {bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''} is not floating "
            "point; weights must be float32, float16, bfloat16 or float64")


def _dense(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """True if the view covers each element of its span exactly once (contiguous up to a permutation of dims)."""
    expect = 1
    for st, n in sorted((st, n) for n, st in zip(size, stride) if n != 1):
        if st != expect:
            return False
        expect *= n
    return True


def check_tensors(tensors: Mapping[str, Any], source: str, arc: TorchArchive | None = None) -> None:
    """Before anything is copied or cast: every tensor floating point, a dense view that fits inside the bytes its
    storage really holds, and no two tensors sharing bytes. Then materialising allocates at most what the file holds.

    ``tensors``: name -> :class:`LazyTensor` (of ``arc``) or an already loaded ``torch.Tensor`` (legacy pickles)."""
    check_dtypes({k: v.dtype for k, v in tensors.items()}, source)
    spans: dict[object, list[tuple[int, int, str]]] = {}
    for name, t in tensors.items():
        size = tuple(int(s) for s in t.shape)
        if isinstance(t, LazyTensor):
            if arc is None:
                raise CheckpointError(f"{source}: internal: lazy tensor {name} without its archive")
            stride, offset = t.stride, t.offset
            base, nbytes = arc.storage_span(t.storage.key)
            sid = "file"  # records are compared by their place in the file (two entries may name one record)
        else:
            stride, offset = tuple(t.stride()), t.storage_offset()
            storage = t.untyped_storage()
            sid, nbytes, base = storage.data_ptr(), storage.nbytes(), 0
        item = _itemsize(t.dtype)
        numel = t.numel()
        if numel == 0:
            continue
        if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0 or not _dense(size, stride):
            raise CheckpointError(
                f"{source}: tensor {name} {list(size)} is a view with strides {list(stride)} that repeats elements; "
                "a weight tensor holds each of its values once (a corrupt or hostile file)")
        start, end = offset * item, (offset + numel) * item
        if end > nbytes:
            raise CheckpointError(
                f"{source}: tensor {name} {list(size)} declares {numel * item:,} bytes (from byte {start:,}) but its "
                f"storage holds only {nbytes:,}; refused before allocating (a corrupt or hostile file)")
        spans.setdefault(sid, []).append((base + start, base + end, name))
    for ranges in spans.values():
        ranges.sort()
        for (_s0, e0, n0), (s1, _e1, n1) in zip(ranges, ranges[1:]):
            if s1 < e0:
                raise CheckpointError(
                    f"{source}: tensors {n0} and {n1} share the same bytes of one storage (or of one record of the "
                    "file); weights are separate tensors (a corrupt or hostile file)")


def check_total(shapes: Mapping[str, tuple[int, ...]], source: str, limit: int, what: str) -> None:
    """Refuse more than ``limit`` elements in all (the official size of ``what`` with headroom)."""
    total = 0
    for s in shapes.values():
        n = 1
        for d in s:
            n *= int(d)
        total += n
    if total > limit:
        raise CheckpointError(f"{source}: {total:,} parameters, more than any {what} ({limit:,} at most); refused "
                              "before allocating")


def materialise(tensors: Mapping[str, Any], arc: TorchArchive | None, dtype: torch.dtype | None,
                source: str) -> dict[str, torch.Tensor]:
    """Copy checked tensors out of the archive (cast to ``dtype`` if given), then refuse NaN / Inf."""
    out = {}
    for k, v in tensors.items():
        if isinstance(v, LazyTensor):
            if arc is None:
                raise CheckpointError(f"{source}: internal: lazy tensor {k} without its archive")
            out[k] = arc.read(v, dtype)
        else:
            out[k] = v if dtype is None else v.to(dtype)
    check_finite(out, source)
    return out


def check_finite(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse tensors holding NaN or Inf, naming the first one (a broken fine-tune or conversion)."""
    for k, v in tensors.items():
        if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{source}: tensor {k} holds NaN or Inf values; the weights are broken")


# ----------------------------------------------------------------------------------------------------------------
# safetensors


def safetensors_header(path: PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, torch.dtype], dict[str, str]]:
    """(shapes, dtypes, metadata) of a ``.safetensors`` file, read from its header only; errors name the file."""
    from safetensors import safe_open

    p = os.fspath(path)
    try:
        with safe_open(p, framework="pt", device="cpu") as f:
            keys = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
            dtypes = {k: _st_dtype(f.get_slice(k).get_dtype(), p, k) for k in keys}
            return shapes, dtypes, dict(f.metadata() or {})
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable .safetensors file ({type(e).__name__}: {e})") from None


_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def _st_dtype(name: str, path: str, key: str) -> torch.dtype:
    dtype = _ST_DTYPES.get(str(name).upper())
    if dtype is None:
        raise CheckpointError(f"{path}: tensor {key} has dtype {name}; weights must be F32, F16, BF16 or F64")
    return dtype


def read_safetensors(path: PathLike, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file (cast to ``dtype`` if given), after the dtype check; NaN / Inf
    refused. The format itself guarantees that tensors fill disjoint byte ranges of the file."""
    from safetensors import safe_open

    p = os.fspath(path)
    _shapes, dtypes, _meta = safetensors_header(p)
    check_dtypes(dtypes, p)
    try:
        with safe_open(p, framework="pt", device="cpu") as f:
            out = {k: f.get_tensor(k) for k in dtypes}
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable .safetensors file ({type(e).__name__}: {e})") from None
    if dtype is not None:
        out = {k: v.to(dtype) for k, v in out.items()}
    check_finite(out, p)
    return out
