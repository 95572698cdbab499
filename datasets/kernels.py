"""Blur kernels of the Real-ESRGAN degradation model (Wang et al., ICCVW 2021), in numpy.

All kernels are square, odd-sized, float64 and sum to 1. Coordinates run from ``-(k//2)`` to
``k//2`` with the centre at the middle tap. They are rounded to float32 precision so that tiny
differences between platforms' ``exp``/Bessel routines cannot change any later pixel.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(size, dtype=np.float64) - (size // 2)
    xx, yy = np.meshgrid(ax, ax)
    return xx, yy


def _finish(k: np.ndarray) -> np.ndarray:
    k = k / k.sum()
    k = k.astype(np.float32).astype(np.float64)
    return k / k.sum()


def _mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """d^T S^-1 d on the grid for S = R diag(sx^2, sy^2) R^T, R the rotation by ``theta``."""
    c, s = math.cos(theta), math.sin(theta)
    xx, yy = _grid(size)
    # Rotate the grid into the kernel's principal axes instead of inverting S.
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    return _finish(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> np.ndarray:
    return _finish(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> np.ndarray:
    return _finish(1.0 / (1.0 + _mahalanobis_sq(size, sigma_x, sigma_y, theta) ** beta))


def sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """2-D circular low-pass (jinc) kernel with cut-off ``omega_c`` in radians per pixel."""
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * special.j1(omega_c * r) / (2 * math.pi * r)
    k[size // 2, size // 2] = omega_c**2 / (4 * math.pi)
    return _finish(k)


def pad_kernel(k: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a centred kernel to ``size`` x ``size``."""
    p = (size - k.shape[0]) // 2
    return np.pad(k, p) if p > 0 else k


def random_mixed_kernel(
    rng: np.random.Generator,
    size: int,
    types: tuple[str, ...],
    probs: tuple[float, ...],
    sigma: tuple[float, float],
    betag: tuple[float, float],
    betap: tuple[float, float],
) -> np.ndarray:
    """Draw one kernel type by ``probs``, then its parameters uniformly from the ranges.

    Isotropic kernels use one sigma and no rotation; anisotropic ones draw two sigmas and a
    rotation in [-pi, pi]. The generalized-Gaussian shape draws beta below or above 1 with equal
    probability, the plateau shape uniformly in ``betap``.
    """
    kind = types[int(rng.choice(len(types), p=np.asarray(probs) / np.sum(probs)))]
    sx = rng.uniform(*sigma)
    if kind.endswith("aniso"):
        sy = rng.uniform(*sigma)
        theta = rng.uniform(-math.pi, math.pi)
    else:
        sy, theta = sx, 0.0
    if kind.startswith("generalized"):
        lo, hi = betag
        beta = rng.uniform(lo, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, hi)
        return generalized_gaussian_kernel(size, sx, sy, theta, beta)
    if kind.startswith("plateau"):
        return plateau_kernel(size, sx, sy, theta, rng.uniform(*betap))
    return gaussian_kernel(size, sx, sy, theta)
