"""Time and peak memory to load (or refuse) tiny hostile weight files, this checkout against another one.

Usage: ``python benchmarks/bench_hostile_checkpoints.py [--before /path/to/older/checkout]``

Each file is loaded in a fresh child process (address space capped at ``--limit-gib`` so that an old loader that
tries to materialise 17 GiB fails fast instead of swapping the machine); the child reports the wall time of the
load call and the outcome, the parent reads the child's peak RSS (``wait4``). Files (tests/core/hostile_checkpoints):

- id_wide: InstanceDiffusion .pth, ~65 KiB, 513 stride-0 views of one value at widths 4096 (17 GiB if trusted);
- id_official_views: the same at the released widths (1.4 GiB);
- ifa_big: IFAdapter .bin, ~24 KiB, 1.58 G parameters claimed (resampler twice the official width), loaded fp16;
- ifa_official_views: the official IFAdapter shapes as views of one value, loaded fp16;
- ifa_memo_amplified / id_memo_amplified: ~1.7 MB data.pkl that turns one memoised list of 250,000 pairs into 2,000
  OrderedDicts (500 M dict entries if unbounded); ifa_memo_legacy: the same pickle as a legacy (pre-zip) file;
- ifa_deflate_bomb: ~1 MB deflated data.pkl that inflates to 1 GiB;
- id_many_entries: a torch zip of 200,001 empty records (zipfile builds an object for each);
- ifa_aliased_records: a tiny real IFAdapter file whose directory points two storages at one record (loads two
  identical tensors if the records are not compared by place).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "core")]

CHILD = r"""
import json, resource, sys, time
limit = int(sys.argv[3]) * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, sys.argv[1])
import torch
kind, path = sys.argv[2], sys.argv[4]
from core.ifadapter import IFAdapter, load_ifadapter
from core.instancediffusion import InstanceDiffusion, load_instancediffusion
with torch.device("meta"):  # warm-up: the first meta-device model lazily imports torch._refs, sympy, ... (seconds)
    IFAdapter(hidden_size=64, heads=2, resampler_kwargs=dict(dim=32, depth=1, heads=2, dim_head=16, ff_mult=1))
    InstanceDiffusion()
t0 = time.perf_counter()
try:
    if kind == "import-only":
        pass
    elif kind.startswith("id"):
        load_instancediffusion(path)
    else:
        load_ifadapter(path, dtype=torch.float16)
    out = {"outcome": "LOADED"}
except BaseException as e:
    out = {"outcome": type(e).__name__, "message": str(e).replace(path, "<file>")[:160]}
out["ms"] = (time.perf_counter() - t0) * 1000
print(json.dumps(out))
"""


def run(repo: Path, kind: str, path: str, limit_gib: int) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(repo), kind, str(limit_gib), path],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"outcome": "crashed", "ms": float("nan")}
    res["peak_rss_mib"] = usage.ru_maxrss / 1024
    return res


def aliased_ifa(path: str) -> str:
    """A tiny real IFAdapter file, then its copy with two equally long storages pointing at one record."""
    import zipfile

    import hostile_checkpoints as h

    src = h.save_ifa_nested(h.tiny_ifa_state(), path + ".src")
    by_size: dict[int, list[str]] = {}
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            if "/data/" in info.filename:
                by_size.setdefault(info.file_size, []).append(info.filename.rsplit("/", 1)[-1])
    a, b = next(keys for keys in by_size.values() if len(keys) > 1)[:2]
    return h.aliased_records(src, path, a, b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="another checkout of the pack (e.g. main before the fix)")
    ap.add_argument("--limit-gib", type=int, default=8, help="address-space cap of each child (default 8 GiB)")
    args = ap.parse_args()
    import hostile_checkpoints as h

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    repos = {"this": REPO} | ({"before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory() as d:
        print("import-only (torch + the loaders: the floor of every peak RSS below)")
        for name, repo in repos.items():
            r = run(repo, "import-only", "-", args.limit_gib)
            print(f"  {name:6s} {'-':24s} {'':9s}    peak RSS {r['peak_rss_mib']:7.0f} MiB")
        for kind, build in (("id_wide", h.id_wide), ("id_official_views", h.id_official_views),
                            ("ifa_big", h.ifa_big), ("ifa_official_views", h.ifa_official_views),
                            ("ifa_memo_amplified", h.memo_amplified), ("id_memo_amplified", h.memo_amplified),
                            ("ifa_memo_legacy", lambda p: h.memo_amplified(p, legacy=True)),
                            ("ifa_deflate_bomb", h.deflate_bomb), ("id_many_entries", h.many_entries),
                            ("ifa_aliased_records", aliased_ifa)):
            path = build(os.path.join(d, kind + (".pth" if kind.startswith("id") else ".bin")))
            print(f"{kind} ({h.file_kib(path):.0f} KiB)")
            for name, repo in repos.items():
                r = run(repo, kind, path, args.limit_gib)
                print(f"  {name:6s} {r['outcome']:24s} {r['ms']:9.1f} ms  peak RSS {r['peak_rss_mib']:7.0f} MiB  "
                      f"{r.get('message', '')[:110]}")


if __name__ == "__main__":
    main()
