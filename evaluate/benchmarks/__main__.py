"""``python -m evaluate.benchmarks coco|coco-ifg|folder ... --out B.jsonl``: write a benchmark JSONL.

Examples (docs/evaluation.md, "Benchmarks")::

    python -m evaluate.benchmarks coco --instances annotations/instances_val2017.json \\
        --captions annotations/captions_val2017.json --setting mask --out coco-mask.jsonl
    python -m evaluate.benchmarks coco --instances ... --captions ... --setting box --attributes colors --out c.jsonl
    python -m evaluate.benchmarks coco-ifg coco_ifg.json --out ifg.jsonl
    python -m evaluate.benchmarks folder my_layouts/ --out mine.jsonl
"""

from __future__ import annotations

import argparse
import sys

from ..benchmark_file import BenchmarkError, write_benchmark
from .coco import ATTRIBUTES, SETTINGS, coco_items
from .coco_ifg import DEFAULT_SIZE, coco_ifg_items
from .folder import folder_items


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluate.benchmarks", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="source", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="the benchmark JSONL to write (replaced atomically)")
    common.add_argument("--limit", type=int, default=None, help="only the first N items (seeds unchanged)")
    common.add_argument("--seed", type=int, default=0, help="seed of the first item; item i gets seed + i")
    c = sub.add_parser("coco", parents=[common], help="COCO val2017 by InstanceDiffusion's eval_local.py rules")
    c.add_argument("--instances", required=True, help="instances_val2017.json (or the official 512x512 one)")
    c.add_argument("--captions", default=None, help="captions_val2017.json: the prompt starts with the first "
                                                     "caption (the official --use_captions)")  # fmt: skip
    c.add_argument("--setting", choices=SETTINGS, default="box", help="which location inputs (test_*.yaml)")
    c.add_argument("--attributes", default="", help=f"comma-separated, among {', '.join(ATTRIBUTES)}: the "
                                                     "official random colour / texture before each category name")
    f = sub.add_parser("coco-ifg", parents=[common], help="a COCO-IFG-style file (prompt + [x, y, w, h] + text)")
    f.add_argument("file")
    f.add_argument("--width", type=int, default=DEFAULT_SIZE, help="canvas width when an item gives none")
    f.add_argument("--height", type=int, default=DEFAULT_SIZE, help="canvas height when an item gives none")
    d = sub.add_parser("folder", parents=[common], help="a folder of layout JSON files")
    d.add_argument("folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.source == "coco":
            attrs = [a.strip() for a in args.attributes.split(",") if a.strip()]
            items = coco_items(args.instances, args.captions, args.setting, attrs, args.limit, args.seed)
        elif args.source == "coco-ifg":
            items = coco_ifg_items(args.file, args.width, args.height, args.limit, args.seed)
        else:
            items = folder_items(args.folder, args.limit, args.seed)
        n = write_benchmark(args.out, items)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    instances = sum(len(it.layout.active()) for it in items)
    print(f"wrote {n} items ({instances} instances) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
