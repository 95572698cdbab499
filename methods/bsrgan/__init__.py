"""BSRGAN (Zhang et al., ICCV 2021): the RRDBNet of ``methods/realesrgan`` with BSRGAN's weights,
read from the official file's key layout (``convert``) by the adapter."""

from harness.methods.bsrgan.adapter import BSRGAN

__all__ = ["BSRGAN"]
