"""Evaluation of instance-controlled generation: the metrics the IFAdapter and InstanceDiffusion papers report.

``evaluate.metrics`` holds the metric definitions, each a small pure function over (layout, image, model outputs)
with its definition and source in the docstring (docs/evaluation.md lists them all). The models that produce the
outputs (detectors, CLIP, VLMs, feature extractors), the runner (``python -m evaluate ...``) and the node come on
top of these and are not built yet. Nothing here imports ComfyUI.
"""
