"""The InstanceDiffusion mask inputs against the library that defines them (scikit-image, a test-only dependency):
contours equal ``skimage.measure.find_contours`` vertex for vertex, the 256-point polygon equals the official
sampling built on skimage, and ``segs`` equal ``skimage.transform.resize(mask, (512, 512, 1))`` bit for bit.

Random masks cover holes, several components, masks touching the border, 1-pixel lines and non-square canvases.
"""

import numpy as np
import pytest
import torch
from skimage import measure, transform

from core.instancediffusion import InstanceInput, prepare_inputs
from core.instancediffusion.contours import contour_segments, find_contours, find_contours_binary
from core.instancediffusion.inputs import boundary_points, mask_to_polygon_points, working_mask
from core.instancediffusion.resize import resize_like_skimage

E = torch.ones(768)


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A mask with several components, a hole, a 1-pixel line and (often) contact with the border."""
    m = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(1, 4))):  # rectangles / ellipses, some clipped by the border
        cy, cx = rng.integers(-h // 4, h + h // 4), rng.integers(-w // 4, w + w // 4)
        ry, rx = rng.integers(2, max(3, h // 3)), rng.integers(2, max(3, w // 3))
        yy, xx = np.mgrid[:h, :w]
        if rng.random() < 0.5:
            m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            m |= (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
    if m.sum() > 20:  # a hole
        ys, xs = np.nonzero(m)
        k = int(rng.integers(len(ys)))
        m[max(0, ys[k] - 1) : ys[k] + 2, max(0, xs[k] - 1) : xs[k] + 2] = False
    r = int(rng.integers(h))
    m[r, int(rng.integers(w // 2)) : int(rng.integers(w // 2, w))] = True  # horizontal 1-pixel line
    c = int(rng.integers(w))
    m[int(rng.integers(h // 2)) : int(rng.integers(h // 2, h)), c] = True  # vertical 1-pixel line
    if rng.random() < 0.3:
        m |= rng.random((h, w)) < 0.05  # speckles: many tiny components and saddles
    return m


CANVASES = [(64, 64), (48, 80), (96, 40), (33, 57), (7, 120), (512, 768)]


def official_polygon(mask: np.ndarray, k: int = 256) -> list:
    """The official ``sample_sparse_points_from_mask`` (spec §1.2) on top of scikit-image, for masks with at least
    k//2 foreground pixels (no random draw)."""
    padded = np.pad(mask.astype(np.int32), pad_width=1, mode="constant", constant_values=0)
    flat = []
    for contour in measure.find_contours(padded, 0):
        if not np.array_equal(contour[0], contour[-1]):
            contour = np.vstack((contour, contour[0]))
        contour = measure.approximate_polygon(contour, 0)
        if len(contour) < 3:
            continue
        flat += [0 if v < 0 else v for v in np.flip(contour, axis=1).ravel().tolist()]
    pts = np.array(flat).reshape(-1, 2)
    idx = [int(i) for i in np.linspace(0, pts.shape[0] - 1, k // 2)]
    boundary = [(p[0], p[1]) for p in pts[idx]]
    fg = np.argwhere(mask == 1)
    n_in = k - len(boundary)
    center = np.mean(fg, axis=0)
    fg = sorted(fg, key=lambda x: np.linalg.norm(x - center))
    per = len(fg) // n_in
    inside = []
    for i in range(n_in):
        seg = fg[i * per : (i + 1) * per]
        p = seg[len(seg) // 2]
        inside.append((p[1], p[0]))
    pts = sorted(inside + boundary, key=lambda x: np.linalg.norm(np.array(x) - np.array([0, 0])))
    return [(float(x), float(y)) for x, y in pts]


@pytest.mark.parametrize("seed", range(12))
def test_contours_equal_skimage_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = CANVASES[seed % len(CANVASES)] if seed < len(CANVASES) else tuple(rng.integers(3, 90, 2))
    padded = np.pad(random_mask(rng, h, w).astype(np.int32), 1)
    ref = measure.find_contours(padded, 0.0)
    got = find_contours_binary(padded)
    assert len(got) == len(ref) > 0
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype == np.float64 and np.array_equal(a, b)  # same vertices, order and start


@pytest.mark.parametrize("fully_connected", ["low", "high"])
def test_contours_equal_skimage_with_subpixel_levels_and_saddles(fully_connected):
    rng = np.random.default_rng(7)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(2, 30, 2))
        img = rng.random((h, w)) if rng.random() < 0.5 else rng.integers(0, 3, (h, w)).astype(float)
        level = float(rng.random() * 2)
        ref = measure.find_contours(img, level, fully_connected=fully_connected)
        got = find_contours(img, level, fully_connected)
        assert len(got) == len(ref)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    # the segments themselves, in emission order, including the degenerate ones skimage drops while chaining
    from skimage.measure._find_contours_cy import _get_contour_segments

    img = np.pad((rng.random((25, 31)) < 0.5).astype(float), 1)
    ref_segs = _get_contour_segments(img, 0.0, fully_connected == "high", mask=None)
    assert contour_segments(img, 0.0, fully_connected) == [(tuple(a), tuple(b)) for a, b in ref_segs]


@pytest.mark.parametrize("seed", [*range(100, 124), 512])  # 512: near-ties where a vectorised norm reorders pixels
def test_polygon_equals_the_official_sampling(seed):
    rng = np.random.default_rng(seed)
    h, w = CANVASES[seed % len(CANVASES)]
    mask = random_mask(rng, h, w)
    while mask.sum() < 128:
        mask |= random_mask(rng, h, w)
    got = mask_to_polygon_points(mask, 256, np.random.default_rng(0))
    assert got == official_polygon(mask)
    # and through prepare_inputs: normalised by the mask, clipped at 1 (x by width, y by height); a mask of more than
    # 512 x 512 pixels is first reduced to 512 x 512 (the official evaluation path's resolution)
    d = prepare_inputs([InstanceInput(E, mask=mask)], w, h)
    if h * w > 512 * 512:
        h = w = 512
        got = mask_to_polygon_points(working_mask(mask), 256, np.random.default_rng(0))
    exp = torch.tensor([[min(x / w, 1.0), min(y / h, 1.0)] for x, y in got], dtype=torch.float32)
    assert torch.equal(d["polygons"][0, 0].view(256, 2), exp)


def test_boundary_of_a_border_touching_mask_and_a_1_pixel_line():
    m = np.zeros((6, 9), dtype=bool)
    m[0:3, 0:4] = True  # touches the top-left corner
    m[5, 2:9] = True  # a 1-pixel line along the bottom border
    got = boundary_points(m)
    ref = np.concatenate([c[:, ::-1] for c in measure.find_contours(np.pad(m.astype(np.int32), 1), 0.0)])
    assert np.array_equal(got, ref) and got.min() >= 0


@pytest.mark.parametrize("shape", [(64, 64), (1000, 700), (300, 800), (513, 511), (2048, 90), (7, 3000), (1, 600),
                                   (600, 1), (512, 512), (384, 640)])
def test_segs_resize_equals_skimage(shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    mask = random_mask(rng, *shape) if min(shape) > 2 else rng.random(shape) < 0.4
    ref = transform.resize(mask.astype(np.float32)[..., None], (512, 512, 1))[..., 0]
    got = resize_like_skimage(mask)
    assert got.dtype == ref.dtype == np.float32 and np.array_equal(got, ref)
    if shape != (512, 512) and 0 < mask.mean() < 1:
        assert ((got > 0) & (got < 1)).any()  # interpolated, not binary


def test_prepare_inputs_segs_are_the_skimage_resize_on_a_non_square_canvas():
    rng = np.random.default_rng(3)
    mask = random_mask(rng, 300, 700)
    d = prepare_inputs([InstanceInput(E, mask=mask)], 700, 300)
    ref = transform.resize(mask.astype(np.float32)[..., None], (512, 512, 1))[..., 0]
    assert torch.equal(d["segs"][0, 0], torch.from_numpy(ref))


def test_missing_box_choice():
    mask = np.zeros((64, 128), dtype=bool)
    mask[8:24, 32:96] = True
    derived = prepare_inputs([InstanceInput(E, mask=mask)], 128, 64)
    assert torch.allclose(derived["boxes"][0, 0], torch.tensor([32 / 128, 8 / 64, 96 / 128, 24 / 64]))
    official = prepare_inputs([InstanceInput(E, mask=mask)], 128, 64, missing_box="zeros (official)")
    assert official["boxes"][0, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert official["points"][0, 0].tolist() == [0.0, 0.0]  # official: the centre of the (zero) box
    boxed = prepare_inputs([InstanceInput(E, box=(10, 10, 20, 30), mask=mask)], 128, 64,
                           missing_box="zeros (official)")
    assert boxed["boxes"][0, 0].tolist() == pytest.approx([10 / 128, 10 / 64, 20 / 128, 30 / 64])
    with pytest.raises(ValueError, match="missing_box"):
        prepare_inputs([InstanceInput(E, mask=mask)], 128, 64, missing_box="guess")


# -- issue 18 item 2: the interior-point ordering costs a vectorised sort, and masks past 512² are first reduced -----

def _tie_heavy_masks():
    """Symmetric shapes whose pixels tie in distance to the centroid in groups of 4 and 8 (exact ties), plus a
    non-square full canvas and a thin ring."""
    full = np.ones((40, 60), dtype=bool)
    yy, xx = np.mgrid[:81, :81]
    disc = (yy - 40) ** 2 + (xx - 40) ** 2 <= 35**2
    ring = disc & ((yy - 40) ** 2 + (xx - 40) ** 2 >= 30**2)
    square = np.zeros((64, 64), dtype=bool)
    square[8:56, 8:56] = True
    return [full, disc, ring, square, np.ones((3, 300), dtype=bool)]


@pytest.mark.parametrize("seed", range(40))
def test_interior_points_equal_the_full_sort_on_random_masks(seed):
    """The interior points equal the previous implementation (every near-tie ordered by a per-point norm, a full
    stable sort; tests/core/id_inputs_reference.py) on random masks: holes, several components, border contact,
    1-pixel lines, non-square canvases; k from 128 down to 1."""
    from id_inputs_reference import reference_interior_points

    from core.instancediffusion.inputs import interior_points

    rng = np.random.default_rng(1000 + seed)
    h, w = CANVASES[seed % len(CANVASES)]
    m = random_mask(rng, h, w)
    for k in (128, 37, 1):
        assert interior_points(m, k, np.random.default_rng(seed)) == \
            reference_interior_points(m, k, np.random.default_rng(seed))


@pytest.mark.parametrize("index", range(5))
def test_interior_points_equal_the_full_sort_where_everything_ties(index):
    from id_inputs_reference import reference_interior_points

    from core.instancediffusion.inputs import interior_points

    m = _tie_heavy_masks()[index]
    for k in (128, 100, 3):
        assert interior_points(m, k, np.random.default_rng(0)) == \
            reference_interior_points(m, k, np.random.default_rng(0))


def test_masks_past_the_direct_limit_are_reduced_to_512_first():
    """A 16384 x 1024 mask (one RLE of ~200 bytes): its polygon, auto-scribble and segs are those of its 512 x 512
    nearest-neighbour reduction (the official evaluation path resizes masks to 512² first); its box comes from the
    mask itself. Preparing it allocates about the mask's own size, not gigabytes (it took 52 s and +2.3 GB)."""
    import tracemalloc

    from core.instancediffusion.inputs import MAX_DIRECT_MASK_PIXELS, working_mask

    m = np.zeros((16384, 1024), dtype=bool)
    m[100:16000, 3:1000] = True
    m[5000:6000, 200:300] = False  # a hole
    assert m.size > MAX_DIRECT_MASK_PIXELS
    small = working_mask(m)
    assert small.shape == (512, 512)
    assert np.array_equal(small, m[(np.arange(512) * 32 + 16)[:, None], (np.arange(512) * 2 + 1)[None, :]])
    tracemalloc.start()
    try:
        got = prepare_inputs([InstanceInput(E, mask=m)], 1024, 16384)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert peak_mb < 200, peak_mb  # the mask is 16 MB; the full-resolution path peaked past 2 GB
    ref = prepare_inputs([InstanceInput(E, mask=small, box=(3, 100, 1000, 16000))], 1024, 16384)
    for key in ("polygons", "scribbles", "segs", "points"):
        assert torch.equal(got[key], ref[key]), key
    assert torch.allclose(got["boxes"][0, 0], torch.tensor([3 / 1024, 100 / 16384, 1000 / 1024, 16000 / 16384]))
    # at the direct limit the mask is used as it is (bit-identical to before)
    edge = np.zeros((512, 512), dtype=bool)
    edge[10:900, 20:700] = True
    assert working_mask(edge) is edge
