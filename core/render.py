"""Render an instance layout as a picture: filled regions, outlines, numbered labels and a legend.

Pure numpy + Pillow (for text). Used by the Layout Preview node and the README's main-job command.
"""
from __future__ import annotations

import textwrap

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .layout import Layout

Overlay = list[dict]  # optional extra marks drawn on top: {"kind": "points"|"polyline"|"polygon"|"box", ...}


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_layout(layout: Layout, underlay: np.ndarray | None = None, opacity: float = 0.45,
                  legend: bool = True, overlays: dict[int, Overlay] | None = None) -> np.ndarray:
    """Draw ``layout`` at its canvas size.

    Args:
        layout: the layout to draw (disabled instances are skipped).
        underlay: optional float image [H, W, 3] in 0..1 (resized to the canvas) drawn below the regions.
        opacity: fill opacity of the regions.
        legend: append a legend strip (number, colour, description) below the canvas.
        overlays: optional per-instance extra marks (index into ``layout.active()``), e.g. what a back-end's input
            preparation produced (resampled scribbles, mask polygons, points).

    Returns:
        float32 array [H', W, 3] in 0..1 (H' > H when the legend is drawn).
    """
    w, h = int(layout.width), int(layout.height)
    if underlay is not None:
        base = Image.fromarray((np.clip(underlay, 0, 1) * 255).astype(np.uint8)).convert("RGB").resize((w, h))
        canvas = np.asarray(base, dtype=np.float32) / 255.0
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        checker = (((yy // 32) + (xx // 32)) % 2).astype(np.float32)
        canvas = np.repeat((0.16 + 0.04 * checker)[..., None], 3, axis=2)
    active = layout.active()
    masks = layout.rasterize(h, w).numpy() if active else np.zeros((0, h, w), np.float32)
    order = sorted(range(len(active)), key=lambda i: (active[i].z, i))
    for i in order:
        m = masks[i][..., None]
        col = np.array(hex_to_rgb(active[i].color or "#ff0000"), np.float32) / 255.0
        canvas = canvas * (1 - opacity * m) + col * (opacity * m)
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    lw = max(2, round(min(w, h) / 256))
    font = _font(max(12, round(min(w, h) / 28)))
    for i in order:
        inst = active[i]
        col = hex_to_rgb(inst.color or "#ff0000")
        for r in inst.regions:
            if r.kind == "box":
                draw.rectangle(list(r.box), outline=col, width=lw)
            elif r.kind == "polygon" and r.points:
                draw.polygon([tuple(p) for p in r.points], outline=col, width=lw)
            elif r.kind == "scribble" and r.points:
                draw.line([tuple(p) for p in r.points], fill=col, width=max(lw, int(r.width)), joint="curve")
            elif r.kind == "point" and r.points:
                x, y = r.points[0]
                rad = max(4, int(r.width))
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=col, outline=(255, 255, 255))
        for mark in (overlays or {}).get(i, []):
            _draw_overlay(draw, mark, col, lw)
        x0, y0, _, _ = inst.bbox()
        tag = f"{i + 1}" + (f" {inst.label}" if inst.label else "")
        tb = draw.textbbox((0, 0), tag, font=font)
        tx, ty = max(0, min(w - (tb[2] - tb[0]) - 6, x0 + lw)), max(0, min(h - (tb[3] - tb[1]) - 6, y0 + lw))
        draw.rectangle([tx, ty, tx + tb[2] - tb[0] + 6, ty + tb[3] - tb[1] + 6], fill=col)
        draw.text((tx + 3, ty + 3 - tb[1]), tag, fill=(255, 255, 255), font=font)
    out = np.asarray(img, dtype=np.float32) / 255.0
    if legend and active:
        out = np.concatenate([out, _legend(layout, active, w)], axis=0)
    return out


def _draw_overlay(draw: ImageDraw.ImageDraw, mark: dict, col, lw: int) -> None:
    pts = [tuple(map(float, p)) for p in mark.get("points", [])]
    kind = mark["kind"]
    if kind == "box":
        draw.rectangle(list(mark["box"]), outline=(255, 255, 255), width=1)
    elif kind == "polyline" and len(pts) > 1:
        draw.line(pts, fill=(255, 255, 255), width=1)
    elif kind == "polygon" and len(pts) > 2:
        draw.polygon(pts, outline=(255, 255, 255))
    if kind in ("points", "polyline", "polygon"):
        for x, y in pts:
            draw.ellipse([x - lw, y - lw, x + lw, y + lw], fill=(255, 255, 255), outline=col)


def _legend(layout: Layout, active, width: int) -> np.ndarray:
    font = _font(max(11, min(18, width // 48)))
    line_h = font.size + 6 if hasattr(font, "size") else 18
    chars = max(20, int(width / (line_h * 0.55)) - 6)
    rows: list[tuple[int | None, str]] = []
    if layout.prompt:
        for part in textwrap.wrap("prompt: " + layout.prompt, chars) or [""]:
            rows.append((None, part))
    for i, inst in enumerate(active):
        text = f"{i + 1}. " + (f"[{inst.label}] " if inst.label else "") + (inst.description or "")
        for k, part in enumerate(textwrap.wrap(text, chars) or [""]):
            rows.append((i if k == 0 else -1, part))
    img = Image.new("RGB", (width, line_h * len(rows) + 8), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    for r, (idx, text) in enumerate(rows):
        y = 4 + r * line_h
        if idx is not None and idx >= 0:
            draw.rectangle([6, y + 2, 6 + line_h - 8, y + line_h - 6], fill=hex_to_rgb(active[idx].color or "#f00"))
        draw.text((line_h + 4, y), text, fill=(235, 235, 235), font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def to_comfy_image(arr: np.ndarray) -> torch.Tensor:
    """[H, W, 3] float array -> ComfyUI IMAGE tensor [1, H, W, 3]."""
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
