"""OSEDiff (NeurIPS 2024): the ``osediff`` method (``adapter.py``), its network built with
diffusers / transformers / peft (``arch.py``) and its weight files (``weights.py``)."""

from harness.methods.osediff.adapter import OSEDiff

__all__ = ["OSEDiff"]
