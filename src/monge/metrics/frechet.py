"""The Fréchet distance between Gaussians fitted to two feature clouds (the metric behind FID).

``||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})`` (Dowson & Landau 1982). Which features to use
is the caller's choice: :mod:`monge.metrics.digits_classifier` applies it to a small offline
digits CNN, the way FID uses Inception features (Heusel et al. 2017).

References: D. C. Dowson, B. V. Landau, "The Fréchet distance between multivariate normal
distributions", J. Multivariate Anal. 12(3), 1982; M. Heusel et al., "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (FID).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import InputError


def frechet_distance(mu1: object, cov1: object, mu2: object, cov2: object) -> float:
    """Fréchet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (the squared W2).

    Method: ``||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^{1/2})`` (Dowson & Landau
    1982), with the matrix square root from ``scipy.linalg.sqrtm`` in float64, ``O(d^3)``. Tiny
    imaginary parts from round-off are dropped after checking they are below ``1e-3`` of the
    largest real entry; if they are not (or the root is not finite), ``1e-6 I`` is added to
    both covariances and the root recomputed, as for near-singular FID covariances
    (Heusel et al. 2017). Round-off negatives are clipped to 0.

    Args:
        mu1: mean ``[d]``; cov1: covariance ``[d, d]`` (symmetric PSD).
        mu2: mean ``[d]``; cov2: covariance ``[d, d]``.

    Returns:
        The Fréchet distance (a squared distance, as in FID).

    Raises:
        InputError: wrong shapes, NaN/Inf, or covariances whose product has no real root.

    Example:
        >>> frechet_distance([0.0], [[1.0]], [3.0], [[4.0]])  # 9 + 1 + 4 - 2*2
        10.0
    """
    arrays = []
    for value, name in ((mu1, "mu1"), (cov1, "cov1"), (mu2, "mu2"), (cov2, "cov2")):
        t = check_finite(as_tensor(value, name), name)
        arrays.append(t.detach().cpu().to(torch.float64).numpy())
    m1, c1, m2, c2 = arrays
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.ndim != 1 or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise InputError(f"mu1, cov1, mu2, cov2: expected shapes [d], [d, d], [d], [d, d]; got "
                         f"{m1.shape}, {c1.shape}, {m2.shape}, {c2.shape}")
    covmean = _sqrtm_real(c1 @ c2)
    if covmean is None:
        offset = 1e-6 * np.eye(d)
        covmean = _sqrtm_real((c1 + offset) @ (c2 + offset))
    if covmean is None:
        raise InputError("cov1, cov2: (cov1 @ cov2) has no real square root; are both "
                         "covariances symmetric positive semi-definite?")
    diff = m1 - m2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def _sqrtm_real(a: np.ndarray) -> np.ndarray | None:
    """Real part of ``sqrtm(a)``, or None if it is not finite or has a non-negligible
    imaginary part."""
    with warnings.catch_warnings():
        # scipy warns on singular input; the root is checked below instead.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(a)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        scale = max(1.0, float(np.abs(root.real).max()))
        if float(np.abs(root.imag).max()) > 1e-3 * scale:
            return None
        root = root.real
    return root


def feature_frechet_distance(features_x: object, features_y: object) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature
    clouds ``[N, d]`` and ``[M, d]`` (N, M ≥ 2)."""
    stats = []
    for value, name in ((features_x, "features_x"), (features_y, "features_y")):
        f = check_finite(as_tensor(value, name), name).detach().cpu().to(torch.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise InputError(f"{name}: expected features [N, d] with N >= 2, got shape "
                             f"{tuple(f.shape)}")
        arr = f.numpy()
        stats.append((arr.mean(0), np.cov(arr, rowvar=False).reshape(arr.shape[1], -1)))
    (m1, c1), (m2, c2) = stats
    return frechet_distance(m1, c1, m2, c2)


__all__ = ["feature_frechet_distance", "frechet_distance"]
