"""Evaluation of instance-controlled generation: the metrics the IFAdapter and InstanceDiffusion papers report.

- ``evaluate.metrics``: the metric definitions, each a small pure function over (layout, image, model outputs)
  with its definition and source in the docstring (docs/evaluation.md lists them all);
- ``evaluate.models``: the local models that produce those outputs (detectors, CLIP, VLMs, feature extractors);
- ``evaluate.benchmark_file``: benchmark files (JSONL of ``{"id", "seed", "layout"}``), read and written;
- ``evaluate.scoring.compute``: the one scoring path (the ``score`` command, the Evaluate Layout node through
  ``evaluate.layout_check``, the trainer's ``[eval]`` metrics);
- ``evaluate.runner``, ``evaluate.scoring``, ``evaluate.report``: ``python -m evaluate run | score | report``;
- ``evaluate.stress``: the overlapping-pairs stress benchmark (``python -m evaluate stress``).

Nothing here imports ComfyUI, except the runner's in-process backend, which boots one.
"""
