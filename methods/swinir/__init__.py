"""SwinIR for real-world x4 SR (Real-SwinIR-M / -L GAN models): architecture (``arch``) and the
method adapter."""

from harness.methods.swinir.adapter import SwinIRMethod
from harness.methods.swinir.arch import SwinIR, SwinIRConfig

__all__ = ["SwinIR", "SwinIRConfig", "SwinIRMethod"]
