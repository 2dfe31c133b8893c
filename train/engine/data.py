"""The training data (engine): a folder of images with one layout JSON per image, bucketed and cropped as SDXL
expects.

Folder format (docs/training.md): ``<name>.png|.jpg|.jpeg|.webp`` next to ``<name>.json``, in any sub-folder. The
JSON is a layout in this pack's format (``core/layout/``: global prompt + instances with boxes and
descriptions); the official IFAdapter sample format and InstanceDiffusion's format are read too. A layout drawn on
another canvas size than the image is scaled to the image.

Preparation of one sample (:func:`prepare_sample`), done once by the cache step:

1. choose the aspect-ratio bucket closest to the image (SDXL's training buckets scaled to ``resolution``);
2. resize so that the image covers the bucket, crop to the bucket (random position seeded per sample, or centred);
3. move every box with the pixels (scale, shift, clip); drop boxes under ``min_box_area`` of the image;
4. an image left without instances gets one instance from its caption with the whole image as its box (as the
   official code does);
5. record SDXL's micro-conditioning: original size and crop top-left.

Unreadable images and invalid layouts raise :class:`BadSample` naming the file; the cache step reports and skips
them.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.layout import Layout, LayoutError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# SDXL's aspect-ratio buckets at 1024² (width, height): the resolutions SDXL was trained on.
SDXL_BUCKETS_1024 = (
    (1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344), (1536, 640),
    (640, 1536),
)  # fmt: skip


class BadSample(ValueError):
    """A sample that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SampleFiles:
    """One dataset entry: its name (path relative to the folder, no extension), image and layout paths."""

    name: str
    image: str
    layout: str


@dataclass
class PreparedSample:
    """A sample ready to encode.

    Attributes:
        name: the dataset entry's name.
        pixels: ``[H, W, 3]`` float32 in 0..1 at the bucket size (ComfyUI's IMAGE layout, one image).
        prompt: the global caption.
        descriptions: one per instance (all instances kept here; the per-step subset happens in training).
        boxes: ``[n, 4]`` float32 normalised xyxy in the cropped image.
        original_size: ``(height, width)`` of the source image.
        crop: ``(top, left)`` of the crop in the resized image.
        bucket: ``(width, height)``.
        layout: the layout on the source image's canvas (``original_size``), for recipes that read more than boxes
            (masks, points, scribbles): map a source pixel ``(x, y)`` with :meth:`to_crop`.
        kept: for each kept instance, its index in ``layout.active()`` (empty for the caption fallback instance).
        resize: ``(sx, sy)`` scale from the source image to the resized one.
    """

    name: str
    pixels: torch.Tensor
    prompt: str
    descriptions: list[str]
    boxes: torch.Tensor
    original_size: tuple[int, int]
    crop: tuple[int, int]
    bucket: tuple[int, int]
    layout: Layout | None = None
    kept: tuple[int, ...] = ()
    resize: tuple[float, float] = (1.0, 1.0)

    def to_crop(self, x: float, y: float) -> tuple[float, float]:
        """A source-image pixel position in the cropped image's pixels (may fall outside it)."""
        return x * self.resize[0] - self.crop[1], y * self.resize[1] - self.crop[0]


def list_samples(folder: str) -> tuple[list[SampleFiles], list[tuple[str, str]]]:
    """Every image with a layout JSON under ``folder`` (sorted by name), and ``(name, reason)`` for images without
    one."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    found, missing = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            name = os.path.relpath(os.path.join(root, stem), folder).replace(os.sep, "/")
            layout = os.path.join(root, stem + ".json")
            if os.path.isfile(layout):
                found.append(SampleFiles(name, os.path.join(root, f), layout))
            else:
                missing.append((name, f"no layout file {stem}.json next to {f}"))
    found.sort(key=lambda s: s.name)
    return found, missing


def buckets(resolution: int, step: int, explicit: list | None = None) -> list[tuple[int, int]]:
    """The (width, height) buckets: ``explicit`` if given, else SDXL's list scaled to ``resolution``² rounded to
    multiples of ``step`` (duplicates removed, order kept)."""
    if explicit:
        return [(int(w), int(h)) for w, h in explicit]
    out: list[tuple[int, int]] = []
    scale = resolution / 1024
    for w, h in SDXL_BUCKETS_1024:
        b = (max(step, round(w * scale / step) * step), max(step, round(h * scale / step) * step))
        if b not in out:
            out.append(b)
    return out


def nearest_bucket(width: int, height: int, options: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space) to ``width / height``."""
    r = math.log(width / height)
    return min(options, key=lambda b: (abs(math.log(b[0] / b[1]) - r), -b[0] * b[1]))


