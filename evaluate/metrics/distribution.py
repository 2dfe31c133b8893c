"""FID and KID between the features of generated images and of a reference set (feature arrays given).

The feature extractor (Inception-v3 pool3, 2048-d, in pytorch-fid / clean-fid) is pluggable and comes with the
runner; these functions take the feature arrays [n, d].

- **FID** (Heusel et al., "GANs trained by a two time-scale update rule", NeurIPS 2017; formula as in pytorch-fid's
  ``calculate_frechet_distance`` and clean-fid's ``frechet_distance``): with means mu and covariances S (unbiased,
  ``np.cov(rowvar=False)``) of the two sets,
  FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the square root by ``scipy.linalg.sqrtm``. As those
  implementations do: when the root is not finite, ``eps`` (1e-6) is added to both diagonals and it is taken again;
  a complex root whose diagonal has an imaginary part above 1e-3 is an error, else its real part is used.
- **KID** (Binkowski et al., "Demystifying MMD GANs", ICLR 2018, Sec. 4 / App. D; clean-fid's ``kernel_distance``):
  the unbiased estimate of MMD^2 with the cubic polynomial kernel k(x, y) = (x . y / d + 1)^3,
  MMD^2_u = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j) - 2/m^2 sum_{i,j} k(x_i, y_j),
  averaged over ``num_subsets`` = 100 random subsets of m = min(n1, n2, ``max_subset_size`` = 1000) features of each
  set, drawn without replacement (per subset: first from the second set, then from the first, as clean-fid draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

MAX_FEATURES = 200_000  # rows per set
MAX_DIMS = 8192


def _features(x: np.ndarray, field: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{field} must be a numeric array [n, d], got shape {x.shape}")
    n, d = x.shape
    if n < min_rows or n > MAX_FEATURES or d < 1 or d > MAX_DIMS:
        raise ValueError(f"{field} is [{n}, {d}]; need {min_rows}..{MAX_FEATURES} rows and 1..{MAX_DIMS} dims")
    if not np.isfinite(x).all():
        raise ValueError(f"{field} holds a NaN or infinite value")
    return x.astype(np.float64)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu [d], sigma [d, d]) of features [n, d]: the mean and the unbiased covariance (n - 1)."""
    f = _features(features, "features")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:  # fmt: skip
    """The Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"means must be [d] and covariances [d, d] of one d; got {mu1.shape}, {s1.shape}, "
                         f"{mu2.shape}, {s2.shape}")  # fmt: skip
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the matrix square root has an imaginary component {np.abs(covmean.imag).max():.3g}; "
                             "the covariances are not positive semi-definite enough (too few features?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets [n1, d] and [n2, d]."""
    mu1, s1 = feature_statistics(features1)
    mu2, s2 = feature_statistics(features2)
    return frechet_distance(mu1, s1, mu2, s2)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel matrix (x . y / d + 1)^3 of x [m, d] and y [k, d] -> [m, k]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimate between x [m, d] and y [m, d] under :func:`polynomial_kernel` (m >= 2)."""
    m = x.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


@dataclass(frozen=True)
class KID:
    """KID: the mean of the per-subset MMD^2 estimates, their standard deviation and the estimates themselves."""

    mean: float
    std: float
    subsets: np.ndarray


def kid(features1: np.ndarray, features2: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000,
        rng: np.random.RandomState | np.random.Generator | int | None = 0) -> KID:  # fmt: skip
    """KID between feature sets [n1, d] and [n2, d] over random subsets (see the module docstring).

    ``rng``: a seed, a ``np.random.Generator`` or a ``np.random.RandomState`` (clean-fid draws with the global
    legacy generator, i.e. a RandomState). With m equal to both set sizes every subset is the whole set and the
    estimate does not depend on the draws.
    """
    f1, f2 = _features(features1, "features1"), _features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features1 has {f1.shape[1]} dims, features2 {f2.shape[1]}; both must have the same")
    if not (1 <= int(num_subsets) <= 10_000) or int(max_subset_size) < 2:
        raise ValueError(f"num_subsets must be 1..10000 and max_subset_size >= 2, got {num_subsets}, "
                         f"{max_subset_size}")  # fmt: skip
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.RandomState(rng)
    m = min(len(f1), len(f2), int(max_subset_size))
    vals = np.empty(int(num_subsets), dtype=np.float64)
    for s in range(int(num_subsets)):
        x = f2[rng.choice(len(f2), m, replace=False)]
        y = f1[rng.choice(len(f1), m, replace=False)]
        vals[s] = mmd2_unbiased(x, y)
    return KID(float(vals.mean()), float(vals.std()), vals)
