"""PSNR and the Y channel exactly as pyiqa computes them, without importing pyiqa.

pyiqa imports its whole model zoo (timm, transformers...) on first import: seconds that dominate
a PSNR/SSIM-only evaluation. These functions repeat pyiqa's float32 operations in the same order,
so values are bitwise equal to ``pyiqa.create_metric("psnr", test_y_channel=True,
color_space="ycbcr")`` (tests hold them equal).

Conventions: inputs ``(N, 3, H, W)`` float32 RGB in [0, 1]. Y is ITU-R BT.601 (MATLAB
``rgb2ycbcr``): ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255`` in [16/255, 235/255],
then scaled to ``out_range``; with ``out_range >= 255`` it is rounded to integers (MATLAB's uint8
behaviour, used by SSIM). PSNR: data range 1, ``10 log10(1 / (MSE + 1e-8))`` dB on unrounded Y.
"""

from __future__ import annotations

import numpy as np
import torch

_RGB_TO_YCBCR = torch.tensor(
    [[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]]
)
_YCBCR_BIAS = torch.tensor([16.0, 128.0, 128.0]).view(1, 3, 1, 1)


def y_channel(x: torch.Tensor, out_range: float = 1.0) -> torch.Tensor:
    """Y of YCbCr, shape ``(N, 1, H, W)``, scaled to ``[0, out_range]`` (rounded if >= 255)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB batches (N, 3, H, W), got {tuple(x.shape)}")
    ycc = torch.matmul(x.permute(0, 2, 3, 1), _RGB_TO_YCBCR.to(x)).permute(0, 3, 1, 2)
    y = ((ycc + _YCBCR_BIAS.to(x)) / 255.0)[:, [0]] * out_range
    return y.round() if out_range >= 255 else y


def psnr_y(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR per image, shape ``(N,)``, of RGB batches ``x`` (distorted) and ``y`` (reference)."""
    if x.shape != y.shape:
        raise ValueError(f"PSNR needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = torch.mean((y_channel(x.float()) - y_channel(y.float())) ** 2, dim=[1, 2, 3])
    return 10 * torch.log10(1.0 / (mse + 1e-8))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``, rounded to float32 as pyiqa keeps it."""
    m = (size - 1) / 2.0
    yy, xx = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return (h / h.sum()).astype(np.float32).astype(np.float64)
