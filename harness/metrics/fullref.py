"""PSNR and the Y channel exactly as pyiqa computes them, without importing pyiqa.

pyiqa imports its whole model zoo (timm, transformers...) on first import: seconds that dominate
a PSNR/SSIM-only evaluation. These functions repeat pyiqa's float32 operations in the same order,
so values are bitwise equal to ``pyiqa.create_metric("psnr", test_y_channel=True,
color_space="ycbcr")`` (tests hold them equal).

Conventions: inputs ``(N, 3, H, W)`` float32 RGB in [0, 1]. Y is ITU-R BT.601 (MATLAB
``rgb2ycbcr``): ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255`` in [16/255, 235/255],
then scaled to ``out_range``; with ``out_range >= 255`` it is rounded to integers (MATLAB's uint8
behaviour, used by SSIM). PSNR: data range 1, ``10 log10(1 / (MSE + 1e-8))`` dB on unrounded Y.

The numpy functions (``y_plane``, ``y_plane_rgb8``, ``psnr_planes``) give the same bits as the
torch ones: pyiqa's ``matmul`` with the 3x3 colour matrix computes each Y as
``(R*65.481 + G*128.553) + B*24.966`` in float32, products and sums rounded one at a time (no
fused multiply-add); the tests check all 2^24 8-bit colours.
"""

from __future__ import annotations

import numpy as np
import torch

_RGB_TO_YCBCR = torch.tensor(
    [[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]]
)
_YCBCR_BIAS = torch.tensor([16.0, 128.0, 128.0]).view(1, 3, 1, 1)
_Y_WEIGHTS = _RGB_TO_YCBCR[:, 0].numpy()  # float32, as pyiqa's matrix is
# Y's three products for each 8-bit level v (v/255 in float32, as ``to_tensor`` makes it)
_Y_TABLES = (np.arange(256, dtype=np.float32) / np.float32(255))[None, :] * _Y_WEIGHTS[:, None]


def y_channel(x: torch.Tensor, out_range: float = 1.0) -> torch.Tensor:
    """Y of YCbCr, shape ``(N, 1, H, W)``, scaled to ``[0, out_range]`` (rounded if >= 255)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB batches (N, 3, H, W), got {tuple(x.shape)}")
    ycc = torch.matmul(x.permute(0, 2, 3, 1), _RGB_TO_YCBCR.to(x)).permute(0, 3, 1, 2)
    y = ((ycc + _YCBCR_BIAS.to(x)) / 255.0)[:, [0]] * out_range
    return y.round() if out_range >= 255 else y


def _finish_y(acc: np.ndarray) -> np.ndarray:
    acc += np.float32(16.0)
    acc /= np.float32(255.0)
    return acc


def y_plane_rgb8(rgb: np.ndarray) -> np.ndarray:
    """Y in [16/255, 235/255], float32 ``(H, W)``, of a uint8 ``(H, W, 3)`` RGB image: bitwise
    ``y_channel(to_tensor(rgb))[0, 0]``, from three 256-entry tables (no float image needed)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    acc = _Y_TABLES[0][rgb[..., 0]]
    acc += _Y_TABLES[1][rgb[..., 1]]
    acc += _Y_TABLES[2][rgb[..., 2]]
    return _finish_y(acc)


def y_plane(x: np.ndarray) -> np.ndarray:
    """Y in [16/255, 235/255], float32 ``(H, W)``, of a float32 ``(3, H, W)`` RGB image in
    [0, 1]: bitwise ``y_channel(x[None])[0, 0]``."""
    x = np.asarray(x, dtype=np.float32)
    acc = x[0] * _Y_WEIGHTS[0]
    acc += x[1] * _Y_WEIGHTS[1]
    acc += x[2] * _Y_WEIGHTS[2]
    return _finish_y(acc)


def y_plane_255(y: np.ndarray) -> np.ndarray:
    """``y_plane`` scaled to [16, 235] and rounded half to even, as float64 (SSIM's input)."""
    return np.round(y * np.float32(255.0)).astype(np.float64)


def psnr_planes(ya: np.ndarray, yb: np.ndarray) -> float:
    """PSNR in dB of two float32 Y planes (``y_plane``): bitwise ``psnr_y`` of the images."""
    diff = torch.from_numpy(ya) - torch.from_numpy(yb)
    return float(10 * torch.log10(1.0 / (torch.mean(diff**2) + 1e-8)))


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
