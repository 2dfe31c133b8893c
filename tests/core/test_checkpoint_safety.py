"""Hostile and broken weight files are refused before anything is allocated, with the file and the tensor named
(issue 8, items 2 and 4). The files come from hostile_checkpoints.py; the two loaders share core/checkpoints.py."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import hostile_checkpoints as h
import pytest
import torch
from id_checkpoint_fixtures import FIXTURE_CONFIG, Pool, adapter_state, pool_views_state
from safetensors.torch import save_file

from core.checkpoints import CheckpointError
from core.ifadapter import IFAdapterCheckpointError, load_ifadapter, read_state_dict
from core.instancediffusion import load_adapter_state_dict, load_instancediffusion

REPO = Path(__file__).resolve().parents[2]
LIMIT_GIB = 5  # address space of the child: torch needs ~4; a loader that trusts the file asks for 17 GiB

CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1]) * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CPU, (120, 120))  # a loader that spins is killed, not waited for
sys.path.insert(0, sys.argv[2])
import torch
from core.ifadapter import load_ifadapter
from core.instancediffusion import load_instancediffusion
kind, path = sys.argv[3], sys.argv[4]
try:
    if kind == "id":
        load_instancediffusion(path)
    else:
        load_ifadapter(path, dtype=torch.float16)
    print(json.dumps({"outcome": "LOADED"}))
except BaseException as e:
    print(json.dumps({"outcome": type(e).__name__, "bases": [c.__name__ for c in type(e).__mro__],
                      "message": str(e)}))
"""


