"""BSRGAN's checkpoint key layout <-> the harness RRDBNet's (Real-ESRGAN's) layout.

The official ``BSRGAN.pth`` is a plain state dict of the ESRGAN-era RRDBNet
(``models/network_rrdbnet.py`` of cszn/BSRGAN): the same convolutions as Real-ESRGAN's network
under older names. Renaming is the whole conversion; no tensor changes:

=======================================  ===========================
official (BSRGAN, ESRGAN)                harness (Real-ESRGAN)
=======================================  ===========================
``conv_first``                           ``conv_first``
``RRDB_trunk.<i>.RDB<r>.conv<k>``        ``body.<i>.rdb<r>.conv<k>``
``trunk_conv``                           ``conv_body``
``upconv1`` / ``upconv2``                ``conv_up1`` / ``conv_up2``
``HRconv``                               ``conv_hr``
``conv_last``                            ``conv_last``
=======================================  ===========================
"""

from __future__ import annotations

import re

import torch

_RENAMES = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2",
            "HRconv": "conv_hr"}  # fmt: skip
_TRUNK = re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.")


def is_official_layout(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` carries BSRGAN's names (``RRDB_trunk.*``) rather than Real-ESRGAN's."""
    return any(k.startswith("RRDB_trunk.") for k in sd)


def to_harness(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names -> harness names. Keys that match no rule are kept as they are, so that a
    wrong file fails the strict load with its own key in the message."""
    out = {}
    for key, value in sd.items():
        key = _TRUNK.sub(lambda m: f"body.{m.group(1)}.rdb{m.group(2)}.", key)
        head, _, rest = key.partition(".")
        out[f"{_RENAMES.get(head, head)}.{rest}" if rest else key] = value
    return out


def to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Harness names -> official names (fabricated test checkpoints in the release's layout)."""
    back = {v: k for k, v in _RENAMES.items()}
    out = {}
    for key, value in sd.items():
        key = re.sub(r"^body\.(\d+)\.rdb([123])\.", r"RRDB_trunk.\1.RDB\2.", key)
        head, _, rest = key.partition(".")
        out[f"{back.get(head, head)}.{rest}" if rest else key] = value
    return out
