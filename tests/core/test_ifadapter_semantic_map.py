"""Box rasterisation, CBAM, the gated size-aware fusion and the optimised-vs-reference processor."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ifadapter import CBAM, IFAttnProcessor, InstanceGeometry, rasterize_boxes


def cells_of(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(ix) for ix in torch.nonzero(mask).tolist()}


def test_rasterize_floor_ceil_non_square():
    m = rasterize_boxes(torch.tensor([0.1, 0.2, 0.55, 0.9]), h=4, w=6)
    # x: floor(0.6)=0 .. ceil(3.3)=4 (exclusive); y: floor(0.8)=0 .. ceil(3.6)=4
    assert m.shape == (4, 6)
    assert cells_of(m) == {(y, x) for y in range(4) for x in range(4)}
    m = rasterize_boxes(torch.tensor([0.5, 0.5, 0.75, 1.0]), h=4, w=8)
    assert cells_of(m) == {(y, x) for y in (2, 3) for x in (4, 5)}


def test_geometry_areas_size_gate_and_null_slots():
    boxes = torch.tensor([[[0.0, 0.0, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    geo = InstanceGeometry.from_boxes(boxes, 8, 8, valid=torch.tensor([[True, True, False]]))
    assert geo.cells[0, 2].sum() == 0  # invalid slot rasterises to nothing
    assert geo.foreground.sum() == 48  # union of 36 and 16 cells overlapping in 4
    expected = torch.tensor([[1 / (1 + math.exp(-48 / 36)), 1 / (1 + math.exp(-3.0)), 0.5]])
    assert torch.allclose(geo.size_gate, expected)


def test_cbam_tiny_known_input_by_hand():
    torch.manual_seed(0)
    cbam = CBAM(16, 16)
    with torch.no_grad():
        for p in cbam.parameters():
            p.normal_()
    x = torch.randn(1, 16, 3, 3)
    out = cbam(x).detach().numpy()[0]

    xn = x.numpy()[0].astype(np.float64)
    w1, b1 = (t.detach().numpy().astype(np.float64) for t in (cbam.cam.linear[0].weight, cbam.cam.linear[0].bias))
    w2, b2 = (t.detach().numpy().astype(np.float64) for t in (cbam.cam.linear[2].weight, cbam.cam.linear[2].bias))

    def sig(z):
        return 1 / (1 + np.exp(-z))

    def mlp(v):
        return w2 @ np.maximum(w1 @ v + b1, 0) + b2

    gate = sig(mlp(xn.max(axis=(1, 2))) + mlp(xn.mean(axis=(1, 2))))
    y = xn * gate[:, None, None]
    maps = np.stack([y.max(axis=0), y.mean(axis=0)])  # [2, 3, 3]: channel max first, then mean
    k = cbam.sam.conv.weight.detach().numpy()[0].astype(np.float64)  # [2, 7, 7]
    conv = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            for c in range(2):
                for di in range(7):
                    for dj in range(7):
                        yi, xj = i + di - 3, j + dj - 3
                        if 0 <= yi < 3 and 0 <= xj < 3:
                            conv[i, j] += k[c, di, dj] * maps[c, yi, xj]
    np.testing.assert_allclose(out, y * sig(conv)[None], rtol=1e-4, atol=1e-5)


def random_processor(seed: int = 0, alpha: float = 0.8, bias: float = 0.3) -> IFAttnProcessor:
    torch.manual_seed(seed)
    p = IFAttnProcessor()
    with torch.no_grad():
        for prm in p.parameters():
            prm.normal_(0, 0.05)
        p.cbam.cam.linear[0].weight.normal_(0, 0.5)
        p.cbam.sam.conv.weight.normal_(0, 0.5)
        p.conv.weight.normal_(0, 0.5)
        p.alpha.fill_(alpha)
        p.conv.bias.fill_(bias)
    return p.eval()


@pytest.fixture(scope="module")
def proc():
    return random_processor()


def test_fusion_size_prior_favours_smaller_box_by_hand():
    p = random_processor(1, alpha=0.5, bias=2.0)
    with torch.no_grad():
        p.conv.weight.zero_()  # g_i = bias everywhere, so the fusion weights follow from the size prior alone
    h = w = 8
    c = torch.randn(2, 2048)
    tokens = c[None, :, None, :].expand(1, 2, 13, 2048)  # 13 identical tokens: s_i = m_i * W_v c_i exactly
    boxes = torch.tensor([[[0.0, 0.0, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0]]])  # 36 and 16 cells, union 48
    geo = InstanceGeometry.from_boxes(boxes, h, w)
    q = torch.randn(1, h * w, 1280)
    with torch.no_grad():
        delta = p(q, tokens, geo)
        ref = p(q, tokens, geo, reference=True)
        v = p.to_v_ap(c)
    sig = [1 / (1 + math.exp(-48 / 36)), 1 / (1 + math.exp(-48 / 16))]
    z = [math.exp(2.0 * s) for s in sig]
    denom = sum(z) + 8 * math.exp(0.5 * 2.0)  # eight empty slots with logit 0.5 * bias
    wts = [zi / denom for zi in z]
    assert wts[1] > wts[0]
    gate = math.tanh(0.5)
    overlap, only_big, only_small, background = 5 * 8 + 5, 0, 7 * 8 + 7, 7 * 8 + 0
    torch.testing.assert_close(delta[0, overlap], gate * (wts[0] * v[0] + wts[1] * v[1]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(delta[0, only_big], gate * wts[0] * v[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(delta[0, only_small], gate * wts[1] * v[1], rtol=1e-4, atol=1e-5)
    assert torch.all(delta[0, background] == 0)
    torch.testing.assert_close(delta, ref, rtol=1e-4, atol=1e-5)


def test_semantic_map_is_zero_outside_cells(proc):
    h, w = 6, 6
    geo = InstanceGeometry.from_boxes(torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]]), h, w)
    with torch.no_grad():
        delta = proc(torch.randn(1, h * w, 1280), torch.randn(1, 2, 13, 2048), geo).view(h, w, -1)
    covered = geo.foreground[0]
    assert torch.all(delta[~covered] == 0)
    assert torch.all(delta[covered].abs().sum(-1) > 0)


def test_zero_gate_gives_exactly_zero():
    p = IFAttnProcessor()  # fresh: alpha = 0 (zero-init gate)
    geo = InstanceGeometry.from_boxes(torch.tensor([[[0.1, 0.1, 0.9, 0.8]]]), 4, 4)
    with torch.no_grad():
        delta = p(torch.randn(1, 16, 1280), torch.randn(1, 1, 13, 2048), geo)
    assert torch.equal(delta, torch.zeros_like(delta))


def test_null_slots_equal_explicit_empty_slots(proc):
    h, w = 5, 7
    q, tok = torch.randn(1, h * w, 1280), torch.randn(1, 3, 13, 2048)
    boxes = torch.tensor([[[0.0, 0.0, 0.6, 0.6], [0.3, 0.2, 1.0, 0.9], [0.0, 0.0, 1.0, 1.0]]])
    with torch.no_grad():
        two = proc(q, tok[:, :2], InstanceGeometry.from_boxes(boxes[:, :2], h, w))
        padded = proc(q, tok, InstanceGeometry.from_boxes(boxes, h, w, valid=torch.tensor([[True, True, False]])))
        ref = proc(q, tok[:, :2], InstanceGeometry.from_boxes(boxes[:, :2], h, w), reference=True)
    torch.testing.assert_close(two, padded, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(two, ref, rtol=1e-4, atol=1e-5)


def test_non_square_grid_matches_reference(proc):
    h, w = 4, 10
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.4, 0.25, 0.8, 0.75]]])
    geo = InstanceGeometry.from_boxes(boxes, h, w)
    q, tok = torch.randn(1, h * w, 1280), torch.randn(1, 2, 13, 2048)
    with torch.no_grad():
        fast, ref = proc(q, tok, geo), proc(q, tok, geo, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    assert torch.all(fast.view(h, w, -1)[:, 8:] == 0)  # columns right of x = 0.8 are background


def test_more_than_ten_instances_is_a_clear_error(proc):
    geo = InstanceGeometry.from_boxes(torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(1, 11, 4), 4, 4)
    with pytest.raises(ValueError, match="11 instances given but IFAdapter supports at most 10"):
        proc(torch.randn(1, 16, 1280), torch.randn(1, 11, 13, 2048), geo)


def test_shape_errors_name_the_problem(proc):
    geo = InstanceGeometry.from_boxes(torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]), 4, 4)
    with pytest.raises(ValueError, match="does not match the 20 query tokens"):
        proc(torch.randn(1, 20, 1280), torch.randn(1, 1, 13, 2048), geo)
    with pytest.raises(ValueError, match=r"q must be \[B, N, 1280\]"):
        proc(torch.randn(1, 16, 640), torch.randn(1, 1, 13, 2048), geo)


def test_precomputed_kv_and_batched_rows_match_reference(proc):
    h, w = 6, 6
    gen = torch.Generator().manual_seed(3)
    q, tok = torch.randn(3, h * w, 1280, generator=gen), torch.randn(3, 4, 13, 2048, generator=gen)
    boxes = torch.rand(3, 4, 2, generator=gen).mul(0.5)
    boxes = torch.cat([boxes, boxes + torch.rand(3, 4, 2, generator=gen).mul(0.5) + 0.05], -1)
    valid = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    geo = InstanceGeometry.from_boxes(boxes, h, w, valid)
    with torch.no_grad():
        kv = proc.project_tokens(tok)
        fast, ref = proc(q, kv, geo), proc(q, tok, geo, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    assert torch.all(fast[2] == 0)  # a row without instances gets no residual


box_strategy = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.02, 1.0), st.floats(0.02, 1.0)).map(
    lambda t: (t[0], t[1], min(1.0, t[0] + t[2]), min(1.0, t[1] + t[3]))
)


@settings(max_examples=25, deadline=None)
@given(
    boxes=st.lists(box_strategy, min_size=1, max_size=10),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    seed=st.integers(0, 2**16),
)
def test_optimised_equals_reference_property(proc, boxes, h, w, seed):
    gen = torch.Generator().manual_seed(seed)
    n = len(boxes)
    q = torch.randn(1, h * w, 1280, generator=gen)
    tok = torch.randn(1, n, 13, 2048, generator=gen)
    geo = InstanceGeometry.from_boxes(torch.tensor([boxes]), h, w)
    with torch.no_grad():
        fast, ref = proc(q, tok, geo), proc(q, tok, geo, reference=True)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=5e-5)  # float32 sums over 1280 channels in another order
