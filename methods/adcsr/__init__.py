"""AdcSR: architecture (``arch``), weight conversion (``convert``) and the method adapter."""

from harness.methods.adcsr.adapter import AdcSR
from harness.methods.adcsr.arch import AdcSRConfig, AdcSRNet

__all__ = ["AdcSR", "AdcSRConfig", "AdcSRNet"]
