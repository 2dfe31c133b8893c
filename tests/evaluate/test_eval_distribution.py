"""FID and KID against closed forms and an independent per-pair computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evaluate.metrics.distribution import feature_statistics, fid, frechet_distance, kid, mmd2_unbiased


def exact_sample(mu: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n features whose sample mean is exactly mu and unbiased sample covariance exactly cov."""
    d = len(mu)
    z = np.random.default_rng(seed).normal(size=(n, d))
    z -= z.mean(axis=0)
    q, _ = np.linalg.qr(z)  # orthonormal, zero-mean columns
    return mu + q * np.sqrt(n - 1) @ np.linalg.cholesky(cov).T


def test_feature_statistics_and_identical_sets():
    f = np.random.default_rng(1).normal(size=(300, 6))
    mu, s = feature_statistics(f)
    assert np.allclose(mu, f.mean(0)) and np.allclose(s, np.cov(f.T))
    assert fid(f, f) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_closed_forms():
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expect = 1.0 + 4.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expect)
    # commuting covariances sharing a rotation R: the eigenvalues play the role of a and b
    r = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    s1, s2 = r @ np.diag(a) @ r.T, r @ np.diag(b) @ r.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 with s the standard deviations
    assert frechet_distance([3.0], [[4.0]], [1.0], [[0.25]]) == pytest.approx(4.0 + 1.5**2)


def test_fid_of_two_gaussian_samples_with_known_moments():
    mu1, mu2 = np.array([0.0, 0.0]), np.array([2.0, -1.0])
    c1, c2 = np.array([[2.0, 0.0], [0.0, 0.5]]), np.array([[0.5, 0.0], [0.0, 2.0]])
    f1, f2 = exact_sample(mu1, c1, 400, 3), exact_sample(mu2, c2, 250, 4)
    expect = 5.0 + (np.sqrt(2) - np.sqrt(0.5)) ** 2 * 2
    assert fid(f1, f2) == pytest.approx(expect, rel=1e-9)


def test_fid_of_singular_covariances_is_finite():
    # fewer samples than dimensions: singular covariances; the result stays finite and >= 0
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) + 1
    v = fid(f1, f2)
    assert np.isfinite(v) and v > 0


def brute_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, one pair at a time."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_equals_the_per_pair_formula():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(brute_mmd2(x, y), rel=1e-12)
    # subsets as large as both sets: every subset is a permutation of the whole set
    r = kid(x, y, num_subsets=3, max_subset_size=1000)
    assert r.subsets == pytest.approx([brute_mmd2(x, y)] * 3, rel=1e-12) and r.std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_draw_from_the_second_set_first():
    rng = np.random.default_rng(7)
    f1, f2 = rng.normal(size=(30, 4)), rng.normal(size=(20, 4)) + 0.5
    r = kid(f1, f2, num_subsets=4, max_subset_size=8, rng=np.random.RandomState(11))
    draw = np.random.RandomState(11)
    expect = []
    for _ in range(4):
        xs = f2[draw.choice(20, 8, replace=False)]
        ys = f1[draw.choice(30, 8, replace=False)]
        expect.append(brute_mmd2(xs, ys))
    assert r.subsets == pytest.approx(expect, rel=1e-12) and r.mean == pytest.approx(np.mean(expect), rel=1e-12)
    assert kid(f1, f2, 4, 8, rng=11).mean == r.mean  # a seed means a RandomState of that seed


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kid(a, b, num_subsets=20, max_subset_size=100)
    assert abs(same.mean) < 3 * same.std / np.sqrt(20) + 1e-3
    assert kid(a, b + 1.0, num_subsets=20, max_subset_size=100).mean > 10 * abs(same.mean)


def test_refusals_name_the_field():
    with pytest.raises(ValueError, match="features1 has 3 dims, features2 4"):
        kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="features must be a numeric array"):
        fid(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fid(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="need 2"):
        fid(np.zeros((1, 2)), np.zeros((3, 2)))
