"""Benchmark importers: sources of layouts -> a benchmark JSONL (one ``{"id", "seed", "layout", ...}`` per line).

- ``sources.py``: reading the source files (bounded), the base seed, ``limit`` and unique ids (the item, its bounds
  and the writer are ``evaluate/benchmark_file.py``, which the runner reads with);
- ``coco.py``: COCO val2017 instances (+ captions) with InstanceDiffusion's ``eval_local.py`` selection rules for
  its box / mask / point / scribble settings and its colour / texture attribute prompts;
- ``coco_ifg.py``: COCO-IFG-style files (a global prompt and ``[x, y, w, h]`` + description tuples);
- ``folder.py``: any folder of this pack's layouts (or the sample formats ``Layout.from_json`` reads).

``python -m evaluate.benchmarks coco|coco-ifg|folder ... --out B.jsonl`` (``__main__.py``). The rules are in
docs/evaluation.md, "Benchmarks".
"""
