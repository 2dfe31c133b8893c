"""``python -m evaluate score``: the selected metrics over a run folder (``compute.py``: the metrics per image and
over the run; ``cli.py``: the command's options, model loading and the files it writes under ``<run>/scores/``)."""
