"""Hostile and broken weight files, as an attacker or a bad conversion would make them (issue 8, items 2 and 4).

Each builder writes a small file and returns its path. Used by tests/core/test_checkpoint_safety.py and by
benchmarks/bench_hostile_checkpoints.py (time and memory to refuse each one).
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import torch

from core.ifadapter import IFAdapter
from core.instancediffusion import AdapterConfig
from core.instancediffusion.loading import expected_shapes

IFA_SECTIONS = ("text_proj_model", "adapter_modules", "pos_net")


def _one_value_views(shapes: dict[str, tuple[int, ...]]) -> OrderedDict:
    """Every tensor a stride-0 view of one shared 1-element storage: the file stays tiny whatever the shapes."""
    one = torch.full((1,), 0.01)
    return OrderedDict((k, one.reshape([1] * len(s)).expand(s) if s else one.reshape(())) for k, s in shapes.items())


def id_wide(path: str, width: int = 4096) -> str:
    """An InstanceDiffusion .pth of ~48 KiB whose 513 tensors view one 1-element storage, at widths of ``width``:
    the shapes agree with each other, so a loader that trusts them materialises ~17 GiB."""
    cfg = AdapterConfig(fuser_channels=(width,) * 16, scaleu_channels=(width,) * 12, mid_dim=width)
    torch.save({"state_dict": _one_value_views(expected_shapes(cfg))}, path)
    return path


def id_official_views(path: str) -> str:
    """The released widths (368.8 M values) as stride-0 views of one 1-element storage: ~48 KiB on disk."""
    torch.save(_one_value_views(expected_shapes()), path)
    return path


def _ifa_nested(shapes: dict[str, tuple[int, ...]], make) -> dict:
    nested: dict = {sec: OrderedDict() for sec in IFA_SECTIONS}
    for k, s in shapes.items():
        sec, rest = k.split(".", 1)
        nested[sec][rest] = make(k, s)
    return nested


def ifa_shapes(**config) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = IFAdapter(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def ifa_big(path: str) -> str:
    """An IFAdapter .bin of ~24 KiB claiming 1.1 G parameters (a resampler twice the official width), every tensor
    a view of one 1-element storage."""
    shapes = ifa_shapes(resampler_kwargs={"dim": 5120})
    views = _one_value_views(shapes)
    torch.save(_ifa_nested(shapes, lambda k, s: views[k]), path)
    return path


def ifa_official_views(path: str) -> str:
    """The official IFAdapter shapes (519.75 M values) as stride-0 views of one 1-element storage."""
    shapes = ifa_shapes()
    views = _one_value_views(shapes)
    torch.save(_ifa_nested(shapes, lambda k, s: views[k]), path)
    return path


def short_storages(src: str, dst: str, keep: int = 4) -> str:
    """A copy of the torch zip ``src`` whose storage records hold only ``keep`` bytes each: every tensor declares
    more bytes than its storage holds (a truncated or forged archive with an intact central directory)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if "/data/" in info.filename:
                data = data[:keep]
            zout.writestr(info.filename, data)
    return dst


def tiny_ifa_state(**overrides) -> dict[str, torch.Tensor]:
    """A small random IFAdapter state dict (flat keys), each tensor in its own storage."""
    config = dict(hidden_size=64, heads=2, context_dim=2048,
                  resampler_kwargs=dict(dim=32, depth=1, heads=2, dim_head=16, ff_mult=1))
    config.update(overrides)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = IFAdapter(**config)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_ifa_nested(state: dict[str, torch.Tensor], path: str, legacy: bool = False) -> str:
    torch.save(_ifa_nested({k: tuple(v.shape) for k, v in state.items()}, lambda k, s: state[k]), path,
               _use_new_zipfile_serialization=not legacy)
    return path


def file_kib(path: str) -> float:
    return os.path.getsize(path) / 1024


# ---- amplification before the checks (issue 18, item 4): small files that make a loader build gigabytes

