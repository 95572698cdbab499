"""RRDBNet, the generator of ESRGAN / Real-ESRGAN x4plus, written from its published structure.

Structure (Wang et al., ESRGAN 2018; Real-ESRGAN 2021), x4 only:

* ``conv_first``: 3x3 conv, ``in_ch`` -> ``feat``;
* ``body``: ``blocks`` RRDBs; each RRDB = three dense blocks ``rdb1..rdb3`` and a residual
  ``out * 0.2 + x``; each dense block = five 3x3 convs ``conv1..conv5``, conv k reading the block
  input concatenated with the k-1 previous outputs (``feat + (k-1) * grow`` channels), conv1-4
  giving ``grow`` channels followed by LeakyReLU(0.2), conv5 giving ``feat`` channels without
  activation, and the residual ``x5 * 0.2 + x``;
* ``conv_body`` on the trunk, added to ``conv_first``'s output (the trunk skip);
* two nearest-neighbour x2 upsamplings, each followed by a conv (``conv_up1``, ``conv_up2``) and
  LeakyReLU(0.2); ``conv_hr`` + LeakyReLU(0.2); ``conv_last`` to ``out_ch``.

Parameter and buffer names are the official checkpoint's (``body.N.rdbM.convK.weight``...), so
an official state dict loads with ``strict=True``. Input and output are RGB in [0, 1] (no
normalisation inside; the output is not clamped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2  # LeakyReLU negative slope everywhere
RESIDUAL = 0.2  # scale of the dense-block and RRDB residual branches


@dataclass(frozen=True)
class RRDBConfig:
    """Widths of an RRDBNet. ``paper()`` is RealESRGAN_x4plus (16,697,987 parameters)."""

    in_ch: int = 3
    out_ch: int = 3
    feat: int = 64
    blocks: int = 23
    grow: int = 32

    @classmethod
    def paper(cls) -> RRDBConfig:
        return cls()

    @classmethod
    def tiny(cls) -> RRDBConfig:
        """For tests: same topology, a few thousand parameters."""
        return cls(feat=8, blocks=2, grow=4)


def conv_shapes(cfg: RRDBConfig) -> list[tuple[str, int, int]]:
    """``(name, out_channels, in_channels)`` of every 3x3 conv in forward (= ncnn file) order."""
    shapes = [("conv_first", cfg.feat, cfg.in_ch)]
    for b in range(cfg.blocks):
        for r in (1, 2, 3):
            for k in range(1, 6):
                out = cfg.feat if k == 5 else cfg.grow
                shapes.append((f"body.{b}.rdb{r}.conv{k}", out, cfg.feat + (k - 1) * cfg.grow))
    shapes += [(n, cfg.feat, cfg.feat) for n in ("conv_body", "conv_up1", "conv_up2", "conv_hr")]
    shapes.append(("conv_last", cfg.out_ch, cfg.feat))
    return shapes


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class DenseBlock(nn.Module):
    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        for k in range(1, 6):
            self.add_module(f"conv{k}", _conv(feat + (k - 1) * grow, feat if k == 5 else grow))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), SLOPE))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL + x


class RRDB(nn.Module):
    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(feat, grow)
        self.rdb2 = DenseBlock(feat, grow)
        self.rdb3 = DenseBlock(feat, grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL + x


class RRDBNet(nn.Module):
    """``(N, in_ch, h, w)`` -> ``(N, out_ch, 4h, 4w)``; any h, w >= 1."""

    def __init__(self, cfg: RRDBConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RRDBConfig.paper()
        self.conv_first = _conv(cfg.in_ch, cfg.feat)
        self.body = nn.Sequential(*(RRDB(cfg.feat, cfg.grow) for _ in range(cfg.blocks)))
        self.conv_body = _conv(cfg.feat, cfg.feat)
        self.conv_up1 = _conv(cfg.feat, cfg.feat)
        self.conv_up2 = _conv(cfg.feat, cfg.feat)
        self.conv_hr = _conv(cfg.feat, cfg.feat)
        self.conv_last = _conv(cfg.feat, cfg.out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = F.leaky_relu(conv(feat), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))
