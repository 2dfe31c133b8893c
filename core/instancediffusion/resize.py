"""Mask resizing as the official InstanceDiffusion does it, without scikit-image.

The official ``inference.py`` builds each ``segs`` channel with
``skimage.transform.resize(mask.astype(np.float32), (512, 512, 1))``: default arguments, so bilinear interpolation
(order 1) on the "grid" convention, ``mode="reflect"`` (scipy's ``"mirror"``), and, when an axis shrinks, a Gaussian
anti-aliasing blur first (sigma ``(in/out - 1) / 2`` per shrinking axis, truncated at 4 sigma), then the result
clipped to the input's value range. A resized binary mask is therefore *not* binary.

:func:`resize_like_skimage` reproduces that float32 pipeline operation for operation (scipy's
``gaussian_filter1d`` symmetric-kernel accumulation in float64 with a float32 store per axis, then
``zoom(grid_mode=True)``'s coordinate mapping, boundary mirroring, spline weights and summation order), so the
result equals scikit-image's bit for bit (tests compare them).
"""

from __future__ import annotations

import numpy as np


def _mirror_index(i: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample symmetric ("mirror": x[-k] = x[k], x[n-1+k] = x[n-1-k]) extension of integer indices."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    i = np.mod(i, period)
    return np.where(i >= n, period - i, i)


def _gaussian_kernel(sigma: float) -> tuple[np.ndarray, int]:
    """scipy's order-0 Gaussian kernel (float64, sums to 1) and its radius int(4·sigma + 0.5)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    c2 = -0.5 / (sigma * sigma)
    phi = np.exp((c2 * x) * x, dtype=np.double)  # numpy Polynomial([0, 0, c2]) evaluates (c2·x)·x
    phi /= phi.sum()
    return phi, radius


def _gaussian_axis(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """One float32 pass of scipy.ndimage.gaussian_filter1d (mode "mirror") along ``axis``.

    scipy accumulates in float64 as ``x[0]·w[0]`` then ``+= (x[-k] + x[+k])·w[k]`` for k = radius..1 and stores the
    line as float32."""
    w, radius = _gaussian_kernel(sigma)
    x = np.moveaxis(a, axis, 0).astype(np.float64)
    n = x.shape[0]
    idx = np.arange(n)
    out = x * w[radius]
    for k in range(radius, 0, -1):
        lo = x[_mirror_index(idx - k, n)]
        hi = x[_mirror_index(idx + k, n)]
        out = out + (lo + hi) * w[radius - k]
    return np.moveaxis(out.astype(np.float32), 0, axis)


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices and their order-1 spline weights (scipy zoom, grid mode)."""
    zoom = n_in / n_out
    cc = np.arange(n_out, dtype=np.float64)
    cc = (cc + 0.5) * zoom - 0.5
    if n_in <= 1:
        cc = np.zeros_like(cc)
    else:  # map coordinates outside [0, n-1] by mirroring (scipy map_coordinate, mode mirror)
        period = 2 * n_in - 2
        neg = cc < 0
        c_neg = period * np.trunc(-cc / period) + cc
        c_neg = np.where(c_neg <= 1 - n_in, c_neg + period, -c_neg)
        high = cc > n_in - 1
        c_high = cc - period * np.trunc(cc / period)
        c_high = np.where(c_high >= n_in, period - c_high, c_high)
        cc = np.where(neg, c_neg, np.where(high, c_high, cc))
    start = np.floor(cc)
    frac = cc - start
    w0 = 1.0 - frac
    w1 = 1.0 - w0  # scipy: the last weight is 1 minus the others
    start = start.astype(np.int64)
    return _mirror_index(start, n_in), _mirror_index(start + 1, n_in), w0, w1


def resize_like_skimage(mask: np.ndarray, out_h: int = 512, out_w: int = 512) -> np.ndarray:
    """``skimage.transform.resize(mask.astype(np.float32)[..., None], (out_h, out_w, 1))[..., 0]`` in numpy.

    mask: [H, W] (bool / int / float; taken as float32). Returns [out_h, out_w] float32 in the input's value range.
    """
    img = np.asarray(mask).astype(np.float32)
    if img.ndim != 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"resize_like_skimage: expected a non-empty 2-D mask, got shape {img.shape}")
    h, w = img.shape
    if (h, w) == (out_h, out_w):
        return img.copy()
    filtered = img
    if out_h < h or out_w < w:  # anti-aliasing when any axis shrinks; axes with sigma 0 are skipped
        for axis, (n_in, n_out) in enumerate(((h, out_h), (w, out_w))):
            sigma = max(0.0, (n_in / n_out - 1.0) / 2.0)
            if sigma > 1e-15:
                filtered = _gaussian_axis(filtered, sigma, axis)
    r0, r1, wr0, wr1 = _axis_weights(h, out_h)
    c0, c1, wc0, wc1 = _axis_weights(w, out_w)
    x = filtered.astype(np.float64)
    t = np.zeros((out_h, out_w), dtype=np.float64)
    # scipy sums the 2x2 (x the size-1 channel axis) footprint with the last axis fastest, coeff·w_row·w_col
    for ri, wr in ((r0, wr0), (r1, wr1)):
        for ci, wc in ((c0, wc0), (c1, wc1)):
            t = t + (x[ri[:, None], ci[None, :]] * wr[:, None]) * wc[None, :]
    out = t.astype(np.float32)
    return np.clip(out, img.min(), img.max(), out=out)
