"""Command line: convert an IFAdapter checkpoint (e.g. the official ``spd_adapter.bin``) to ``.safetensors``.

Usage (from the pack folder): ``python -m core.ifadapter.convert SRC DST [--dtype fp16|bf16|fp32]``.
The source is read safely (no pickled code runs) and strictly checked against the official layout first.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .loading import IFAdapterCheckpointError, convert_to_safetensors

DTYPES = {"keep": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="spd_adapter.bin or another IFAdapter checkpoint")
    ap.add_argument("dst", help="output .safetensors path")
    ap.add_argument("--dtype", choices=list(DTYPES), default="keep", help="cast floating tensors (default: keep)")
    a = ap.parse_args(argv)
    if not a.dst.endswith(".safetensors"):
        ap.error(f"DST must end in .safetensors, got {a.dst!r}")
    try:
        n = convert_to_safetensors(a.src, a.dst, dtype=DTYPES[a.dtype])
    except (IFAdapterCheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {n} tensors to {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
