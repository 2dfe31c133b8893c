"""The overlapping-instance stress benchmark (issue 15 item 7): pairs of boxes whose IoU is 0.1 ... 0.9.

Each layout holds two boxes of the same size (40 % of the canvas width, 50 % of its height), vertically centred and
side by side, the right one shifted left until the pair's IoU is the target: for two w x h boxes offset by d along
x, IoU = (w - d) / (w + d), so d = w (1 - IoU) / (1 + IoU). Each pair of descriptions (its label: the last word) is
drawn at every IoU with every seed; the global prompt is "<first> and <second>". Scoring it shows how localisation,
IFS and attribute binding fall as instances overlap.
"""
from __future__ import annotations

from .benchmark_file import write_benchmark

DEFAULT_PAIRS = (("a red apple", "a green apple"), ("a black cat", "a white dog"), ("a blue car", "a yellow car"))
MAX_LAYOUTS = 100_000


def pair_boxes(width: int, height: int, iou: float) -> tuple[list[float], list[float]]:
    """Two xyxy boxes in canvas pixels with the given IoU (0 < iou < 1), centred on the canvas."""
    if not 0.0 < iou < 1.0:
        raise ValueError(f"IoU must be between 0 and 1 (exclusive), got {iou}")
    w, h = 0.4 * width, 0.5 * height
    d = w * (1 - iou) / (1 + iou)
    x0 = (width - (w + d)) / 2
    y0 = (height - h) / 2
    return [x0, y0, x0 + w, y0 + h], [x0 + d, y0, x0 + d + w, y0 + h]


def stress_items(width: int = 512, height: int = 512, seeds: int = 1, ious=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                 0.9), pairs=DEFAULT_PAIRS) -> list[dict]:  # fmt: skip
    """The benchmark lines: ``{"id", "seed", "layout", "iou", "pair"}`` for every (IoU, pair, seed)."""
    if not 1 <= seeds <= 1000:
        raise ValueError(f"seeds must be 1..1000, got {seeds}")
    if not pairs or any(len(p) != 2 or not all(isinstance(s, str) and s.strip() for s in p) for p in pairs):
        raise ValueError("pairs: give at least one pair of two non-empty descriptions")
    if len(ious) * len(pairs) * seeds > MAX_LAYOUTS:
        raise ValueError(f"{len(ious) * len(pairs) * seeds} layouts; at most {MAX_LAYOUTS}")
    items = []
    for iou in ious:
        a, b = pair_boxes(width, height, float(iou))
        for k, (d1, d2) in enumerate(pairs, start=1):
            layout = {"format": "instance-layout", "version": 1, "width": width, "height": height,
                      "prompt": f"{d1} and {d2}",
                      "instances": [{"description": d, "label": d.split()[-1],
                                     "regions": [{"kind": "box", "box": [round(v, 3) for v in box]}]}
                                    for d, box in ((d1, a), (d2, b))]}
            for s in range(seeds):
                items.append({"id": f"iou{float(iou):.2f}-pair{k}-seed{s}", "seed": s, "layout": layout,
                              "iou": float(iou), "pair": k})
    return items


def write_stress_benchmark(path: str, width: int, height: int, seeds: int, ious: str, pairs: str) -> int:
    """The CLI's ``stress`` command: ``ious`` "0.1,0.5", ``pairs`` "a red car|a blue car;..." (empty: defaults)."""
    try:
        iou_list = [float(x) for x in ious.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--ious {ious!r}: comma-separated numbers between 0 and 1") from None
    pair_list = DEFAULT_PAIRS
    if pairs.strip():
        pair_list = tuple(tuple(s.strip() for s in p.split("|")) for p in pairs.split(";") if p.strip())
    return write_benchmark(path, stress_items(width, height, seeds, iou_list, pair_list))
