"""Real-ESRGAN second-order degradation (Wang et al., ICCVW 2021) in deterministic numpy.

Used twice: to make the embedded test set's LR images and, later, to make training pairs on the
fly. One call degrades one HR image with one ``numpy.random.Generator``; the same generator
state always gives the same LR image, on any machine: all arithmetic is float64 element-wise
or in scipy's plain C loops (no BLAS, no threads), kernels are rounded to float32 precision, and
JPEG goes through Pillow's integer libjpeg path.

Pipeline (images float64 in [0, 1], ``(H, W, 3)``):

1. blur with a random kernel (Gaussian / generalized / plateau, iso or aniso, or a sinc);
2. random resize (up / down / keep) with a random mode (area, bilinear, bicubic);
3. Gaussian or Poisson noise, colour or gray;
4. JPEG at a random quality;
5. the same four steps again with the second-stage parameters (blur only with ``blur_prob``);
6. in random order: [resize to HR/scale, sinc filter, JPEG] or [JPEG, resize, sinc filter];
7. clip to [0, 1] and quantise to 8 bits.

Resizes follow ``torch.nn.functional.interpolate`` with ``align_corners=False`` and no
anti-aliasing (the Real-ESRGAN implementation), written out here so that they are exact and
thread-free. The default parameters are the standard x4 values that AdcSR and OSEDiff train with
(FACTS.md section 6).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.datasets import kernels as K

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class StageParams:
    """Parameters of one degradation stage. Noise sigmas are in 8-bit units (0..255)."""

    kernel_sizes: tuple[int, ...]
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    betag: tuple[float, float] = (0.5, 2.0)
    betap: tuple[float, float] = (1.0, 1.5)
    blur_prob: float = 1.0
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.3, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 15.0)
    poisson_scale: tuple[float, float] = (0.05, 2.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[float, float] = (60.0, 95.0)


def _odd_sizes(largest: int) -> tuple[int, ...]:
    return tuple(range(7, largest + 1, 2))


@dataclass(frozen=True)
class DegradationParams:
    """The whole second-order model. Defaults: standard x4 values (FACTS.md section 6)."""

    scale: int = 4
    first: StageParams = field(default_factory=lambda: StageParams(kernel_sizes=_odd_sizes(21)))
    second: StageParams = field(
        default_factory=lambda: StageParams(
            kernel_sizes=_odd_sizes(11),
            blur_prob=0.5,
            blur_sigma=(0.2, 1.0),
            resize_probs=(0.3, 0.4, 0.3),
            resize_range=(0.6, 1.2),
            noise_sigma=(1.0, 12.0),
            poisson_scale=(0.05, 1.0),
            jpeg_quality=(60.0, 100.0),
        )
    )
    final_sinc_prob: float = 0.8
    final_kernel_sizes: tuple[int, ...] = _odd_sizes(21)


# ----------------------------------------------------------------------------- resampling


def _taps(n_in: int, n_out: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, shape (n_out, taps), for resizing one axis."""
    scale = n_in / n_out
    i = np.arange(n_out, dtype=np.float64)
    if mode == "area":  # adaptive average pooling
        start = np.floor(i * n_in / n_out).astype(np.int64)
        end = np.ceil((i + 1) * n_in / n_out).astype(np.int64)
        width = int((end - start).max())
        idx = start[:, None] + np.arange(width)[None, :]
        w = (idx < end[:, None]).astype(np.float64) / (end - start)[:, None]
        return np.minimum(idx, n_in - 1), w
    src = (i + 0.5) * scale - 0.5
    if mode == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        t = src - i0
        return np.stack([i0, i1], 1), np.stack([1.0 - t, t], 1)
    if mode == "bicubic":
        a = -0.75
        i0 = np.floor(src).astype(np.int64)
        t = src - i0

        def near(x):  # |x| <= 1
            return ((a + 2) * x - (a + 3)) * x * x + 1

        def far(x):  # 1 < |x| < 2
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

        w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
        idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
        return idx, w
    raise ValueError(f"unknown resize mode {mode!r}")


def _resize_axis(x: np.ndarray, n_out: int, axis: int, mode: str) -> np.ndarray:
    idx, w = _taps(x.shape[axis], n_out, mode)
    shape = [1] * x.ndim
    shape[axis] = n_out
    out = np.zeros(x.shape[:axis] + (n_out,) + x.shape[axis + 1 :], dtype=np.float64)
    for k in range(idx.shape[1]):  # fixed accumulation order: reproducible everywhere
        out += w[:, k].reshape(shape) * np.take(x, idx[:, k], axis=axis)
    return out


def resize(img: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize ``(H, W, C)`` float64 like torch ``interpolate(size=..., align_corners=False)``."""
    if img.shape[0] != height:
        img = _resize_axis(img, height, 0, mode)
    if img.shape[1] != width:
        img = _resize_axis(img, width, 1, mode)
    return img


# ----------------------------------------------------------------------------- operators


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel with ``kernel``; reflect padding (torch 'reflect', scipy 'mirror')."""
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[:, :, c] = ndimage.correlate(img[:, :, c], kernel, mode="mirror")
    return out


def add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, gray: bool):
    """Add N(0, (sigma/255)^2) noise; ``gray`` uses one noise field for all channels."""
    h, w, c = img.shape
    noise = rng.standard_normal((h, w, 1) if gray else (h, w, c)) * (sigma / 255.0)
    return img + noise