def _load_in_child(kind: str, path: str) -> dict:
    """Load in a fresh process whose address space is capped (a loader that allocates what the file claims fails
    there, not on the test machine); returns the outcome and the child's peak RSS."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(LIMIT_GIB), str(REPO), kind, path],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    lines = out.strip().splitlines()
    res = json.loads(lines[-1]) if lines else {"outcome": "crashed", "bases": [], "message": ""}
    res["peak_rss_mib"] = usage.ru_maxrss / 1024
    return res


@pytest.mark.parametrize("build,kind,match", [
    (h.id_wide, "id", r"fuser_channels\[0\] = 4096; an InstanceDiffusion adapter has 1\.\.320"),
    (h.id_official_views, "id", r"tensor \S+ \[\d+(, \d+)*\] is a view with strides \[0(, 0)*\] that repeats"),
    (h.ifa_big, "ifa", r"1,578,871,104 parameters, more than any IFAdapter"),
    (h.ifa_official_views, "ifa", r"tensor text_proj_model\.\S+ .* is a view with strides .* that repeats"),
])
def test_tiny_files_claiming_huge_tensors_are_refused_unallocated(tmp_path, build, kind, match):
    path = build(str(tmp_path / ("x.pth" if kind == "id" else "x.bin")))
    assert h.file_kib(path) < 100
    res = _load_in_child(kind, path)
    assert "CheckpointError" in res["bases"], res
    assert res["message"].startswith(path) and re.search(match, res["message"]), res["message"]
    # refused on the shapes alone: the child stays near the cost of importing torch (the file claims >= 1 GiB)
    assert res["peak_rss_mib"] < 1200, res


def test_old_fixture_layout_views_into_one_pool_is_refused(tmp_path):
    """The layout the old test fixtures used (each tensor a strided window into one shared pool) is exactly the
    attack: refused, naming the first tensor."""
    path = str(tmp_path / "pool.pth")
    torch.save({"state_dict": pool_views_state(Pool(0), FIXTURE_CONFIG)}, path)
    with pytest.raises(CheckpointError, match=r"pool.pth: tensor position_net\.\S+ .* that repeats elements"):
        load_adapter_state_dict(path)


def _id_state() -> OrderedDict:
    return adapter_state(Pool(1), salt=5)


def test_storage_records_shorter_than_declared_are_refused_before_reading(tmp_path):
    good = str(tmp_path / "good.pth")
    torch.save(_id_state(), good)
    bad = h.short_storages(good, str(tmp_path / "short.pth"))
    with pytest.raises(CheckpointError, match=r"short.pth: tensor \S+ .* declares [\d,]+ bytes .* storage holds only 4"):
        load_adapter_state_dict(bad)
    ifa = h.save_ifa_nested(h.tiny_ifa_state(), str(tmp_path / "good.bin"))
    bad = h.short_storages(ifa, str(tmp_path / "short.bin"))
    with pytest.raises(IFAdapterCheckpointError, match=r"short.bin: tensor \S+ .* declares [\d,]+ bytes"):
        read_state_dict(bad)


def test_legacy_pickle_whose_storages_exceed_the_file_is_refused(tmp_path):
    path = h.save_ifa_nested(h.tiny_ifa_state(), str(tmp_path / "legacy.bin"), legacy=True)
    read_state_dict(path)  # the intact legacy file loads
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(IFAdapterCheckpointError, match=r"legacy.bin: its storages claim [\d,]+ bytes but the file"):
        read_state_dict(path)


def test_tensors_sharing_bytes_are_refused_naming_both(tmp_path):
    state = _id_state()
    state["scaleu_b_1"] = state["scaleu_b_0"]  # same shape, same bytes
    path = str(tmp_path / "alias.pth")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"alias.pth: tensors scaleu_b_\d and scaleu_b_\d share the same bytes"):
        load_adapter_state_dict(path)
    ifa = h.tiny_ifa_state()
    ifa["pos_net.linears_position.0.bias"] = ifa["pos_net.linears_position.2.bias"]
    path = h.save_ifa_nested(ifa, str(tmp_path / "alias.bin"))
    with pytest.raises(IFAdapterCheckpointError, match=r"alias.bin: tensors pos_net\.\S+ and pos_net\.\S+ share"):
        read_state_dict(path)
    # separate tensors packed side by side in one storage are fine (no shared bytes)
    packed = _id_state()
    b0 = packed["scaleu_b_0"]
    base = torch.cat([b0, packed["scaleu_b_1"]])
    packed["scaleu_b_0"], packed["scaleu_b_1"] = base[: b0.numel()], base[b0.numel():]
    torch.save(packed, str(tmp_path / "packed.pth"))
    sd, _ = load_adapter_state_dict(str(tmp_path / "packed.pth"))
    assert torch.equal(sd["scaleu_b_1"], base[b0.numel():])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_weights_are_refused_with_the_tensor_name(tmp_path, value):
    state = _id_state()
    state["position_net.linears_list.0.0.weight"][3, 1] = value
    path = str(tmp_path / "nan_id.safetensors")
    save_file(dict(state), path)
    with pytest.raises(CheckpointError, match=r"nan_id.safetensors: tensor position_net.linears_list.0.0.weight "
                                              r"holds NaN or Inf"):
        load_instancediffusion(path)
    torch.save(state, str(tmp_path / "nan_id.pth"))
    with pytest.raises(CheckpointError, match=r"nan_id.pth: tensor position_net.linears_list.0.0.weight holds NaN"):
        load_instancediffusion(str(tmp_path / "nan_id.pth"))
    ifa = h.tiny_ifa_state()
    ifa["text_proj_model.latents"][0, 1, 2] = value
    path = h.save_ifa_nested(ifa, str(tmp_path / "nan_ifa.bin"))
    with pytest.raises(IFAdapterCheckpointError, match=r"nan_ifa.bin: tensor text_proj_model.latents holds NaN"):
        load_ifadapter(path)


def test_corrupt_safetensors_names_the_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}  ")
    with pytest.raises(IFAdapterCheckpointError, match=r"broken.safetensors: not a readable .safetensors file"):
        load_ifadapter(path)
    with pytest.raises(CheckpointError, match=r"broken.safetensors: not a readable .safetensors file"):
        load_instancediffusion(str(path))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_and_bool_tensors_give_one_error_naming_file_and_tensor(tmp_path, dtype):
    ifa = h.tiny_ifa_state()
    ifa["adapter_modules.121.alpha"] = ifa["adapter_modules.121.alpha"].to(dtype)
    st = tmp_path / "int.safetensors"
    save_file(ifa, str(st))
    with pytest.raises(IFAdapterCheckpointError) as err:
        load_ifadapter(st)
    msg = str(err.value)
    assert msg.startswith(str(st)) and "tensor adapter_modules.121.alpha" in msg and "not floating point" in msg
    assert "require gradients" not in msg
    path = h.save_ifa_nested(ifa, str(tmp_path / "int.bin"))
    with pytest.raises(IFAdapterCheckpointError, match=r"int.bin: tensor adapter_modules.121.alpha \((int64|bool)\)"):
        load_ifadapter(path)
    state = _id_state()
    state["scaleu_s_3"] = state["scaleu_s_3"].to(dtype)
    torch.save(state, str(tmp_path / "int.pth"))
    with pytest.raises(CheckpointError, match=r"int.pth: tensor scaleu_s_3 \((int64|bool)\) is not floating point"):
        load_instancediffusion(str(tmp_path / "int.pth"))


class _Gadget:
    """Pickles as a call of ``func(*args)``: what a tampered checkpoint hides in a non-weight entry."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("func,args,named", [
    (os.system, ("touch {pwn}",), r"(posix|nt|os)\.system"),
    (subprocess.Popen, (["touch", "{pwn}"],), r"subprocess\.Popen"),
    (eval, ("__import__('os').mkdir('{pwn}')",), r"builtins\.eval"),
    (exec, ("import os; os.mkdir('{pwn}')",), r"builtins\.exec"),
])
def test_dangerous_globals_in_non_weight_entries_refuse_the_file(tmp_path, func, args, named):
    pwn = tmp_path / "pwned"
    args = tuple([a.format(pwn=pwn) for a in x] if isinstance(x, list) else x.format(pwn=pwn) for x in args)
    path = str(tmp_path / "snapshot.pth")
    torch.save({"ema": _id_state(), "iters": 1, "config_dict": {"hook": _Gadget(func, *args)}}, path)
    with pytest.raises(CheckpointError, match=rf"snapshot.pth: refused: the pickle references {named}"):
        load_adapter_state_dict(path)
    ifa = h.tiny_ifa_state()
    nested = {sec: {k.split(".", 1)[1]: v for k, v in ifa.items() if k.startswith(sec + ".")}
              for sec in h.IFA_SECTIONS}
    nested["pos_net"]["extra"] = _Gadget(func, *args)
    torch.save(nested, str(tmp_path / "adapter.bin"))
    with pytest.raises(IFAdapterCheckpointError, match=rf"adapter.bin: refused: the pickle references {named}"):
        read_state_dict(str(tmp_path / "adapter.bin"))
    assert not pwn.exists()


