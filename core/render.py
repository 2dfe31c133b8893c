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


PREVIEW_MAX_SIDE = 2048  # a preview is for looking at: larger canvases are drawn scaled down to this longer side
LEGEND_LINES = 2  # lines of legend text per instance (and for the prompt); longer texts are elided with "…"
LEGEND_MANY = 16  # with more instances than this, one line each


def preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(w, h) a preview of a width x height canvas is drawn at: the canvas, scaled down to ``max_side`` if larger."""
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def render_layout(layout: Layout, underlay: np.ndarray | None = None, opacity: float = 0.45,
                  legend: bool = True, overlays: dict[int, Overlay] | None = None) -> np.ndarray:
    """Draw ``layout`` at its canvas size (scaled down to PREVIEW_MAX_SIDE pixels on the longer side if larger).

    Args:
        layout: the layout to draw (disabled instances are skipped; tags and legend number instances from 1 by
            their place in ``layout.instances``, as the editor does).
        underlay: optional float image [H, W, 3] in 0..1 (resized to the canvas) drawn below the regions.
        opacity: fill opacity of the regions.
        legend: append a legend strip (number, colour, description) below the canvas.
        overlays: optional per-instance extra marks (index into ``layout.active()``), e.g. what a back-end's input
            preparation produced (resampled scribbles, mask polygons, points), in canvas pixels.

    Returns:
        float32 array [H', W, 3] in 0..1 (H' > H when the legend is drawn).

    Work grows with what is drawn: each instance is filled over its own crop (core/raster.py).
    """
    w, h = preview_size(int(layout.width), int(layout.height))
    if (w, h) != (layout.width, layout.height):
        sx, sy = w / layout.width, h / layout.height
        overlays = {i: [_scaled_mark(m, sx, sy) for m in marks] for i, marks in (overlays or {}).items()}
        layout = layout.scaled(w, h)
    if underlay is not None:
        img = Image.fromarray((np.clip(underlay, 0, 1) * 255).astype(np.uint8)).convert("RGB").resize((w, h))
    else:
        checker = ((np.arange(h)[:, None] // 32 + np.arange(w)[None, :] // 32) % 2).astype(np.float32)
        grey = ((0.16 + 0.04 * checker) * 255).astype(np.uint8)
        img = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    active = layout.active()
    numbers = layout.active_numbers()
    cells = layout.instance_cells(h, w) if active else []
    order = sorted(range(len(active)), key=lambda i: (active[i].z, i))
    alpha = int(round(min(max(opacity, 0.0), 1.0) * 255))
    for i in order:  # later (nearer) instances blend over earlier ones, each over its own crop only
        r0, c0, m = cells[i]
        if m.size and alpha:
            mask = Image.fromarray(m.astype(np.uint8) * np.uint8(alpha))
            img.paste(hex_to_rgb(active[i].color or "#ff0000"), (c0, r0, c0 + m.shape[1], r0 + m.shape[0]), mask)
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
            elif r.kind == "scribble" and r.points:  # the path (the fill shows the stroke's full width)
                draw.line([tuple(p) for p in r.points], fill=col, width=min(max(lw, int(r.width)), 4 * lw),
                          joint="curve")
            elif r.kind == "point" and r.points:
                x, y = r.points[0]
                rad = min(max(4, int(r.width)), 4 * lw)  # a marker (the fill shows the disc)
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=col, outline=(255, 255, 255))
        for mark in (overlays or {}).get(i, []):
            _draw_overlay(draw, mark, col, lw)
        # the tag sits at the instance's top-left on the canvas (masks are stored at their own resolution)
        x0, y0, _, _ = inst.bbox((w, h))
        tag = f"{numbers[i]}" + (f" {_elide(inst.label, 40)}" if inst.label else "")
        tb = draw.textbbox((0, 0), tag, font=font)
        tx, ty = max(0, min(w - (tb[2] - tb[0]) - 6, x0 + lw)), max(0, min(h - (tb[3] - tb[1]) - 6, y0 + lw))
        draw.rectangle([tx, ty, tx + tb[2] - tb[0] + 6, ty + tb[3] - tb[1] + 6], fill=col)
        draw.text((tx + 3, ty + 3 - tb[1]), tag, fill=(255, 255, 255), font=font)
    out = np.asarray(img, dtype=np.float32) / 255.0
    if legend and active:
        out = np.concatenate([out, _legend(layout, active, numbers, w)], axis=0)
    return out


def _scaled_mark(mark: dict, sx: float, sy: float) -> dict:
    out = dict(mark)
    if "box" in mark:
        x0, y0, x1, y1 = mark["box"]
        out["box"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
    if "points" in mark:
        out["points"] = [[float(x) * sx, float(y) * sy] for x, y in mark["points"]]
    return out


def _elide(text: str, n: int) -> str:
    """At most ``n`` characters of ``text``: cut with "…" when longer."""
    return text if len(text) <= n else text[: n - 1] + "…"


def drawable(text: str) -> str:
    """``text`` as the legend draws it: every whitespace character other than " " (tabs, newlines, the separators
    \\x1c..\\x1f and \\x85, which Pillow's text layout refuses) as " "."""
    return "".join(" " if c.isspace() else c for c in text) if not text.isprintable() else text


def wrap_lines(text: str, chars: int, max_lines: int = LEGEND_LINES) -> list[str]:
    """``text`` wrapped at ``chars`` characters a line, at most ``max_lines`` lines, the last ending in "…" if the
    text goes on. Linear in the text: only its first max_lines * chars characters are ever wrapped."""
    limit = max_lines * chars
    lines = textwrap.wrap(text[: limit + 1], chars, break_on_hyphens=False) or [""]
    if len(lines) > max_lines or (len(text) > limit + 1 and text[limit + 1 :].strip()):
        lines = lines[:max_lines]
        last = lines[-1]
        lines[-1] = (last[: chars - 1] if len(last) >= chars else last) + "…"
    return lines


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


def legend_rows(layout: Layout, active, numbers: list[int], chars: int) -> list[tuple[int | None, str]]:
    """The legend's text lines: (index into ``active`` for an instance's first line, -1 for its next lines, None
    for the prompt's, text). Instances are numbered from 1 by their place in the layout (``numbers``); each text
    is at most LEGEND_LINES lines of ``chars`` characters (one line each past LEGEND_MANY instances)."""
    rows: list[tuple[int | None, str]] = []
    if layout.prompt:
        for part in wrap_lines("prompt: " + layout.prompt, chars):
            rows.append((None, part))
    lines = LEGEND_LINES if len(active) <= LEGEND_MANY else 1
    for i, inst in enumerate(active):
        text = f"{numbers[i]}. " + (f"[{_elide(inst.label, 40)}] " if inst.label else "") + (inst.description or "")
        for k, part in enumerate(wrap_lines(text, chars, lines)):
            rows.append((i if k == 0 else -1, part))
    return rows


def _legend_font(width: int):
    font = _font(max(11, min(18, width // 48)))
    line_h = font.size + 6 if hasattr(font, "size") else 18
    return font, line_h, max(20, int(width / (line_h * 0.55)) - 6)


def legend_height(layout: Layout, active, numbers: list[int], width: int) -> int:
    """Height in pixels of the legend strip :func:`render_layout` appends for these instances (without drawing it)."""
    _, line_h, chars = _legend_font(width)
    return line_h * len(legend_rows(layout, active, numbers, chars)) + 8


def _legend(layout: Layout, active, numbers: list[int], width: int) -> np.ndarray:
    font, line_h, chars = _legend_font(width)
    rows = legend_rows(layout, active, numbers, chars)
    img = Image.new("RGB", (width, line_h * len(rows) + 8), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    for r, (idx, text) in enumerate(rows):
        y = 4 + r * line_h
        if idx is not None and idx >= 0:
            draw.rectangle([6, y + 2, 6 + line_h - 8, y + line_h - 6], fill=hex_to_rgb(active[idx].color or "#f00"))
        draw.text((line_h + 4, y), drawable(text), fill=(235, 235, 235), font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def to_comfy_image(arr: np.ndarray) -> torch.Tensor:
    """[H, W, 3] float array -> ComfyUI IMAGE tensor [1, H, W, 3]."""
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
