"""A synthetic layout dataset generated in the tests: coloured shapes on a plain background, each with its box and
a description, in the trainer's folder format (image + layout JSON), plus deliberately broken samples."""
from __future__ import annotations

import json
import os
import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
           "purple": (150, 50, 180)}
SHAPES = ("square", "circle")


def make_dataset(folder: str, n: int, size: tuple[int, int] = (64, 64), seed: int = 0,
                 broken: bool = True, caption: str | None = None, colour_words: bool = True) -> list[str]:
    """Write ``n`` samples (``shape_000.png`` + ``shape_000.json``); with ``broken`` also one corrupt image, one
    invalid layout and one image without a layout. Returns the names of the broken samples.

    ``caption`` replaces every generated caption (which names the shapes and colours) by one fixed text, so that
    the colours are given only in the instance descriptions; ``colour_words=False`` describes every instance as
    "a shape" (the same images and boxes: the descriptions then carry no information)."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    w, h = size
    for i in range(n):
        img = Image.new("RGB", size, (128, 128, 128))
        draw = ImageDraw.Draw(img)
        instances, words = [], []
        for _ in range(rng.randint(1, 3)):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            bw, bh = rng.randint(w // 5, w // 2), rng.randint(h // 5, h // 2)
            x0, y0 = rng.randint(0, w - bw), rng.randint(0, h - bh)
            box = [x0, y0, x0 + bw, y0 + bh]
            (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
            desc = f"a {colour} {shape}" if colour_words else "a shape"
            instances.append({"description": desc, "regions": [{"kind": "box", "box": box}]})
            words.append(desc)
        img.save(os.path.join(folder, f"shape_{i:03d}.png"))
        layout = {"format": "instance-layout", "version": 1, "width": w, "height": h,
                  "prompt": caption or " and ".join(words) + " on a grey background", "instances": instances}
        with open(os.path.join(folder, f"shape_{i:03d}.json"), "w") as f:
            json.dump(layout, f)
    if not broken:
        return []
    with open(os.path.join(folder, "broken_image.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nthis is not a png")
    with open(os.path.join(folder, "broken_image.json"), "w") as f:
        json.dump({"format": "instance-layout", "version": 1, "width": w, "height": h, "prompt": "x",
                   "instances": []}, f)
    Image.new("RGB", size, (10, 10, 10)).save(os.path.join(folder, "broken_layout.png"))
    with open(os.path.join(folder, "broken_layout.json"), "w") as f:
        json.dump({"format": "instance-layout", "version": 1, "width": w, "height": h, "prompt": "x",
                   "instances": [{"description": "a box", "regions": [{"kind": "box", "box": [0, 0, 999, 10]}]}]}, f)
    Image.new("RGB", size, (10, 10, 10)).save(os.path.join(folder, "no_layout.png"))
    return ["broken_image", "broken_layout", "no_layout"]
