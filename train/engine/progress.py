"""Progress reporting on rank 0: a progress bar (loss, step time, ETA), a JSON-lines metrics log, and TensorBoard
scalars and images when the ``tensorboard`` package is installed (it is optional: without it nothing is lost but
the TensorBoard files)."""
from __future__ import annotations

import json
import logging
import os

import numpy as np

log = logging.getLogger("train")


def tensorboard_writer(log_dir: str):
    """A ``SummaryWriter`` if TensorBoard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's wrapper imports the tensorboard package, which is optional here
        return None
    return SummaryWriter(log_dir=log_dir)


class Progress:
    """Rank 0's reporting; every method is a no-op on other ranks."""

    def __init__(self, output_dir: str, total: int, initial: int, enabled: bool, title: str = "training"):
        self.enabled = enabled
        self.bar = self.tb = self.metrics = None
        if not enabled:
            return
        from tqdm import tqdm

        os.makedirs(output_dir, exist_ok=True)
        self.bar = tqdm(total=total, initial=initial, desc=title, unit="step", dynamic_ncols=True)
        self.metrics = open(os.path.join(output_dir, "metrics.jsonl"), "a", encoding="utf-8")
        self.tb = tensorboard_writer(os.path.join(output_dir, "tensorboard"))
        if self.tb is None:
            log.info("TensorBoard is not installed (pip install tensorboard); metrics go to metrics.jsonl only")

    def record(self, step: int, **values: float) -> None:
        """One line in ``metrics.jsonl`` and one TensorBoard scalar per value."""
        if not self.enabled:
            return
        self.metrics.write(json.dumps({"step": step, **values}) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def step(self, step: int, loss: float, step_time: float, lr: float) -> None:
        if self.enabled:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", step_s=f"{step_time:.2f}", lr=f"{lr:.2e}")

    def images(self, step: int, pictures: list[tuple[str, np.ndarray]]) -> None:
        if self.enabled and self.tb is not None:
            for path, pic in pictures:
                self.tb.add_image(f"samples/{os.path.basename(path).split('-', 2)[-1]}", pic, step, dataformats="HWC")

    def write(self, message: str) -> None:
        if self.enabled:
            self.bar.write(message)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.metrics.close()
            if self.tb is not None:
                self.tb.close()
