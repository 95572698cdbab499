"""SSIM equal to pyiqa's ``ssim`` (``test_y_channel=True``) within 1e-9, ~30x faster on a CPU.

pyiqa filters the five SSIM statistics with a float64 11x11 depthwise ``conv2d``, which has no
fast CPU kernel (~0.4 s for a 512x512 pair on 2 cores). pyiqa's window (``fspecial(11, 1.5)``,
rounded to float32) is a Gaussian, separable up to that float32 rounding: its singular values
fall from 0.188 to 1.6e-9, 6.9e-10, 6.0e-11 and below. Here the window is the sum of its leading
singular terms ``s_i * u_i v_i^T`` (those above 1e-10 of the first: three), and each term is two
1-D float64 correlations (``scipy.ndimage.correlate1d``, which releases the GIL, so images score
in parallel threads). The dropped terms change a score by < 1e-9 (measured on the DRealSR pairs:
5e-10; one term alone would cost 1e-7).

Conventions follow pyiqa exactly: inputs ``(N, 3, H, W)`` float in [0, 1]; Y of YCbCr
(``harness.metrics.fullref``) is scaled to [0, 255] and rounded (MATLAB's uint8 behaviour); the
'valid' part of the filtered statistics; constants C1 = (0.01*255)^2, C2 = (0.03*255)^2;
the contrast-structure term is clamped at 0; the mean of the SSIM map is the score.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import correlate1d

from harness.metrics.fullref import gaussian_window, y_channel

_WINDOW = gaussian_window(11, 1.5)  # float32-rounded, as pyiqa uses it
_SIZE = _WINDOW.shape[0]


def _separable_terms(window: np.ndarray, rel: float = 1e-10) -> list[tuple[np.ndarray, ...]]:
    """(vertical, horizontal) 1-D kernels whose outer products sum to ``window`` up to ``rel``."""
    u, s, vt = np.linalg.svd(window)
    keep = int((s > rel * s[0]).sum())
    return [(u[:, i] * s[i], vt[i].copy()) for i in range(keep)]


_TERMS = _separable_terms(_WINDOW)


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """'valid' correlation of the last two axes of ``x`` (float64) with the window."""
    half = _SIZE // 2
    out = None
    for vertical, horizontal in _TERMS:
        h = correlate1d(x, horizontal, axis=-1, mode="constant")[..., half:-half]
        v = correlate1d(h, vertical, axis=-2, mode="constant")[..., half:-half, :]
        out = v if out is None else out + v
    return out


def ssim_y(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image, shape ``(N,)`` float64, of RGB batches ``x`` (distorted) and ``y``."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < _SIZE:
        raise ValueError(f"SSIM needs images of at least {_SIZE}x{_SIZE}")
    a = y_channel(x.float().cpu(), 255)[:, 0].double().numpy()
    b = y_channel(y.float().cpu(), 255)[:, 0].double().numpy()
    mu1, mu2, xx, yy, xy = _filter_valid(np.stack([a, b, a * a, b * b, a * b], axis=1)).swapaxes(
        0, 1
    )
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    cs = np.maximum((2 * (xy - mu12) + c2) / ((xx - mu1_sq) + (yy - mu2_sq) + c2), 0.0)
    ssim_map = ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs
    return torch.from_numpy(ssim_map.mean(axis=(-2, -1)))
