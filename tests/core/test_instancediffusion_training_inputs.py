"""Training-time InstanceDiffusion inputs against the official dataset rules (tests/core/id_training_reference.py:
scikit-image contours, PIL centre crop and nearest resize), on the same sample and the same random draws; the
modality dropout against the official branches and its exact marginal probabilities; per-sample drop flags in the
position net against the official per-batch flags."""

import numpy as np
import pytest
import torch
from id_training_reference import official_centre_crop, official_reset_dropout_train, official_sample
from test_instancediffusion_official_inputs import random_mask

from core.instancediffusion.position_net import DropFlags, PositionNet
from core.instancediffusion.training_inputs import (
    CropGeometry,
    SourceInstance,
    TrainingInputSettings,
    counted_labels,
    draw_modality_drop,
    modality_drop_from_uniforms,
    modality_drop_probabilities,
    prepare_training_sample,
)


@pytest.mark.parametrize("wh", [(640, 480), (480, 640), (512, 512), (1100, 2300), (2048, 1024), (333, 517),
                                (1024, 1023)])
def test_centre_crop_geometry_equals_pil(wh):
    g = CropGeometry.centre(*wh, 512)
    resized, cx, cy, scale = official_centre_crop(*wh, 512)
    assert g.resized == resized and g.crop == (cx, cy) and g.scale == scale


def _sample(rng, w, h, n):
    """n instances: masks (>= 128 pixels), boxes from the masks, some without a mask, some without a label, one
    tiny and one partly outside the crop."""
    insts, annos = [], []
    for i in range(n):
        kind = i % 4
        if kind == 3:  # a box only
            x, y = float(rng.uniform(0, w * 0.6)), float(rng.uniform(0, h * 0.6))
            bw, bh = float(rng.uniform(w * 0.05, w * 0.4)), float(rng.uniform(h * 0.05, h * 0.4))
            mask = None
        else:
            mask = random_mask(rng, h, w)
            while mask.sum() < 128:
                mask |= random_mask(rng, h, w)
            ys, xs = np.nonzero(mask)
            x, y, bw, bh = float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())
        if i == 1:
            bw, bh = 2.0, 2.0  # under 1 % of the crop: dropped
        label = "" if kind == 2 else ["dog", "cat", "dog"][i % 3]
        desc = f"object number {i}"
        insts.append(SourceInstance((x, y, x + bw, y + bh), mask=mask, description=desc, label=label))
        annos.append({"bbox": [x, y, bw, bh], "mask": mask, "category_name": label, "caption": desc})
    return insts, annos


@pytest.mark.parametrize("seed", range(8))
def test_training_sample_equals_the_official_dataset_code(seed):
    rng = np.random.default_rng(seed)
    w, h = [(96, 80), (80, 120), (64, 64), (130, 70)][seed % 4]
    size = 64  # the official rules at a small crop (512 in training); the centre crop scales up or down
    n = 5 + seed % 4
    insts, annos = _sample(rng, w, h, n)
    settings = TrainingInputSettings(size=size, max_objs=4 + seed % 3)
    got = prepare_training_sample(insts, w, h, "a photo", np.random.default_rng(100 + seed), settings)
    ref, texts, caption, flip = official_sample(annos, w, h, "a photo", np.random.default_rng(100 + seed), size=size,
                                                max_boxes=settings.max_objs)
    assert got.flip == flip
    for key in ("boxes", "points", "masks", "scribbles", "polygons", "segs"):
        assert torch.equal(getattr(got, key), ref[key]), key
    assert [insts[i].label if lab else insts[i].description for i, lab in zip(got.slots, got.use_label)] == texts
    assert got.caption == caption
    assert 0 < len(got.slots) <= settings.max_objs


def test_flip_and_caption_draws_cover_both_outcomes():
    rng = np.random.default_rng(0)
    insts, _ = _sample(rng, 80, 80, 4)
    flips, captions = set(), set()
    for s in range(40):
        t = prepare_training_sample(insts, 80, 80, "p", np.random.default_rng(s), TrainingInputSettings(size=64))
        flips.add(t.flip)
        captions.add(t.caption)
    assert flips == {False, True} and "" in captions and len(captions) == 2


def test_counted_labels_and_settings_checks():
    assert counted_labels(["dog", "dog", "cat"]) == "2 dog, 1 cat"
    with pytest.raises(ValueError, match="caption_style"):
        TrainingInputSettings(caption_style="x")
    with pytest.raises(ValueError, match="max_objs"):
        TrainingInputSettings(max_objs=31)


def test_modality_drop_equals_the_official_branches():
    rng = np.random.default_rng(3)
    grid = [0.05, 0.5]
    cases = [[grid[(k >> j) & 1] for j in range(9)] for k in range(1 << 9)] + rng.random((500, 9)).tolist()
    for u in cases:
        p, b, s, pol, seg = official_reset_dropout_train(u)
        assert pol == seg
        assert modality_drop_from_uniforms(u).as_list() == [b, p, s, pol]


def test_modality_drop_probabilities():
    # derived by hand from the official rule: masks 0.1 + 0.9·0.1; scribbles 0.1 + 0.9·(0.09 + 0.91·0.1);
    # boxes 0.1 (point only) + 0.9·(0.01 − 0.0001); points 0.9·0.001
    probs = modality_drop_probabilities()
    assert probs == pytest.approx({"boxes": 0.10891, "points": 0.0009, "scribbles": 0.2629, "masks": 0.19}, abs=1e-12)
    draws = np.array([draw_modality_drop(np.random.default_rng(s)).as_list() for s in range(20000)])
    assert np.allclose(draws.mean(0), [0.10891, 0.0009, 0.2629, 0.19], atol=0.012)


def _tiny_net():
    torch.manual_seed(0)
    net = PositionNet(mid_dim=32, fourier_freqs=4, convnext_dims=(8, 8, 8, 16), convnext_depths=(1, 1, 1, 1),
                      seg_size=64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net


def test_per_sample_drop_flags_equal_per_batch_flags_row_by_row():
    net = _tiny_net()
    g = torch.Generator().manual_seed(1)
    b = 4
    inputs = {"boxes": torch.rand(b, 30, 4, generator=g), "masks": (torch.rand(b, 30, generator=g) < 0.5).float(),
              "positive_embeddings": torch.randn(b, 30, 768, generator=g),
              "points": torch.rand(b, 30, 2, generator=g), "scribbles": torch.rand(b, 30, 40, generator=g),
              "polygons": torch.rand(b, 30, 512, generator=g),
              "segs": (torch.rand(b, 30, 64, 64, generator=g) < 0.3).float()}
    inputs["segs"][2] = 0  # a sample without masks
    flags = torch.tensor([[False, False, True, False], [True, True, True, True], [False, True, False, True],
                          [True, False, False, False]])
    with torch.no_grad():
        got = net(inputs, flags)
        for r in range(b):
            row = {k: v[r:r + 1] for k, v in inputs.items()}
            exp = net(row, DropFlags(*flags[r].tolist()))
            torch.testing.assert_close(got[r:r + 1], exp, rtol=1e-5, atol=1e-5)  # batch of 4 vs 1: matmul rounding
        # and the dropped kinds really are the null embeddings: row 1 (all four set) keeps its boxes only
        assert not torch.allclose(got[1, :30], net(inputs, DropFlags(True, True, True, False))[1, :30])
