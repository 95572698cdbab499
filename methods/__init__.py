"""Method adapters. Register a new one with ``@METHODS.register(name)`` (see CONTRIBUTING.md)."""

from __future__ import annotations

from harness.methods.adcsr import AdcSR
from harness.methods.base import DTYPES, MethodCard, SRMethod, WeightFile
from harness.methods.bsrgan import BSRGAN
from harness.methods.classical import Bicubic, Lanczos
from harness.methods.femasr import FeMaSR
from harness.methods.osediff import OSEDiff
from harness.methods.realesrgan import RealESRGAN
from harness.methods.resshift import ResShift, ResShiftV3
from harness.methods.s3diff import S3Diff
from harness.methods.sinsr import SinSR
from harness.methods.swinir import SwinIRMethod
from harness.registry import Registry

METHODS: Registry[type[SRMethod]] = Registry("method")

_ALL = (
    *(Bicubic, Lanczos),  # classical
    *(RealESRGAN, BSRGAN, SwinIRMethod, FeMaSR),  # GAN-trained, one forward pass
    *(AdcSR, SinSR, ResShift, ResShiftV3, OSEDiff, S3Diff),  # diffusion-based
)
for _cls in _ALL:
    METHODS.register(_cls.card.name)(_cls)

__all__ = ["DTYPES", "METHODS", "MethodCard", "SRMethod", "WeightFile"]
