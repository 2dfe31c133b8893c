"""Preview images during training (engine): a fixed set of layouts rendered through the inference path every N
steps.

Each layout is generated exactly as a ComfyUI graph would generate it: the recipe's ``preview_model`` patches the
model as its Apply node does and gives the positive / negative conditioning; ComfyUI's sampler
(``comfy.sample.sample``) and VAE decode do the rest. The picture is saved with the layout drawn beside it
(``core/render.py``).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image

from core.layout import Layout
from core.render import render_layout

log = logging.getLogger("train")


def read_layouts(paths: list[str]) -> list[tuple[str, Layout]]:
    """``(name, layout)`` of each preview layout file (pack format or official sample format)."""
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            layout = Layout.from_json(f.read())
        if not layout.active():
            raise ValueError(f"preview layout {path} has no enabled instance")
        out.append((os.path.splitext(os.path.basename(path))[0], layout))
    return out


class PreviewRenderer:
    """Prepares the preview layouts once through the recipe (text features kept on the CPU), then renders them on
    demand."""

    def __init__(self, layouts: list[tuple[str, Layout]], recipe, encoders, out_dir: str, strict: bool = True):
        """``layouts``: ``(name, layout)`` pairs (:func:`read_layouts`); images are generated at each layout's canvas
        size rounded down to multiples of 8. A layout the recipe refuses (e.g. more instances than it supports)
        raises when ``strict``, else it is left out with a warning."""
        self.recipe, self.out_dir = recipe, out_dir
        self.items = []
        for name, layout in layouts:
            try:
                with torch.no_grad():
                    item = recipe.prepare_preview(layout, encoders)
            except ValueError as e:
                if strict:
                    raise ValueError(f"layout {name}: {e}") from None
                log.warning("layout %s left out of the evaluation: %s", name, e)
                continue
            self.items.append((name, layout, item))

    def render(self, trainable, vae, step: int, steps: int, cfg: float, seed: int, sampler: str,
               scheduler: str) -> list[tuple[str, np.ndarray]]:
        """Generate every preview layout at ``step``; returns ``(path, picture [H, W, 3] in 0..1)`` per layout."""
        out = []
        for name, layout, image in self.generate(trainable, vae, steps, cfg, seed, sampler, scheduler):
            h, w = image.shape[:2]
            picture = side_by_side(image, render_layout(layout.scaled(w, h)))
            out.append((self.save(step, name, picture), picture))
        return out

    def save(self, step: int, name: str, picture: np.ndarray) -> str:
        """Write ``picture`` (``[H, W, 3]`` in 0..1) as ``<out_dir>/step-<step>-<name>.png``; returns the path."""
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"step-{step:08d}-{name}.png")
        Image.fromarray((picture * 255).round().astype(np.uint8)).save(path)
        return path

    def generate(self, trainable, vae, steps: int, cfg: float, seed: int, sampler: str, scheduler: str):
        """Yield ``(name, layout, image [H, W, 3] float32 in 0..1)`` for every preview layout."""
        import comfy.sample

        was_training = trainable.training
        trainable.eval()
        try:
            with torch.no_grad():
                for name, layout, item in self.items:
                    w, h = max(8, layout.width // 8 * 8), max(8, layout.height // 8 * 8)
                    model, positive, negative = self.recipe.preview_model(trainable, item, w, h)
                    channels = getattr(model.model.latent_format, "latent_channels", 4)
                    latent = torch.zeros(1, channels, h // 8, w // 8)
                    noise = comfy.sample.prepare_noise(latent, seed)
                    samples = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative,
                                                  latent, denoise=1.0, seed=seed)
                    yield name, layout, vae.decode(samples)[0].float().clamp(0, 1).cpu().numpy()
        finally:
            trainable.train(was_training)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two ``[H, W, 3]`` pictures next to each other on a dark background (heights may differ)."""
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + gap + right.shape[1], 3), 0.1, dtype=np.float32)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap:] = right
    return canvas
