"""ResShift: its sampling chain (``net``) on SinSR's networks, and the adapters."""

from harness.methods.resshift.adapter import ResShift, ResShiftV3
from harness.methods.resshift.net import ResShiftNet, ResShiftSchedule

__all__ = ["ResShift", "ResShiftNet", "ResShiftSchedule", "ResShiftV3"]
