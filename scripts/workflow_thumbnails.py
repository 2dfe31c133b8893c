"""Template-browser thumbnails of the shipped workflows, drawn from each workflow's own instance layout.

ComfyUI lists every ``workflows/<name>.json`` of an installed pack in its template browser under the title
``<name>`` and shows ``workflows/<name>.jpg`` as its thumbnail (docs/workflows.md has the details per version).
:func:`thumbnail` draws that picture honestly: the layout stored in the workflow's Instance Layout node, drawn by
the same renderer as the Layout Preview node (``core.render``: numbered regions in the instances' colours), above the
workflow's global prompt and a band naming the method and model the workflow runs. It is the layout the
workflow generates from, not a generated image.

``scripts/make_workflows.py`` calls :func:`write_thumbnail` for every workflow it writes, so the thumbnails never
drift from the layouts; ``tests/integration/test_templates.py`` checks that.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.layout import FORMAT, Layout  # noqa: E402
from core.render import _font, render_layout  # noqa: E402

SIZE = 512  # square: the template browser shows thumbnails in square cards
PROMPT_H = 44  # two lines of the global prompt below the layout
BAND_H = 40  # the method band at the bottom (the card's own badges cover the top-left corner)
BACKGROUND = (24, 24, 24)
BAND = (44, 44, 52)
JPEG_QUALITY = 85


def workflow_layout(workflow: dict) -> Layout:
    """The layout of the workflow's first Instance Layout node (the JSON in its ``layout`` widget)."""
    for node in sorted(workflow.get("nodes", []), key=lambda n: n.get("id", 0)):
        if node.get("type") != "IFAInstanceLayout":
            continue
        for value in node.get("widgets_values") or []:
            if not isinstance(value, str) or not value.lstrip().startswith("{"):
                continue
            try:
                data = json.loads(value)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("format") == FORMAT:
                return Layout.from_json(data).validate()
    raise ValueError("the workflow has no Instance Layout node with a layout to draw its thumbnail from")


def workflow_badge(workflow: dict) -> str:
    """What the workflow runs, from the nodes it contains, e.g. ``IFAdapter · SDXL · LoRA · ControlNet``."""
    types = {n.get("type") for n in workflow.get("nodes", [])}
    if "IFAApplyIFAdapter" in types:
        parts = ["IFAdapter", "SDXL"]
    elif "IFAApplyInstanceDiffusion" in types:
        parts = ["InstanceDiffusion", "SD1.5"]
        if "IFAInstanceDiffusionSampler" in types:
            parts.append("MIS sampler")
    else:
        parts = ["Instance layout", "preview"]
    if types & {"LoraLoader", "LoraLoaderModelOnly"}:
        parts.append("LoRA")
    if any(t and t.startswith("ControlNet") for t in types):
        parts.append("ControlNet")
    if "IFAEvaluateLayout" in types:
        parts.append("Evaluate Layout")
    return " · ".join(parts)


def thumbnail(workflow: dict) -> Image.Image:
    """The ``SIZE`` x ``SIZE`` RGB thumbnail: badge band, the layout as Layout Preview draws it, the prompt."""
    layout = workflow_layout(workflow)
    room_w, room_h = SIZE - 16, SIZE - PROMPT_H - BAND_H - 12
    scale = min(room_w / layout.width, room_h / layout.height)
    w, h = max(8, round(layout.width * scale)), max(8, round(layout.height * scale))
    # Rendered at thumbnail size (not rendered large and shrunk) so the numbered labels stay legible.
    drawn = render_layout(layout.scaled(w, h), opacity=0.55, legend=False)
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    img.paste(Image.fromarray((np.clip(drawn, 0, 1) * 255).round().astype(np.uint8)),
              ((SIZE - w) // 2, 8 + (room_h - h) // 2))
    draw = ImageDraw.Draw(img)
    if layout.prompt:
        font = _font(14)
        for k, line in enumerate(textwrap.wrap(layout.prompt, 62)[:2]):
            draw.text((12, SIZE - BAND_H - PROMPT_H + 4 + 19 * k), line, fill=(200, 200, 200), font=font)
    draw.rectangle([0, SIZE - BAND_H, SIZE, SIZE], fill=BAND)
    badge, size = workflow_badge(workflow), 20
    while size > 12 and draw.textlength(badge, font=_font(size)) > SIZE - 24:
        size -= 1
    draw.text((12, SIZE - BAND_H + (BAND_H - size) // 2 - 2), badge, fill=(240, 240, 240), font=_font(size))
    return img


def write_thumbnail(workflow: dict, path: Path) -> Path:
    """Write the thumbnail of ``workflow`` as a JPEG at ``path`` (the workflow's name with ``.jpg``)."""
    thumbnail(workflow).save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return path
