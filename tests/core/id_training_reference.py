"""The official InstanceDiffusion training sample (``dataset/decode_item.py`` ``decode_item`` + ``decode.__call__``,
``dataset/base_dataset.py``) written from its rules on top of the libraries it uses: scikit-image contours (through
``official_polygon``), PIL for the centre crop and the mask resize, numpy for the sort keys (test only).

The official draws come from three global generators (numpy for the scribble pixels, Python's ``random`` for the
flip, the BLIP choice and the caption); here one ``np.random.Generator`` plays all three, in the official order.
Masks must have at least 128 pixels (the official polygon then draws nothing).
"""

from collections import Counter

import numpy as np
import torch
from PIL import Image
from test_instancediffusion_official_inputs import official_polygon


def official_centre_crop(width: int, height: int, size: int):
    """``center_crop_arr`` on a real PIL image: (resized (w, h), crop_x, crop_y, performed_scale)."""
    im = Image.new("RGB", (width, height))
    while min(*im.size) >= 2 * size:
        im = im.resize(tuple(x // 2 for x in im.size), resample=Image.Resampling.BOX)
    scale = size / min(*im.size)
    im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.Resampling.BICUBIC)
    arr = np.array(im)
    return im.size, (arr.shape[1] - size) // 2, (arr.shape[0] - size) // 2, size / min(width, height)


def official_sample(annos, width, height, caption, rng, size=512, max_boxes=30, min_box_size=0.01, random_blip=0.5,
                    prob_use_caption=0.5, skip_empty_labels=True):
    """annos: dicts with bbox [x, y, w, h], mask (bool [H, W] or None), category_name, caption (the instance
    caption; its embedding is the BLIP one). Returns the official output dict (boxes, points, masks, scribbles,
    polygons, segs), the chosen text per slot, the caption and whether the image was flipped.

    skip_empty_labels: leave instances without a category name out of the counted caption (the pack's deliberate
    difference; the official data always has one)."""
    # decode_item: scribbles and polygons in the source frame, numpy draws
    for a in annos:
        if a.get("mask") is not None:
            m = a["mask"][:, :, None]
            nz = np.transpose(np.nonzero(m[:, :, 0]))
            idx = rng.choice(len(nz), 20, replace=len(nz) < 20)
            pts = sorted(nz[idx], key=lambda x: np.linalg.norm(np.array(x) - np.array([0, 0])))
            a["scribbles"] = [v for p in pts for v in (float(p[1]), float(p[0]))]
            a["polygons"] = [v for p in official_polygon(a["mask"]) for v in p]
    (rw, rh), crop_x, crop_y, scale = official_centre_crop(width, height, size)
    flip = rng.random() < 0.5
    areas, boxes, points, scribbles, polygons, segs, texts, labels = [], [], [], [], [], [], [], []
    for a in annos:
        x, y, w, h = a["bbox"]
        x0, y0 = x * scale - crop_x, y * scale - crop_y
        x1, y1 = (x + w) * scale - crop_x, (y + h) * scale - crop_y
        if x0 > size or y0 > size or x1 < 0 or y1 < 0:
            continue
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if (x1 - x0) * (y1 - y0) / (size * size) < min_box_size:
            continue
        if flip:
            x0, x1 = size - x1, size - x0
        areas.append((x1 - x0) * (y1 - y0))
        boxes.append(torch.tensor([x0, y0, x1, y1]) / size)
        points.append(torch.tensor([(x0 + x1) / 2.0, (y0 + y1) / 2.0]) / size)

        def recalc(flat):
            out = list(flat)
            for i in range(len(out) // 2):
                out[2 * i] = min(max(out[2 * i] * scale - crop_x, 0), size)
                out[2 * i + 1] = min(max(out[2 * i + 1] * scale - crop_y, 0), size)
                if flip:
                    out[2 * i] = size - out[2 * i]
            return torch.tensor(out) / size

        if "scribbles" in a:
            scribbles.append(recalc(a["scribbles"]))
            polygons.append(recalc(a["polygons"]))
            seg = Image.fromarray(a["mask"].astype(np.float32)).resize((rw, rh), resample=Image.Resampling.NEAREST)
            seg = np.array(seg)[crop_y:crop_y + size, crop_x:crop_x + size]
            segs.append(torch.tensor(np.flip(seg, axis=1).copy() if flip else seg))
        else:
            scribbles.append(torch.zeros(40))
            polygons.append(torch.zeros(512))
            segs.append(torch.zeros(size, size))
        blip = a.get("caption") and a.get("category_name")
        texts.append(a["caption"] if (blip and rng.random() < random_blip) or not a.get("category_name")
                     else a["category_name"])
        labels.append(a.get("category_name", ""))
    order = sorted(range(len(areas)), key=lambda k: -areas[k])[:max_boxes]
    out = {"boxes": torch.zeros(max_boxes, 4), "points": torch.zeros(max_boxes, 2), "masks": torch.zeros(max_boxes),
           "scribbles": torch.zeros(max_boxes, 40), "polygons": torch.zeros(max_boxes, 512),
           "segs": torch.zeros(max_boxes, size, size)}
    chosen, names = [], []
    for i, k in enumerate(order):
        out["boxes"][i], out["points"][i], out["masks"][i] = boxes[k], points[k], 1
        out["scribbles"][i], out["polygons"][i], out["segs"][i] = scribbles[k], polygons[k], segs[k]
        chosen.append(texts[k])
        names.append(labels[k])
    if rng.random() < prob_use_caption:
        counted = dict(Counter([n for n in names if n or not skip_empty_labels]))
        sentence = "".join(f"{n} {name}, " for name, n in counted.items())[:-2]
        cap = sentence + ". " + caption
    else:
        cap = ""
    return out, chosen, cap, flip


def official_reset_dropout_train(u):
    """``UniFusion.forward`` (training) drop flags from nine uniforms in the official draw order, transcribed
    branch by branch: returns (drop_point, drop_box, drop_scribble, drop_polygons, drop_segs)."""
    drop_box, drop_point, drop_scribble, drop_polygons = u[0] < 0.1, u[1] < 0.1, u[2] < 0.1, u[3] < 0.1
    drop_segs = drop_polygons
    if not drop_polygons:
        drop_box = False
        drop_point = False
    if not drop_box or not drop_polygons:
        drop_point = False
    if u[4] < 0.1:
        drop_point, drop_box, drop_scribble, drop_polygons, drop_segs = False, True, True, True, True
    if u[5] < 0.0 and not drop_scribble:
        drop_point, drop_box, drop_scribble, drop_polygons, drop_segs = True, True, False, True, True
    if u[6] < 0.0 and not drop_polygons:
        drop_point, drop_box, drop_scribble, drop_polygons, drop_segs = True, True, True, False, False
    if u[7] < 0.1 and not drop_segs:
        drop_point, drop_box, drop_scribble, drop_polygons, drop_segs = False, False, True, False, False
    if u[8] < 0.0 and not drop_box:
        drop_point, drop_box, drop_scribble, drop_polygons, drop_segs = True, False, True, True, True
    if drop_point and drop_box and drop_scribble and drop_polygons and drop_segs:
        drop_box = False
    return drop_point, drop_box, drop_scribble, drop_polygons, drop_segs