def _torch_zip(path: str, pkl: bytes, compress: int = zipfile.ZIP_STORED) -> str:
    """A torch.save-shaped zip holding ``archive/data.pkl`` = ``pkl`` (and the byteorder record)."""
    with zipfile.ZipFile(path, "w", compress) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
    return path


def memo_amplified(path: str, pairs: int = 250_000, repeats: int = 2000, legacy: bool = False) -> str:
    """A ~1.8 MB torch zip whose data.pkl memoises one list of ``pairs`` (key, None) pairs and then calls
    ``collections.OrderedDict`` on it ``repeats`` times: each call copies the whole list, so an unbounded unpickler
    builds ``pairs`` x ``repeats`` dict entries (500 M, tens of GB) before any check can look at a tensor.
    ``legacy``: the bare pickle, as the first pickle of a legacy (pre-zip) torch file."""
    out = [pickle.PROTO + b"\x02", pickle.GLOBAL + b"collections\nOrderedDict\n", pickle.BINPUT + b"\x00",
           pickle.EMPTY_LIST, pickle.BINPUT + b"\x01", pickle.MARK]
    out += [pickle.BININT + struct.pack("<i", k) + pickle.NONE + pickle.TUPLE2 for k in range(pairs)]
    out += [pickle.APPENDS, pickle.POP, pickle.EMPTY_DICT, pickle.MARK]
    for i in range(repeats):
        out += [pickle.BININT + struct.pack("<i", i), pickle.BINGET + b"\x00", pickle.BINGET + b"\x01",
                pickle.TUPLE1, pickle.REDUCE]
    out += [pickle.SETITEMS, pickle.STOP]
    if legacy:
        with open(path, "wb") as f:
            f.write(b"".join(out))
        return path
    return _torch_zip(path, b"".join(out))


def many_entries(path: str, entries: int = 200_001) -> str:
    """A torch zip of ~25 MB with ``entries`` empty records besides its data.pkl: ``zipfile`` builds an object per
    directory entry (~10x the file's size in memory) before the loader sees anything."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        for i in range(entries):
            z.writestr(f"archive/data/{i}", b"")
    return path


def deflate_bomb(path: str, inflated: int = 2**30) -> str:
    """A torch zip of ~1 MB whose DEFLATE-compressed data.pkl inflates to ``inflated`` bytes: one BINBYTES8 object
    of zeros, which an unpickler reading the stream allocates in full before anything is checked."""
    chunk = bytes(2**24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(pickle.PROTO + b"\x04" + pickle.BINBYTES8 + struct.pack("<Q", inflated - 12))
            left = inflated - 12
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
            f.write(pickle.STOP)
        z.writestr("archive/byteorder", "little")
    return path


def aliased_records(src: str, dst: str, a: str = "0", b: str = "1") -> str:
    """A copy of the torch zip ``src`` whose directory entry for storage ``b`` points at storage ``a``'s record:
    two names, one record, so the two tensors are the same bytes (``src``'s two storages must be equally long)."""
    data = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as z:
        infos = {i.filename.rsplit("/", 1)[-1]: i for i in z.infolist() if "/data/" in i.filename}
        ia, ib = infos[a], infos[b]
        assert ia.file_size == ib.file_size, "the two storages must hold the same number of bytes"
        at = z.start_dir  # the first central directory entry
    name = ib.filename.encode()
    while True:  # walk the central directory to b's entry, then rewrite its "offset of local header" field
        assert data[at:at + 4] == b"PK\x01\x02", "no central directory entry for the storage"
        n_name, n_extra, n_comment = struct.unpack("<HHH", data[at + 28:at + 34])
        if data[at + 46:at + 46 + n_name] == name:
            break
        at += 46 + n_name + n_extra + n_comment
    assert struct.unpack("<I", data[at + 42:at + 46])[0] == ib.header_offset, "zip64 offsets are not handled"
    data[at + 42:at + 46] = struct.pack("<I", ia.header_offset)
    with open(dst, "wb") as f:
        f.write(data)
    return dst
