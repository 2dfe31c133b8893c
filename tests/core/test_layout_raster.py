"""Rasterisation to (h, w) grids: the IFAdapter cell rule, masks, polygons, scribbles, points, union/background/areas."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.layout import Instance, Layout, Region, box_cells, rasterize_boxes


def cells(t: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(int(v) for v in rc) for rc in torch.nonzero(t)}


def one(*regions: Region, W: int = 10, H: int = 10) -> Layout:
    return Layout(W, H, instances=[Instance("thing", regions=list(regions))]).validate()


def test_box_cells_hand_case():
    # rows [floor(2), ceil(9)) = 2..8, cols [floor(1), ceil(5.5)) = 1..5
    assert box_cells([0.1, 0.2, 0.55, 0.9], 10, 10) == (2, 9, 1, 6)
    m = rasterize_boxes(torch.tensor([[0.1, 0.2, 0.55, 0.9]]), 10, 10)[0]
    assert cells(m) == {(r, c) for r in range(2, 9) for c in range(1, 6)}


def test_box_cells_non_square_grid():
    # h=4, w=8: rows [0, ceil(2)) = 0..1, cols [floor(2), ceil(4.8)) = 2..4
    assert box_cells((0.25, 0.0, 0.6, 0.5), 4, 8) == (0, 2, 2, 5)
    m = rasterize_boxes(torch.tensor([[0.25, 0.0, 0.6, 0.5]]), 4, 8)
    assert m.shape == (1, 4, 8) and m.dtype == torch.float32 and int(m.sum()) == 2 * 3


def test_box_cells_ignore_float_noise():
    # 0.7 * 10 = 7.000000000000001 in floating point; the box still ends at column 6
    assert box_cells((0.3, 0.3, 0.7, 0.7), 10, 10) == (3, 7, 3, 7)


def test_box_cells_clamp_and_tiny_box():
    assert box_cells((-0.5, -0.1, 1.5, 2.0), 6, 4) == (0, 6, 0, 4)
    assert box_cells((0.5, 0.5, 0.5000001, 0.5000001), 8, 8) == (4, 5, 4, 5)  # never empty


def test_rasterize_boxes_keeps_device_and_matches_box_cells():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.33, 0.12, 0.34, 0.9]])
    m = rasterize_boxes(boxes, 7, 13)
    assert m.device == boxes.device
    for b, mk in zip(boxes, m, strict=True):
        y0, y1, x0, x1 = box_cells(b, 7, 13)
        ref = torch.zeros(7, 13)
        ref[y0:y1, x0:x1] = 1
        assert torch.equal(mk, ref)


def test_layout_box_uses_cell_rule_on_pixels():
    # 1024x768 canvas at 24x32 cells: x 100..612 -> [floor(3.125), ceil(19.125)) = 3..19; y 200..700 ->
    # [floor(6.25), ceil(21.875)) = 6..21
    layout = one(Region("box", box=(100, 200, 612, 700)), W=1024, H=768)
    m = layout.rasterize(24, 32)[0]
    assert cells(m) == {(r, c) for r in range(6, 22) for c in range(3, 20)}


def test_mask_nearest_downsample_and_upsample():
    mask = np.zeros((4, 4), dtype=bool)
    mask[0:2, 2:4] = True  # top-right quadrant
    m = one(Region("mask", mask=mask), W=40, H=40)
    assert m.rasterize(2, 2)[0].tolist() == [[0, 1], [0, 0]]
    up = m.rasterize(8, 8)[0].numpy().astype(bool)
    np.testing.assert_array_equal(up, np.kron(mask, np.ones((2, 2), dtype=bool)))


def test_mask_non_square_grid():
    mask = np.zeros((2, 3), dtype=bool)
    mask[1, 2] = True  # bottom-right sixth of the canvas
    m = one(Region("mask", mask=mask), W=30, H=20).rasterize(4, 6)[0]
    assert cells(m) == {(2, 4), (2, 5), (3, 4), (3, 5)}


def test_polygon_fill_hand_case():
    # right triangle (0,0),(4,0),(0,4): cell (i, j) centre (j+.5, i+.5) is inside iff i + j <= 2
    m = one(Region("polygon", points=[(0, 0), (4, 0), (0, 4)]), W=4, H=4).rasterize(4, 4)[0]
    assert cells(m) == {(i, j) for i in range(4) for j in range(4) if i + j <= 2}


def test_polygon_concave():
    # a U shape on a 6x6 canvas: the notch (columns 2..3, rows 0..3) stays empty
    u = [(0, 0), (2, 0), (2, 4), (4, 4), (4, 0), (6, 0), (6, 6), (0, 6)]
    m = one(Region("polygon", points=u), W=6, H=6).rasterize(6, 6)[0]
    assert int(m.sum()) == 36 - 8
    assert m[:4, 2:4].sum() == 0


def test_scribble_width():
    # horizontal stroke at y=5, width 2: cell centres at y=4.5 and 5.5 are within 1 pixel, 3.5 and 6.5 are not
    m = one(Region("scribble", points=[(0, 5), (10, 5)], width=2)).rasterize(10, 10)[0]
    assert cells(m) == {(r, c) for r in (4, 5) for c in range(10)}


def test_scribble_scaled_to_non_square_grid():
    # same stroke on a 5x20 grid: cells 2 pixels tall, 0.5 wide; half-diagonal 1.03 > 1 -> rows with centre y
    # 5 +/- 1.03: centres y = 1, 3, 5, 7, 9 -> only row 2
    m = one(Region("scribble", points=[(0, 5), (10, 5)], width=2)).rasterize(5, 20)[0]
    assert cells(m) == {(2, c) for c in range(20)}


def test_thin_scribble_on_coarse_grid_covers_every_cell_it_crosses():
    m = one(Region("scribble", points=[(0, 10), (100, 10)], width=1), W=100, H=100).rasterize(2, 2)[0]
    assert m.tolist() == [[1, 1], [0, 0]]


def test_point_disc_hand_case():
    # point (5,5) radius 2 on a 10x10 grid: centre offsets (.5,.5) and (.5,1.5) are within 2 -> 4 + 8 = 12 cells
    m = one(Region("point", points=[(5, 5)], width=2)).rasterize(10, 10)[0]
    assert int(m.sum()) == 12
    assert m[3:7, 3:7].sum() == 12 - 0 and m[4:6, 4:6].all()


def test_point_on_coarse_grid_is_its_cell():
    m = one(Region("point", points=[(70, 10)], width=1), W=100, H=100).rasterize(4, 4)[0]
    assert cells(m) == {(0, 2)}


def test_small_polygon_never_vanishes():
    m = one(Region("polygon", points=[(61, 61), (62, 61), (61, 62)]), W=100, H=100).rasterize(4, 4)[0]
    assert cells(m) == {(2, 2)}


def test_union_background_and_areas():
    layout = Layout(10, 10, instances=[
        Instance("a", regions=[Region("box", box=(0, 0, 5, 5))]),
        Instance("b", regions=[Region("box", box=(3, 3, 8, 8))]),
        Instance("off", regions=[Region("box", box=(0, 0, 10, 10))], enabled=False),
    ]).validate()  # fmt: skip
    r = layout.rasterize(10, 10)
    assert r.shape == (2, 10, 10)
    assert layout.areas(10, 10).tolist() == [25.0, 25.0]
    assert int(layout.union_mask(10, 10).sum()) == 25 + 25 - 4
    assert torch.equal(layout.background_mask(10, 10), 1 - layout.union_mask(10, 10))
    assert layout.union_mask(5, 2).shape == (5, 2)


def test_instance_is_union_of_its_regions():
    layout = one(Region("box", box=(0, 0, 2, 2)), Region("point", points=[(8.5, 8.5)], width=0.5))
    assert cells(layout.rasterize(10, 10)[0]) == {(0, 0), (0, 1), (1, 0), (1, 1), (8, 8)}


def test_empty_layout_raster_shapes():
    layout = Layout(64, 32).validate()
    assert layout.rasterize(4, 8).shape == (0, 4, 8)
    assert layout.boxes_normalized().shape == (0, 4)
    assert layout.background_mask(4, 8).sum() == 32


def test_bad_grid_size():
    with pytest.raises(ValueError, match="grid size"):
        one(Region("box", box=(0, 0, 1, 1))).rasterize(0, 4)


def test_boxes_normalized_and_bboxes():
    mask = np.zeros((2, 4), dtype=bool)
    mask[1, 1:3] = True  # canvas 200x100: x 50..150, y 50..100
    layout = Layout(200, 100, instances=[
        Instance("boxed", regions=[Region("box", box=(20, 10, 120, 60)), Region("point", points=[(190, 90)])]),
        Instance("masked", regions=[Region("mask", mask=mask)]),
        Instance("pointed", regions=[Region("point", points=[(5, 50)], width=10), Region("scribble", points=[(20, 20), (40, 30)], width=4)]),
    ]).validate()  # fmt: skip
    b = layout.boxes_normalized()
    assert b.dtype == torch.float32
    expect = torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.25, 0.5, 0.75, 1.0], [0.0, 0.18, 42 / 200, 0.6]])
    torch.testing.assert_close(b, expect)
    assert layout.instances[1].regions[0].bbox((200, 100)) == (50.0, 50.0, 150.0, 100.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 99), st.integers(0, 59), st.integers(1, 100), st.integers(1, 60)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 40),
    st.integers(1, 40),
)
def test_box_only_layout_matches_rasterize_boxes(raw, h, w):
    regions = [(x, y, min(x + bw, 100), min(y + bh, 60)) for x, y, bw, bh in raw]
    layout = Layout(
        100, 60, instances=[Instance(f"i{k}", regions=[Region("box", box=b)]) for k, b in enumerate(regions)]
    )
    layout.validate()
    torch.testing.assert_close(layout.rasterize(h, w), rasterize_boxes(layout.boxes_normalized(), h, w))
