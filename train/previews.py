"""Preview images during training: a fixed set of layouts rendered through the inference path every N steps.

Each layout is generated exactly as a ComfyUI graph would generate it: tokens from the adapter's
``encode_instances`` / ``encode_uncond`` (the Encode Appearance Tokens computation), the model patched by the
**Apply IFAdapter** node's own ``apply``, ComfyUI's sampler (``comfy.sample.sample``) with the official zero
negative, ComfyUI's VAE decode. The picture is saved with the layout drawn beside it (``core/render.py``).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from core.ifadapter.runtime import InstanceTokens
from core.layout import Layout
from core.render import render_layout

from .cache import TextEncoder


class PreviewRenderer:
    """Encodes the preview layouts once (text features kept on the CPU), then renders them on demand."""

    def __init__(self, layout_paths: list[str], text: TextEncoder, ifa_nodes, out_dir: str):
        self.ifa_nodes, self.out_dir = ifa_nodes, out_dir
        self.items = []
        for path in layout_paths:
            with open(path, encoding="utf-8") as f:
                layout = Layout.from_json(f.read())
            layout.validate(max_instances=10, backend="IFAdapter")
            if not layout.active():
                raise ValueError(f"preview layout {path} has no enabled instance")
            texts = [inst.description.strip() for inst in layout.active()]
            with torch.no_grad():
                prompt, pooled = text.prompt(layout.prompt)
                hidden, eot, mask = text.descriptions(texts)
            self.items.append({"name": os.path.splitext(os.path.basename(path))[0], "layout": layout,
                               "prompt": prompt, "pooled": pooled, "hidden": hidden, "eot": eot, "mask": mask})

    def _tokens(self, adapter, item) -> InstanceTokens:
        ref = adapter.text_proj_model.proj_in.weight
        boxes = item["layout"].boxes_normalized()
        cond = adapter.encode_instances(item["hidden"].to(ref.device, ref.dtype), item["mask"].to(ref.device),
                                        item["eot"].to(ref.device, ref.dtype), boxes.to(ref.device))
        uncond = adapter.encode_uncond(boxes.to(ref.device), seq_len=item["hidden"].shape[2])
        return InstanceTokens(cond.cpu(), uncond.cpu(), boxes, tuple(d.description for d in item["layout"].active()))

    def render(self, adapter, model_patcher, vae, step: int, steps: int, cfg: float, seed: int, sampler: str,
               scheduler: str) -> list[tuple[str, np.ndarray]]:
        """Generate every preview layout at ``step``; returns ``(path, picture [H, W, 3] in 0..1)`` per layout."""
        import comfy.sample

        os.makedirs(self.out_dir, exist_ok=True)
        out = []
        was_training = adapter.training
        adapter.eval()
        try:
            with torch.no_grad():
                for item in self.items:
                    layout = item["layout"]
                    tokens = self._tokens(adapter, item)
                    model = self.ifa_nodes.ApplyIFAdapter().apply(model_patcher, adapter, tokens, layout)[0]
                    w, h = max(8, layout.width // 8 * 8), max(8, layout.height // 8 * 8)
                    extra = {"width": w, "height": h, "target_width": w, "target_height": h, "crop_w": 0,
                             "crop_h": 0}
                    positive = [[item["prompt"][None], dict(extra, pooled_output=item["pooled"][None])]]
                    negative = [[torch.zeros_like(item["prompt"][None]),
                                 dict(extra, pooled_output=torch.zeros_like(item["pooled"][None]))]]
                    latent = torch.zeros(1, 4, h // 8, w // 8)
                    noise = comfy.sample.prepare_noise(latent, seed)
                    samples = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative,
                                                  latent, denoise=1.0, seed=seed)
                    image = vae.decode(samples)[0].float().clamp(0, 1).cpu().numpy()
                    picture = side_by_side(image, render_layout(layout.scaled(w, h)))
                    path = os.path.join(self.out_dir, f"step-{step:08d}-{item['name']}.png")
                    Image.fromarray((picture * 255).round().astype(np.uint8)).save(path)
                    out.append((path, picture))
        finally:
            adapter.train(was_training)
        return out


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two ``[H, W, 3]`` pictures next to each other on a dark background (heights may differ)."""
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + gap + right.shape[1], 3), 0.1, dtype=np.float32)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap:] = right
    return canvas
