"""``python -m evaluate run | score | report | stress`` (docs/evaluation.md, "The one-command path").

- ``run``: one image per benchmark item through a ComfyUI workflow, on ``--servers`` or in-process;
- ``score``: the selected metrics over a run folder, with local models;
- ``report``: Markdown + JSON tables, per-instance JSONL and a self-contained HTML page;
- ``stress``: a generated benchmark of overlapping box pairs (IoU 0.1 ... 0.9).
"""
from __future__ import annotations

import argparse
import sys


def _run(a: argparse.Namespace) -> int:
    from .runner.engine import RunOptions, run_benchmark
    from .runner.slots import Override, ablation_overrides

    overrides = [Override.parse(s) for s in a.set or []]
    overrides += ablation_overrides(a.scaleu, a.mis, a.ifadapter_tokens)
    servers = [s for s in (a.servers or "").split(",") if s.strip()]
    opts = RunOptions(a.benchmark, a.workflow, a.out, servers, overrides, a.output_node, a.prompt_template,
                      a.comfyui, tuple(a.custom_nodes or ()), a.comfy_models, a.item_timeout, a.limit)
    s = run_benchmark(opts)
    print(f"generated {s.generated}, already done {s.skipped}, failed {len(s.failed)} (workflow {s.workflow_hash}); "
          f"run folder {a.out}")
    return 0 if s.ok else 1


def _score(a: argparse.Namespace) -> int:
    from .scoring.cli import score_command

    return score_command(a)


def _report(a: argparse.Namespace) -> int:
    from .report.write import write_report

    paths = write_report(a.run)
    for p in paths:
        print(p)
    return 0


def _stress(a: argparse.Namespace) -> int:
    from .stress import write_stress_benchmark

    n = write_stress_benchmark(a.out, a.width, a.height, a.seeds, a.ious, a.pairs)
    print(f"wrote {n} items to {a.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="generate one image per benchmark item")
    r.add_argument("--benchmark", required=True, help="benchmark JSONL: {id, seed, layout} per line")
    r.add_argument("--workflow", required=True, help="a ComfyUI workflow (UI or API format) with a layout node")
    r.add_argument("--out", required=True, help="the run folder (created; an existing one is resumed)")
    r.add_argument("--servers", default="", help="comma-separated ComfyUI URLs (http://host:port); none = in-process")
    r.add_argument("--comfyui", help="in-process: the ComfyUI folder (default: COMFYUI_PATH or the one the pack is in)")
    r.add_argument("--custom-nodes", action="append", help="in-process: another custom_nodes folder to load")
    r.add_argument("--comfy-models", help="in-process: another ComfyUI models folder to read")
    r.add_argument("--set", action="append", metavar="NODE.input=VALUE",
                   help="override a node input for every item (NODE: id or type; VALUE: JSON or text)")
    r.add_argument("--scaleu", choices=("on", "off"), help="ablation: InstanceDiffusion ScaleU on / off")
    r.add_argument("--mis", type=float, help="ablation: InstanceDiffusion sampler MIS fraction (0 = off, 0.36 official)")
    r.add_argument("--ifadapter-tokens", choices=("both", "appearance", "eot"),
                   help="ablation: IFAdapter tokens: both (official), appearance only (no EoT), EoT only")
    r.add_argument("--output-node", help="the Save Image node id, when the workflow has several")
    r.add_argument("--prompt-template", default="{prompt}",
                   help="the positive text from the layout's prompt, e.g. '{prompt}, photograph'")
    r.add_argument("--item-timeout", type=float, default=3600.0, help="seconds one item may take on a server")
    r.add_argument("--limit", type=int, help="only the first N valid items")
    r.set_defaults(fn=_run)

    s = sub.add_parser("score", help="compute metrics over a run folder")
    from .scoring.cli import add_arguments

    add_arguments(s)
    s.set_defaults(fn=_score)

    rep = sub.add_parser("report", help="tables, per-instance JSONL and an HTML page for a scored run")
    rep.add_argument("--run", required=True, help="the run folder (after score)")
    rep.set_defaults(fn=_report)

    st = sub.add_parser("stress", help="write an overlapping-pairs stress benchmark")
    st.add_argument("--out", required=True, help="the benchmark JSONL to write")
    st.add_argument("--width", type=int, default=512)
    st.add_argument("--height", type=int, default=512)
    st.add_argument("--seeds", type=int, default=1, help="seeds per layout (1..1000)")
    st.add_argument("--ious", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="target IoUs, comma-separated")
    st.add_argument("--pairs", default="", help="description pairs 'a red car|a blue car;...' (default: built-in)")
    st.set_defaults(fn=_stress)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return a.fn(a)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
