"""SinSR: networks (``arch``), official checkpoint reading (``checkpoint``) and the adapter."""

from harness.methods.sinsr.adapter import SinSR
from harness.methods.sinsr.arch import SinSRNet, SwinUNetConfig, VQConfig

__all__ = ["SinSR", "SinSRNet", "SwinUNetConfig", "VQConfig"]
