"""Classical interpolation baselines: bicubic and Lanczos x4 through Pillow.

Pillow's resamplers are what the Real-ISR papers' "Bicubic" rows and OSEDiff's LR upscaling use
(bicubic a = -0.5, Lanczos-3). They run on 8-bit images: the LR input is exactly 8-bit, so
nothing is lost in the conversion.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from harness.imageio import from_tensor
from harness.methods.base import MethodCard, SRMethod


class _PillowResize(SRMethod):
    resample: Image.Resampling

    def output_signature(self, device, dtype):
        return {}  # Pillow on the CPU: the device and dtype do not change a bit

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        out = []
        for img in lr:
            h, w = img.shape[-2:]
            pil = Image.fromarray(from_tensor(img), mode="RGB")
            up = pil.resize((w * self.scale, h * self.scale), resample=self.resample)
            out.append(torch.from_numpy(np.asarray(up).transpose(2, 0, 1).copy()))
        return torch.stack(out).to(lr.device, torch.float32) / 255.0


class Bicubic(_PillowResize):
    card = MethodCard(
        family="classical",
        name="bicubic",
        display_name="Bicubic",
        paper="Keys, Cubic convolution interpolation for digital image processing, 1981",
        license="n/a",
        scale=4,
        notes="Pillow BICUBIC (a = -0.5) on 8-bit RGB.",
    )
    resample = Image.Resampling.BICUBIC


class Lanczos(_PillowResize):
    card = MethodCard(
        family="classical",
        name="lanczos",
        display_name="Lanczos",
        paper="Duchon, Lanczos filtering in one and two dimensions, 1979",
        license="n/a",
        scale=4,
        notes="Pillow LANCZOS (3 lobes) on 8-bit RGB.",
    )
    resample = Image.Resampling.LANCZOS
