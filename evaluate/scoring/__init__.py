"""Scoring: ``compute.py`` (``score_images``: every metric per instance, per image and over a set of images; the one
scoring path of ``python -m evaluate score``, the Evaluate Layout node and the trainer's ``[eval]`` metrics);
``cli.py``: the ``score`` command's options, model loading and the files it writes under ``<run>/scores/``."""
