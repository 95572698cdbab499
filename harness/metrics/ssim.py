"""SSIM equal to pyiqa's ``ssim`` (``test_y_channel=True``), about 10x faster on a CPU.

pyiqa filters the five SSIM statistics with a float64 11x11 depthwise ``conv2d``, which has no
fast CPU kernel (~0.5 s for a 512x512 pair on 2 cores). Here the same 'valid' correlation with
the same window (pyiqa's ``fspecial(11, 1.5)``, rounded to float32 as pyiqa does) is one small
float64 matrix product per statistic: the window's 11 rows are applied to 11 horizontally
shifted copies at once, then the 11 row results are summed with vertical shifts. Only the order
of float64 additions differs from pyiqa, so scores agree to ~1e-12 (tests check 1e-6 on real
pairs). A separable two-pass filter would be faster still, but pyiqa's float32 window is not
exactly separable and that costs up to 3e-7 in SSIM.

Conventions follow pyiqa exactly: inputs ``(N, 3, H, W)`` float in [0, 1]; Y of the chosen colour
space is scaled to [0, 255] and rounded (MATLAB's uint8 behaviour); constants
C1 = (0.01*255)^2, C2 = (0.03*255)^2; the contrast-structure term is clamped at 0; the mean of
the SSIM map is the score.
"""

from __future__ import annotations

import torch
from pyiqa.matlab_utils import fspecial
from pyiqa.utils.color_util import to_y_channel

_WINDOW = fspecial(11, 1.5, 1)[0, 0].double()  # float32-rounded, as pyiqa uses it
_SIZE = _WINDOW.shape[0]


def _filter_valid(x: torch.Tensor) -> torch.Tensor:
    """'valid' correlation of each ``(H, W)`` plane of ``x`` ``(M, H, W)`` with the window."""
    m, h, w = x.shape
    hv, wv = h - _SIZE + 1, w - _SIZE + 1
    out = torch.empty((m, hv, wv), dtype=torch.float64)
    for j in range(m):  # one plane at a time keeps the shifted stack small (~22 MB at 512^2)
        shifted = torch.stack([x[j, :, k : k + wv] for k in range(_SIZE)])  # (11, H, Wv)
        rows = (_WINDOW @ shifted.reshape(_SIZE, -1)).reshape(_SIZE, h, wv)
        acc = rows[0, :hv].clone()
        for i in range(1, _SIZE):
            acc += rows[i, i : i + hv]
        out[j] = acc
    return out


def ssim_y(x: torch.Tensor, y: torch.Tensor, color_space: str = "ycbcr") -> torch.Tensor:
    """SSIM per image, shape ``(N,)`` float64, of RGB batches ``x`` (distorted) and ``y``."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < _SIZE:
        raise ValueError(f"SSIM needs images of at least {_SIZE}x{_SIZE}")
    a = to_y_channel(x.float(), 255, color_space).double()
    b = to_y_channel(y.float(), 255, color_space).double()
    n = a.shape[0]
    planes = torch.cat([a, b, a * a, b * b, a * b], dim=1).reshape(n * 5, *a.shape[-2:])
    stats = _filter_valid(planes)
    mu1, mu2, xx, yy, xy = stats.reshape(n, 5, *stats.shape[-2:]).unbind(1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    cs = torch.relu((2 * (xy - mu12) + c2) / ((xx - mu1_sq) + (yy - mu2_sq) + c2))
    ssim_map = ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs
    return ssim_map.mean(dim=(-2, -1))