def _read_image(files: SampleFiles) -> Image.Image:
    try:
        with Image.open(files.image) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises many types for bad files
        raise BadSample(f"{files.name}: unreadable image {os.path.basename(files.image)} ({type(e).__name__}: "
                        f"{e})") from None


def _read_layout(files: SampleFiles) -> Layout:
    try:
        with open(files.layout, encoding="utf-8") as f:
            text = f.read()
        return Layout.from_json(text)
    except (OSError, UnicodeDecodeError) as e:
        raise BadSample(f"{files.name}: unreadable layout {os.path.basename(files.layout)} ({e})") from None
    except LayoutError as e:
        raise BadSample(f"{files.name}: invalid layout {os.path.basename(files.layout)}: {e}") from None


def prepare_sample(files: SampleFiles, bucket_options: list[tuple[int, int]], min_box_area: float,
                   random_crop: bool, seed: int) -> PreparedSample:
    """Read, bucket, resize, crop and re-box one sample (see the module docstring). ``seed`` fixes the crop."""
    image = _read_image(files)
    layout = _read_layout(files)
    w0, h0 = image.size
    if (layout.width, layout.height) != (w0, h0):
        layout = layout.scaled(w0, h0)
    bw, bh = nearest_bucket(w0, h0, bucket_options)
    scale = max(bw / w0, bh / h0)
    rw, rh = max(bw, round(w0 * scale)), max(bh, round(h0 * scale))
    resized = image.resize((rw, rh), Image.Resampling.LANCZOS) if (rw, rh) != (w0, h0) else image
    rng = random.Random(seed)
    left = rng.randint(0, rw - bw) if random_crop else (rw - bw) // 2
    top = rng.randint(0, rh - bh) if random_crop else (rh - bh) // 2
    cropped = resized.crop((left, top, left + bw, top + bh))
    pixels = torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255.0)

    descriptions, boxes, kept = [], [], []
    sx, sy = rw / w0, rh / h0
    for k, inst in enumerate(layout.active()):
        desc = inst.description.strip()
        if not desc:
            continue
        x0, y0, x1, y1 = inst.bbox((w0, h0))
        x0, x1 = min(max(x0 * sx - left, 0), bw), min(max(x1 * sx - left, 0), bw)
        y0, y1 = min(max(y0 * sy - top, 0), bh), min(max(y1 * sy - top, 0), bh)
        if (x1 - x0) * (y1 - y0) < min_box_area * bw * bh or x1 <= x0 or y1 <= y0:
            continue
        descriptions.append(desc)
        boxes.append((x0 / bw, y0 / bh, x1 / bw, y1 / bh))
        kept.append(k)
    if not descriptions:  # the official code's fallback: the caption as one instance over the whole image
        descriptions, boxes = [layout.prompt.strip()], [(0.0, 0.0, 1.0, 1.0)]
    return PreparedSample(
        name=files.name, pixels=pixels, prompt=layout.prompt.strip(), descriptions=descriptions,
        boxes=torch.tensor(boxes, dtype=torch.float32), original_size=(h0, w0), crop=(top, left), bucket=(bw, bh),
        layout=layout, kept=tuple(kept), resize=(sx, sy))


def sample_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from the run seed and integer parts (step, sample index, ...), independent of how the
    work is split across processes."""
    h = seed & 0xFFFFFFFFFFFF
    for p in parts:
        h = (h * 0x9E3779B97F4A7C15 + int(p) + 0x632BE59BD9B4E019) & 0x7FFFFFFFFFFFFFFF
        h ^= h >> 29
    return h