def add_poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, gray: bool):
    """Add signal-dependent Poisson noise scaled by ``scale`` (Real-ESRGAN's recipe)."""
    base = img
    if gray:
        base = (img @ np.array([0.299, 0.587, 0.114]))[:, :, None]
    base = np.clip(base, 0.0, 1.0)
    levels = len(np.unique(np.round(base * 255.0)))
    levels = 2 ** math.ceil(math.log2(levels))
    noise = rng.poisson(base * levels) / levels - base
    return img + noise * scale


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """Round-trip through Pillow's JPEG codec at integer ``quality`` (4:2:0, as DiffJPEG)."""
    q8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q8, mode="RGB").save(buf, format="JPEG", quality=int(round(quality)))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


# ----------------------------------------------------------------------------- pipeline


def _stage_kernel(rng: np.random.Generator, p: StageParams) -> np.ndarray:
    size = int(rng.choice(p.kernel_sizes))
    if rng.uniform() < p.sinc_prob:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return K.sinc_kernel(size, rng.uniform(lo, math.pi))
    return K.random_mixed_kernel(
        rng, size, K.KERNEL_TYPES, p.kernel_probs, p.blur_sigma, p.betag, p.betap
    )


def _random_resize(img, rng, p: StageParams, base_h: float, base_w: float) -> np.ndarray:
    """Resize to ``base * s`` with ``s`` drawn as up (>1), down (<1) or keep (1)."""
    choice = int(rng.choice(3, p=np.asarray(p.resize_probs) / np.sum(p.resize_probs)))
    if choice == 0:
        s = rng.uniform(1.0, p.resize_range[1])
    elif choice == 1:
        s = rng.uniform(p.resize_range[0], 1.0)
    else:
        s = 1.0
    mode = RESIZE_MODES[int(rng.integers(3))]
    return resize(img, max(1, int(base_h * s)), max(1, int(base_w * s)), mode)


def _random_noise(img, rng, p: StageParams) -> np.ndarray:
    gaussian = rng.uniform() < p.gaussian_noise_prob
    gray = rng.uniform() < p.gray_noise_prob
    if gaussian:
        out = add_gaussian_noise(img, rng, rng.uniform(*p.noise_sigma), gray)
    else:
        out = add_poisson_noise(img, rng, rng.uniform(*p.poisson_scale), gray)
    return np.clip(out, 0.0, 1.0)


def degrade(
    hr: np.ndarray, rng: np.random.Generator, params: DegradationParams | None = None
) -> np.ndarray:
    """Degrade one HR image to LR.

    Args:
        hr: uint8 ``(H, W, 3)`` RGB, or float in [0, 1]. ``H`` and ``W`` must be multiples of
            ``params.scale``.
        rng: the only source of randomness; seed it per image for order-independent results.
        params: the degradation model; defaults to the standard x4 values.

    Returns:
        float64 ``(H/scale, W/scale, 3)`` in [0, 1], quantised to multiples of 1/255.
    """
    p = params or DegradationParams()
    img = hr.astype(np.float64) / 255.0 if hr.dtype == np.uint8 else hr.astype(np.float64)
    h, w = img.shape[:2]
    if h % p.scale or w % p.scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of the scale {p.scale}")

    # first stage
    img = filter2d(img, _stage_kernel(rng, p.first))
    img = _random_resize(img, rng, p.first, h, w)
    img = _random_noise(img, rng, p.first)
    img = jpeg(img, rng.uniform(*p.first.jpeg_quality))

    # second stage: its resize factor applies to the LR size, as in Real-ESRGAN
    s2 = p.second
    if rng.uniform() < s2.blur_prob:
        img = filter2d(img, _stage_kernel(rng, s2))
    img = _random_resize(img, rng, s2, h / p.scale, w / p.scale)
    img = _random_noise(img, rng, s2)

    # final: resize to the LR size, sinc, JPEG -- in one of two random orders
    if rng.uniform() < p.final_sinc_prob:
        size = int(rng.choice(p.final_kernel_sizes))
        final_kernel = K.sinc_kernel(size, rng.uniform(math.pi / 3, math.pi))
    else:
        final_kernel = np.ones((1, 1))
    resize_first = rng.uniform() < 0.5
    mode_a = RESIZE_MODES[int(rng.integers(3))]
    quality = rng.uniform(*s2.jpeg_quality)
    lr_h, lr_w = h // p.scale, w // p.scale
    if resize_first:
        img = filter2d(resize(img, lr_h, lr_w, mode_a), final_kernel)
        img = jpeg(img, quality)
    else:
        img = jpeg(img, quality)
        img = filter2d(resize(img, lr_h, lr_w, mode_a), final_kernel)
    return np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0


def degrade_uint8(hr: np.ndarray, rng: np.random.Generator, params=None) -> np.ndarray:
    """:func:`degrade` returning a uint8 image (exact: the output is already 8-bit)."""
    return np.round(degrade(hr, rng, params) * 255.0).astype(np.uint8)
