"""The models that feed the evaluation metrics, pluggable and local (docs/evaluation.md, "Models").

- ``paths.py``: a model name -> its folder under ``<ComfyUI>/models/<kind>/`` (or a path), the download switch
  (off by default), the missing-model message, device / dtype (CUDA + fp16 when there is a GPU, else CPU fp32);
- ``detector.py``: Grounding DINO / OWLv2 zero-shot detection -> ``Detection`` lists (box AP, IFS localisation);
- ``clip.py``: CLIP / SigLIP image and text embeddings (CLIP scores, attribute binding);
- ``vlm.py``: an image-text-to-text model answering the IFS question (parsed by ``ifs.parse_yes_no``);
- ``yolo.py``: ultralytics YOLO segmentation when installed (box / mask AP, mask IoU, PiM);
- ``inception.py``: Inception-v3 pool3 features from a local weights file (FID / KID).
"""
