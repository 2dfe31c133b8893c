"""The evaluation metrics, one module per family (definitions and sources: docs/evaluation.md).

- ``ground_truth.py``: a layout's enabled instances at image size (category, box, mask, points);
- ``crops.py``: box -> crop, with the official clipping and rounding;
- ``detection.py``: box AP / AP50 / AP75 and mask AP by pycocotools;
- ``masks.py``: mask IoU per instance and PiM (points in mask), InstanceDiffusion's definitions;
- ``clip_scores.py``: instance CLIP score (crop vs description) and image-level CLIP score;
- ``attributes.py``: attribute-binding accuracy (colours / textures, zero-shot among candidates);
- ``ifs.py``: the IFS rate (localisation + VLM verification), prompt template and yes/no parser;
- ``distribution.py``: FID and KID from feature arrays.
"""
