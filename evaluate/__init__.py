"""Evaluation of instance-controlled generation: the metrics the IFAdapter and InstanceDiffusion papers report.

- ``evaluate.metrics``: the metric definitions, each a small pure function over (layout, image, model outputs)
  with its definition and source in the docstring (docs/evaluation.md lists them all);
- ``evaluate.models``: the local models that produce those outputs (detectors, CLIP, VLMs, feature extractors);
- ``evaluate.benchmark_file``: benchmark files (JSONL of ``{"id", "seed", "layout"}``);
- ``evaluate.runner``, ``evaluate.scoring``, ``evaluate.report``: ``python -m evaluate run | score | report``;
- ``evaluate.stress``: the overlapping-pairs stress benchmark (``python -m evaluate stress``).

Nothing here imports ComfyUI, except the runner's in-process backend, which boots one.
"""