# ---- amplification before the checks (issue 18, item 4)

@pytest.mark.parametrize("kind,suffix", [("ifa", "bin"), ("id", "pth")])
def test_pickle_that_copies_one_memoised_list_2000_times_is_refused_small(tmp_path, kind, suffix):
    """1.8 MB of pickle asking for 500 M dict entries (main grew by 4+ GB in 14 s and died of MemoryError under the
    cap): the unpickler's budget stops it after a few million steps, before any tensor exists."""
    path = h.memo_amplified(str(tmp_path / f"memo.{suffix}"))
    assert h.file_kib(path) < 2000
    res = _load_in_child(kind, path)
    assert "CheckpointError" in res["bases"], res
    assert res["message"].startswith(path) and "asks for more than 2,000,000 steps" in res["message"], res
    assert res["peak_rss_mib"] < 1200, res


def test_legacy_pickle_that_copies_one_memoised_list_is_refused_small(tmp_path):
    """The same pickle as the first pickle of a legacy (pre-zip) file: read by the same counted unpickler."""
    path = h.memo_amplified(str(tmp_path / "memo_legacy.bin"), legacy=True)
    res = _load_in_child("ifa", path)
    assert "CheckpointError" in res["bases"] and "asks for more than 2,000,000 steps" in res["message"], res
    assert res["peak_rss_mib"] < 1200, res


def test_zip_announcing_too_many_entries_is_refused_before_reading_its_directory(tmp_path):
    path = h.many_entries(str(tmp_path / "entries.pth"))
    with pytest.raises(CheckpointError, match=r"entries.pth: refused: the zip directory announces 200,002 entries, "
                                              r"more than 200,000"):
        load_adapter_state_dict(path)


def test_deflated_pickle_that_inflates_past_the_limit_is_refused_uninflated(tmp_path):
    """A ~0.3 MB entry declaring 256 MB (main inflated all of it into one bytes object): refused from the zip
    directory's sizes, nothing inflated."""
    path = h.deflate_bomb(str(tmp_path / "bomb.bin"), inflated=256 * 2**20)
    assert h.file_kib(path) < 1024
    res = _load_in_child("ifa", path)
    assert "CheckpointError" in res["bases"], res
    assert re.search(r"'archive/data.pkl' declares 268,435,456 bytes, more than 33,554,432", res["message"]), res
    assert res["peak_rss_mib"] < 1200, res


def test_deflated_entries_are_refused_by_ratio_and_honest_ones_load(tmp_path):
    bomb = h.deflate_bomb(str(tmp_path / "ratio.bin"), inflated=24 * 2**20)  # under the size cap, ~1000x
    with pytest.raises(IFAdapterCheckpointError, match=r"ratio.bin: refused: 'archive/data.pkl' inflates [\d,]+ "
                                                       r"bytes to 25,165,824 \(more than 100x: a zip bomb\)"):
        read_state_dict(bomb)
    # a real checkpoint whose data.pkl was deflated by a zip tool (ratio ~3) still loads
    good = h.save_ifa_nested(h.tiny_ifa_state(), str(tmp_path / "good.bin"))
    deflated = str(tmp_path / "deflated.bin")
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(deflated, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename),
                          zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED)
    assert read_state_dict(deflated).keys() == read_state_dict(good).keys()


def _two_equal_storages(path: str) -> tuple[str, str]:
    """Keys of two storage records of the torch zip ``path`` that hold the same number of bytes."""
    by_size: dict[int, list[str]] = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if "/data/" in info.filename:
                by_size.setdefault(info.file_size, []).append(info.filename.rsplit("/", 1)[-1])
    a, b = next(keys for keys in by_size.values() if len(keys) > 1)[:2]
    return a, b


def test_two_zip_entries_pointing_at_one_record_are_refused(tmp_path):
    """Two storage names, one record in the file: the two tensors would be the same bytes, as the "no shared
    bytes" rule forbids (main loaded two identical tensors)."""
    path = h.save_ifa_nested(h.tiny_ifa_state(), str(tmp_path / "two.bin"))
    bad = h.aliased_records(path, str(tmp_path / "aliased.bin"), *_two_equal_storages(path))
    with pytest.raises(IFAdapterCheckpointError, match=r"aliased.bin: tensors \S+ and \S+ share the same bytes"):
        read_state_dict(bad)
    path = str(tmp_path / "two.pth")
    torch.save(_id_state(), path)
    bad = h.aliased_records(path, str(tmp_path / "aliased.pth"), *_two_equal_storages(path))
    with pytest.raises(CheckpointError, match=r"aliased.pth: tensors \S+ and \S+ share the same bytes"):
        load_adapter_state_dict(bad)
