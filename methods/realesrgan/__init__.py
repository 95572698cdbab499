"""Real-ESRGAN x4plus: architecture (``arch``), ncnn conversion (``ncnn``), the wheel's files
(``package``) and the method adapter."""

from harness.methods.realesrgan.adapter import RealESRGAN
from harness.methods.realesrgan.arch import RRDBConfig, RRDBNet

__all__ = ["RRDBConfig", "RRDBNet", "RealESRGAN"]
