"""YOLO segmentation (InstanceDiffusion's YOLOv8-seg) through ``ultralytics``, only when it is installed.

The weights are a local ``.pt`` file under ``<models root>/yolo/`` (or a path); ultralytics is never asked to
download (a name that is no existing file is refused before ultralytics sees it). Each image gives one
:class:`evaluate.metrics.detection.Detection` per instance with its class name as category, pixel xyxy box, score
and a bool mask at the image's size (ultralytics' ``retina_masks``): what box / mask AP, mask IoU and PiM take.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import torch

from ..metrics.detection import Detection
from .clip import _images
from .paths import WrongModelKind, placement, resolve_model

MISSING = ("YOLO segmentation needs the 'ultralytics' package, which is not installed; install it "
           "(pip install ultralytics) and put the weights file (e.g. yolov8x-seg.pt) in <ComfyUI>/models/yolo/")


def available() -> bool:
    return importlib.util.find_spec("ultralytics") is not None


class YoloSegmenter:
    """An ultralytics YOLO segmentation model from a local ``.pt``; :meth:`detect` gives Detections with masks."""

    def __init__(self, name: str, models_root: str | None = None, allow_path: bool = False,
                 device: str | None = None, fp16: bool | None = None, conf: float = 0.001):  # fmt: skip
        if not available():
            raise ImportError(MISSING)
        path = resolve_model(name, "yolo", models_root, allow_path, allow_download=False)
        if not path.endswith(".pt"):
            raise WrongModelKind(f"yolo model {name!r} at {path} must be an ultralytics .pt weights file")
        from ultralytics import YOLO

        self.model = YOLO(path, task="segment")
        if getattr(self.model, "task", "segment") != "segment":
            raise WrongModelKind(f"yolo model {name!r} at {path} is a {self.model.task!r} model, not 'segment'")
        self.place = placement(device, fp16)
        self.conf = float(conf)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        ims = [im[:, :, ::-1].copy() for im in _images(images)]  # ultralytics takes numpy images as BGR
        results = self.model.predict(ims, conf=self.conf, retina_masks=True, verbose=False,
                                     device=str(self.place.device), half=self.place.dtype == torch.float16)
        out = []
        for r in results:
            names = r.names
            dets = []
            masks = None if r.masks is None else r.masks.data.cpu().numpy() > 0.5
            for k in range(len(r.boxes)):
                box = tuple(float(v) for v in r.boxes.xyxy[k].tolist())
                dets.append(Detection(box, float(r.boxes.conf[k]), names[int(r.boxes.cls[k])],
                                      None if masks is None else masks[k]))
            out.append(dets)
        return out
