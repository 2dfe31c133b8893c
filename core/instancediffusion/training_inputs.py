"""Training-time grounding inputs of InstanceDiffusion: one dataset sample -> the position net's tensors.

Re-implements the rules of the official dataset code (``dataset/decode_item.py``, ``dataset/base_dataset.py``,
``configs/train_sd15.yaml``) with explicit random generators, so that every draw is a function of the generator the
caller seeds (e.g. from (run seed, step, sample)). In the official order:

1. **decode** (source-image frame, every instance with a mask, in layout order): the scribble is the given one
   (resampled to 20 points by the inference rule, see below) or 20 random mask pixels (``rng.choice``, without
   replacement when the mask has at least 20 pixels), sorted by distance to (0, 0), as (x, y) pixels; the polygon is
   the official 256-point sample (128 contour points of the zero-padded mask + 128 interior points, in the padded
   frame), all zeros when the mask has no contour. An instance without a mask has neither.
2. **geometry**: the official centre crop to ``size`` x ``size`` (:class:`CropGeometry`: halve while the short side
   is at least 2·size, scale the short side to ``size``, crop the centre), then a random horizontal flip
   (probability 0.5; one uniform draw).
3. **per instance** (layout order): the box is moved with the pixels (``x·scale − crop``), an instance whose box
   leaves the crop or covers less than ``min_box_size`` (1 %) of the crop is dropped; boxes, scribbles and
   polygons are clamped to ``[0, size]``, flipped (``x -> size − x``) and divided by ``size``; the point is the
   box centre (the official data has no points; a given point is used when ``use_given_points``); the text is
   the description or the label: with both, one uniform draw, description when ``< random_blip`` (the official
   ``random_blip``: BLIP caption vs category name); the mask becomes ``segs`` by nearest-neighbour resize to the
   resized image, crop and flip.
4. the ``max_objs`` (30) largest boxes by area are kept (stable: ties keep layout order).
5. **caption**: one uniform draw; with probability ``prob_use_caption`` (0.5) the caption (the label counts of the
   kept instances, ``"2 dog, 1 cat"``, then ``". "`` and the prompt, as the official detection data with
   ``count_dup``; or the prompt alone), else ``""``.

Training-time modality dropout (:func:`draw_modality_drop`, official ``UniFusion.reset_dropout_train``) and the
10 % all-null grounding input for classifier-free guidance (:func:`draw_null_grounding`) are drawn by the caller
per sample (the official draws them once per GPU batch; see docs/official-differences.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .inputs import N_POLYGON, N_SCRIBBLE, mask_to_polygon_points, reorder_scribble, scribble_from_mask
from .position_net import MAX_OBJS

CAPTION_STYLES = ("counted labels + prompt", "prompt")


@dataclass
class SourceInstance:
    """One annotated instance in source-image pixels (origin top-left).

    box: (x0, y0, x1, y1); mask: bool [H, W] at the source image's resolution, or None; scribble: given (x, y)
    points or None; point: given (x, y) or None; description: the instance caption; label: the short category
    name ("" if none).
    """

    box: tuple[float, float, float, float]
    mask: np.ndarray | None = None
    scribble: Sequence[tuple[float, float]] | None = None
    point: tuple[float, float] | None = None
    description: str = ""
    label: str = ""


@dataclass(frozen=True)
class CropGeometry:
    """The official ``center_crop_arr``: ``resized`` = the (w, h) the image is resized to (after halvings while the
    short side is >= 2·size, the short side scaled to ``size``, ``round`` per side); ``crop`` = (x, y) of the
    centred size x size window in it; ``scale`` = size / the source's short side (what coordinates are multiplied
    by, as the official ``performed_scale``)."""

    source: tuple[int, int]
    size: int
    resized: tuple[int, int]
    crop: tuple[int, int]
    scale: float

    @classmethod
    def centre(cls, width: int, height: int, size: int) -> CropGeometry:
        if width <= 0 or height <= 0 or size <= 0:
            raise ValueError(f"centre crop: image {width} x {height} and size {size} must be positive")
        w, h = int(width), int(height)
        while min(w, h) >= 2 * size:  # the BOX halvings (PIL: (w // 2, h // 2))
            w, h = w // 2, h // 2
        s = size / min(w, h)
        rw, rh = round(w * s), round(h * s)
        return cls((int(width), int(height)), size, (rw, rh), ((rw - size) // 2, (rh - size) // 2),
                   size / min(width, height))

    def xy(self, x: float, y: float) -> tuple[float, float]:
        """Source pixels -> crop pixels (not clamped)."""
        return x * self.scale - self.crop[0], y * self.scale - self.crop[1]


@dataclass(frozen=True)
class TrainingInputSettings:
    """The official training values (``train_sd15.yaml``, the README's training command)."""

    size: int = 512
    max_objs: int = MAX_OBJS
    min_box_size: float = 0.01
    random_flip: bool = True
    random_blip: float = 0.5
    prob_use_caption: float = 0.5
    caption_style: str = CAPTION_STYLES[0]
    use_given_points: bool = True

    def __post_init__(self) -> None:
        if self.caption_style not in CAPTION_STYLES:
            raise ValueError(f"caption_style {self.caption_style!r}: choose one of {', '.join(CAPTION_STYLES)}")
        for name in ("random_blip", "prob_use_caption", "min_box_size"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in 0..1, got {v}")
        if not 1 <= self.max_objs <= MAX_OBJS:
            raise ValueError(f"max_objs must be in 1..{MAX_OBJS} (the mask encoder's channels), got {self.max_objs}")


@dataclass
class DecodedInstance:
    """:class:`SourceInstance` after the official ``decode_item``: scribble [40] and polygon [512] flat (x, y)
    source pixels (polygon in the zero-padded frame), or None when the instance has neither."""

    source: SourceInstance
    scribble: list[float] | None = None
    polygon: list[float] | None = None


@dataclass
class TrainingSample:
    """What one step trains on for one sample: the position-net tensors of :func:`.inputs.prepare_inputs` (one
    sample, no batch axis), which instance fills each slot and with which text, the caption and the flip.

    boxes [N,4], masks [N], points [N,2], scribbles [N,40], polygons [N,512], segs [N,size,size] (N = max_objs);
    slots: layout index of the instance in each filled slot (largest box first); use_label: per filled slot, True
    when the label's text embedding is used instead of the description's.
    """

    boxes: torch.Tensor
    masks: torch.Tensor
    points: torch.Tensor
    scribbles: torch.Tensor
    polygons: torch.Tensor
    segs: torch.Tensor
    slots: list[int] = field(default_factory=list)
    use_label: list[bool] = field(default_factory=list)
    caption: str = ""
    flip: bool = False


def _sorted_by_norm(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return sorted(points, key=lambda p: float(np.linalg.norm(np.array(p))))


def decode_instances(instances: Sequence[SourceInstance], rng: np.random.Generator) -> list[DecodedInstance]:
    """Step 1 of the module docstring (official ``decode_item``), in layout order; consumes ``rng`` for the random
    scribble pixels and, for masks of fewer than 128 pixels, the interior polygon points."""
    out = []
    for i, inst in enumerate(instances):
        d = DecodedInstance(inst)
        if inst.scribble is not None and len(inst.scribble) > 0:
            d.scribble = [v for p in reorder_scribble(inst.scribble, N_SCRIBBLE) for v in p]
        if inst.mask is not None:
            mask = np.asarray(inst.mask).astype(bool)
            if mask.ndim != 2:
                raise ValueError(f"instance {i + 1}: mask must be 2-D [h, w], got shape {mask.shape}")
            if d.scribble is None:
                pts = scribble_from_mask(mask, N_SCRIBBLE, rng)
                d.scribble = [0.0] * (2 * N_SCRIBBLE) if pts is None else [v for p in pts for v in p]
            poly = mask_to_polygon_points(mask, N_POLYGON, rng)
            d.polygon = [0.0] * (2 * N_POLYGON) if poly is None else [v for p in poly for v in p]
        out.append(d)
    return out


def _valid_box(box: tuple[float, float, float, float], g: CropGeometry, min_box_size: float):
    """The official ``recalculate_box_and_verify_if_valid`` before the flip: crop pixels, clamped, or None."""
    x0, y0 = g.xy(box[0], box[1])
    x1, y1 = g.xy(box[2], box[3])
    s = g.size
    if x0 > s or y0 > s or x1 < 0 or y1 < 0:
        return None
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)
    if (x1 - x0) * (y1 - y0) / (s * s) < min_box_size:
        return None
    return x0, y0, x1, y1


def _move_points(flat: list[float], g: CropGeometry, flip: bool) -> torch.Tensor:
    """Official ``recalculate_scribbles`` then ``/ size``: scale, shift, clamp to [0, size], flip x."""
    s = g.size
    out = []
    for k in range(0, len(flat), 2):
        x, y = g.xy(flat[k], flat[k + 1])
        x, y = min(max(x, 0), s), min(max(y, 0), s)
        if flip:
            x = s - x
        out += [x, y]
    return torch.tensor(out, dtype=torch.float64).float() / s


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel in PIL's nearest-neighbour resize (``ImagingScaleAffine``): the position
    starts at half a step and adds the step ``n_in / n_out`` once per pixel, in double precision, then truncates.
    (Computing ``(i + 0.5) · step`` directly differs from PIL where the running sum rounds across an integer.)"""
    step = n_in / n_out
    pos = np.add.accumulate(np.concatenate(([step * 0.5], np.full(n_out - 1, step))))
    return np.minimum(pos.astype(np.int64), n_in - 1)


def crop_mask(mask: np.ndarray, g: CropGeometry, flip: bool) -> torch.Tensor:
    """A source-frame mask as official ``segs``: nearest resize to ``g.resized``, centre crop, flip -> float32
    [size, size] of 0/1. Reads only size² source pixels."""
    h, w = mask.shape
    rw, rh = g.resized
    cx, cy = g.crop
    rows = nearest_indices(h, rh)[cy:cy + g.size]
    cols = nearest_indices(w, rw)[cx:cx + g.size]
    if flip:
        cols = cols[::-1]
    return torch.from_numpy(np.ascontiguousarray(mask[rows[:, None], cols[None, :]]).astype(np.float32))


def counted_labels(labels: Sequence[str]) -> str:
    """Official ``make_a_sentence_count_nums``: ``"2 dog, 1 cat"`` in first-appearance order."""
    return ", ".join(f"{n} {name}" for name, n in Counter(labels).items())


def compose_caption(prompt: str, labels: Sequence[str], style: str) -> str:
    """The caption used when the caption draw keeps it (step 5 of the module docstring)."""
    if style == "prompt":
        return prompt
    words = counted_labels([lb for lb in labels if lb])
    if not words:
        return prompt
    return f"{words}. {prompt}" if prompt else words


def prepare_training_sample(instances: Sequence[SourceInstance], width: int, height: int, prompt: str,
                            rng: np.random.Generator, settings: TrainingInputSettings | None = None,
                            decoded: Sequence[DecodedInstance] | None = None,
                            geometry: CropGeometry | None = None) -> TrainingSample:
    """One training sample's grounding input (module docstring, steps 1-5), consuming ``rng`` in that order.

    instances: in layout order, source pixels of a ``width`` x ``height`` image. decoded: the result of
    :func:`decode_instances` on the same instances and generator state, if the caller already ran step 1.
    geometry: the crop the image went through, when not the official centre crop (e.g. the trainer's resize).
    """
    st = settings or TrainingInputSettings()
    g = geometry or CropGeometry.centre(width, height, st.size)
    if g.size != st.size:
        raise ValueError(f"crop geometry of size {g.size} for training inputs of size {st.size}")
    dec = list(decoded) if decoded is not None else decode_instances(instances, rng)
    flip = bool(st.random_flip and rng.random() < 0.5)
    s = st.size
    kept = []  # (layout index, box [4] normalised, point [2], use_label, area)
    for i, d in enumerate(dec):
        inst = d.source
        b = _valid_box(inst.box, g, st.min_box_size)
        if b is None:
            continue
        x0, y0, x1, y1 = b
        if flip:
            x0, x1 = s - x1, s - x0
        if st.use_given_points and inst.point is not None:
            point = _move_points(list(inst.point), g, flip)
        else:
            point = torch.tensor([(x0 + x1) / 2.0, (y0 + y1) / 2.0], dtype=torch.float64).float() / s
        has_both = bool(inst.label) and bool(inst.description)
        use_label = (not inst.description) or (has_both and not rng.random() < st.random_blip)
        kept.append((i, torch.tensor([x0, y0, x1, y1], dtype=torch.float64).float() / s, point, use_label,
                     (x1 - x0) * (y1 - y0)))
    order = sorted(range(len(kept)), key=lambda k: -kept[k][4])[: st.max_objs]  # stable: ties keep layout order
    n = st.max_objs
    out = TrainingSample(torch.zeros(n, 4), torch.zeros(n), torch.zeros(n, 2), torch.zeros(n, 2 * N_SCRIBBLE),
                         torch.zeros(n, 2 * N_POLYGON), torch.zeros(n, s, s), flip=flip)
    for slot, k in enumerate(order):
        i, box, point, use_label, _ = kept[k]
        d = dec[i]
        out.boxes[slot], out.points[slot], out.masks[slot] = box, point, 1.0
        if d.scribble is not None:
            out.scribbles[slot] = _move_points(d.scribble, g, flip)
        if d.polygon is not None:
            out.polygons[slot] = _move_points(d.polygon, g, flip)
        if d.source.mask is not None:
            out.segs[slot] = crop_mask(np.asarray(d.source.mask).astype(bool), g, flip)
        out.slots.append(i)
        out.use_label.append(use_label)
    use_caption = rng.random() < st.prob_use_caption
    labels = [dec[i].source.label for i in out.slots]
    out.caption = compose_caption(prompt, labels, st.caption_style) if use_caption else ""
    return out


def source_instances(layout) -> list[SourceInstance]:
    """The active, described instances of a ``core.layout.Layout`` as :class:`SourceInstance` on its canvas: the
    instance's box (explicit, else the bounding box of its regions), the union of its mask and polygon regions at
    canvas resolution (imported COCO polygons by pycocotools' rule), its first scribble and point, description and
    label."""
    from .. import raster
    from .inputs import _resize_bool, rasterize_polygon

    w, h = int(layout.width), int(layout.height)
    out = []
    for inst in layout.active():
        if not inst.description.strip():
            continue
        masks = [np.asarray(r.mask).astype(bool) for r in inst.regions if r.kind == "mask" and r.mask is not None]
        polys = [r for r in inst.regions if r.kind == "polygon" and r.points]
        mask = None
        if masks or polys:
            mask = np.zeros((h, w), dtype=bool)
            for m in masks:
                mask |= _resize_bool(m, h, w)
            for r in polys:
                mask |= rasterize_polygon(r.points, h, w, w, h, raster.polygon_fill(r))
        scr, pt = inst.region("scribble"), inst.region("point")
        out.append(SourceInstance(
            box=tuple(float(v) for v in inst.bbox((w, h))), mask=mask,
            scribble=list(scr.points) if scr is not None and scr.points else None,
            point=tuple(pt.points[0]) if pt is not None and pt.points else None,
            description=inst.description.strip(), label=(inst.label or "").strip()))
    return out


# --- model-side draws (official UniFusion.reset_dropout_train and UNetModel's guidance drop) -------------------


@dataclass(frozen=True)
class ModalityDrop:
    """Which input kinds a training step replaces by their null embeddings (True = dropped); polygons and segs
    together as ``masks``, as the official code always sets them equal."""

    boxes: bool
    points: bool
    scribbles: bool
    masks: bool

    def as_list(self) -> list[bool]:
        return [self.boxes, self.points, self.scribbles, self.masks]


def modality_drop_from_uniforms(u: Sequence[float]) -> ModalityDrop:
    """The official training rule on nine uniforms in its draw order: drop box, point, scribble, polygon+seg
    (each ``< 0.1``), then keep-point-only (0.1), keep-scribble-only (0), keep-mask-only (0), keep-seg-only (0.1),
    keep-box-only (0). Every draw is made even when its ratio is 0, as the official code does."""
    if len(u) != 9:
        raise ValueError(f"modality dropout takes 9 uniforms, got {len(u)}")
    box, point, scribble, poly = u[0] < 0.1, u[1] < 0.1, u[2] < 0.1, u[3] < 0.1
    seg = poly
    if not poly:
        box = point = False
    if not box or not poly:
        point = False
    if u[4] < 0.1:  # keep the point only
        point, box, scribble, poly, seg = False, True, True, True, True
    if u[5] < 0.0 and not scribble:  # keep the scribble only (ratio 0)
        point, box, scribble, poly, seg = True, True, False, True, True
    if u[6] < 0.0 and not poly:  # keep the mask only (ratio 0)
        point, box, scribble, poly, seg = True, True, True, False, False
    if u[7] < 0.1 and not seg:  # "keep seg only": boxes, points, polygons and segs on, scribbles off
        point, box, scribble, poly, seg = False, False, True, False, False
    if u[8] < 0.0 and not box:  # keep the box only (ratio 0)
        point, box, scribble, poly, seg = True, False, True, True, True
    if point and box and scribble and poly and seg:
        box = False
    return ModalityDrop(box, point, scribble, poly)


def draw_modality_drop(rng: np.random.Generator) -> ModalityDrop:
    """:func:`modality_drop_from_uniforms` on nine uniforms from ``rng``."""
    return modality_drop_from_uniforms(rng.random(9).tolist())


def draw_null_grounding(rng: np.random.Generator, prob: float = 0.1) -> bool:
    """The official guidance drop: with probability 0.1 the whole grounding input is the all-null input."""
    return bool(rng.random() < prob)


def modality_drop_probabilities() -> dict[str, float]:
    """Exact marginal drop probabilities of :func:`modality_drop_from_uniforms` (for documentation and tests):
    derived by enumerating the rule over the 0.1 / 0.9 outcomes of its draws."""
    p = 0.1
    probs = {"boxes": 0.0, "points": 0.0, "scribbles": 0.0, "masks": 0.0}
    for bits in range(1 << 6):  # the four drops, keep-point-only, keep-seg-only
        u = [0.0 if bits >> k & 1 else 0.5 for k in range(6)]
        w = math.prod(p if bits >> k & 1 else 1 - p for k in range(6))
        d = modality_drop_from_uniforms([u[0], u[1], u[2], u[3], u[4], 0.5, 0.5, u[5], 0.5])
        for name, v in zip(probs, d.as_list()):
            probs[name] += w * v
    return probs
