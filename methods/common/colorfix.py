"""Colour fixes applied after diffusion SR (StableSR's, used by OSEDiff and S3Diff).

Both functions take ``target`` (the SR output) and ``source`` (the LR upscaled to the same size),
float tensors ``(N, 3, H, W)`` in [0, 1], and return the corrected target, *not clamped* (callers
clamp, then quantise as their official code does). Each image of the batch is corrected with its
own statistics, so a batch gives the same result as one image at a time.

* ``adain``: per image and channel, the target's mean and standard deviation are replaced by the
  source's. Standard deviation = sqrt(unbiased variance + 1e-5), as in the official code.
* ``wavelet``: 5 levels of an a-trous (dilated) 3x3 binomial blur with replicate padding split
  each image into low and high frequencies; the result is the target's high frequencies plus
  the source's low frequencies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOR_FIXES = ("adain", "wavelet", "nofix")


def _mean_std(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]


def adain(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    t_mean, t_std = _mean_std(target)
    s_mean, s_std = _mean_std(source)
    return (target - t_mean) / t_std * s_std + s_mean


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device) / 4
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(x, kernel, groups=x.shape[1], dilation=dilation)


def _split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) frequencies: ``high + low == x`` up to rounding."""
    high = torch.zeros_like(x)
    for i in range(levels):
        low = _blur(x, 2**i)
        high = high + (x - low)
        x = low
    return high, x


def wavelet(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    return _split(target)[0] + _split(source)[1]


def color_fix(kind: str, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Dispatch on ``kind`` in :data:`COLOR_FIXES` (``nofix`` returns ``target``)."""
    if kind == "adain":
        return adain(target, source)
    if kind == "wavelet":
        return wavelet(target, source)
    if kind == "nofix":
        return target
    raise ValueError(f"colour fix {kind!r} is not one of {', '.join(COLOR_FIXES)}")
