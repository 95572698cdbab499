"""AdcSR checks shared by the adapter and training tests: the SR images a ``harness run`` cached
are the network's forward on their LR images, post-processed as the official ``test.py`` does."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.imageio import read_rgb, to_tensor

# A tiny copy of SD2.1-base's UNet (the teacher): 0.75 of it is AdcSRConfig.tiny()'s widths.
TINY_TEACHER = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(32, 64, 64, 64), attention_head_dim=(2, 2, 4, 4),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=32, use_linear_projection=True,
)  # fmt: skip
# The official net's aliased UNet blocks, in `module.body.1.body.<position>` order.
BODY = [f"down_blocks.{i}" for i in range(4)] + ["mid_block"]
BODY += [f"up_blocks.{i}" for i in range(4)] + ["conv_norm_out", None, "conv_out"]


def official_sr_levels(net: torch.nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """8-bit levels (as floats) of the official inference on ``lr`` in [0, 1] (sides multiples
    of 16): forward on [-1, 1], each channel's mean and unbiased std matched to the LR's, then
    truncated to 8 bits like ``ToPILImage``."""
    x = lr * 2 - 1
    with torch.no_grad():
        y = net(x)
    y = (y - y.mean((2, 3), keepdim=True)) / y.std((2, 3), keepdim=True)
    y = y * x.std((2, 3), keepdim=True) + x.mean((2, 3), keepdim=True)
    return torch.floor((y / 2 + 0.5).clamp(0, 1) * 255)


def check_cached_sr(run: Path, dataset: str, lr_dir: Path, net: torch.nn.Module) -> int:
    """Compare every cached SR PNG of ``adcsr`` on ``dataset`` (the folder the run's manifest
    names) with :func:`official_sr_levels` of its LR image; returns the number compared.
    Tolerance: one 8-bit level where a value sits on a truncation boundary, on under 1% of
    the values."""
    manifest = json.loads((run / "manifest.json").read_text())
    folder = Path(manifest["methods"]["adcsr"]["sr_cache"][dataset])
    pngs = sorted(folder.glob("*.png"))
    assert pngs, folder
    for png in pngs:
        lr = to_tensor(read_rgb(lr_dir / png.name))
        want = official_sr_levels(net.eval(), lr)
        got = to_tensor(read_rgb(png)) * 255
        assert got.shape == want.shape, png.name
        diff = (got - want).abs()
        assert diff.max() <= 1.0 + 1e-3, (png.name, float(diff.max()))
        assert diff.gt(0.5).float().mean() < 0.01, png.name
    return len(pngs)
