"""FeMaSR x4 (the LQ-stage network of chaofengc/FeMaSR): architecture (``arch``, reusing
SwinIR's residual Swin groups) and the method adapter."""

from harness.methods.femasr.adapter import FeMaSR
from harness.methods.femasr.arch import FeMaSRConfig, FeMaSRNet

__all__ = ["FeMaSR", "FeMaSRConfig", "FeMaSRNet"]
