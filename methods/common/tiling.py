"""Tiled inference for latent diffusion SR: latent tiling of the UNet and tiled VAE, following
the algorithms (and defaults) of the OSEDiff / StableSR family of official code.

Latent tiling (:func:`tiled_latent`): when ``h * w`` of the latent exceeds ``tile**2`` the
UNet runs on ``tile x tile`` windows that advance by ``tile - overlap``; the last window of a
row or column is aligned to the far edge. Window outputs are blended with a separable Gaussian
(variance 0.01 of the tile size squared; x centred at (tile-1)/2, y at tile/2 -- the official
weights, asymmetry included) and divided by the summed weights.

Tiled VAE (:class:`TiledVAE`): an image larger than ``tile + 2*pad`` is split into tiles padded
by ``pad`` pixels on each side (32 for the encoder, in pixels; 11 for the decoder, in latent
pixels). Every tile runs the encoder or decoder layer by layer; at each GroupNorm all tiles stop,
their per-group mean and (biased) variance are averaged, weighted by tile area, and every tile is
normalised with the shared statistics, so the result is close to running the whole image at once.
The attention of the mid block runs within each tile. Each tile's valid region (the padding
cropped away) is pasted into the output. Defaults (OSEDiff's test script): encoder tile 1024,
decoder tile 224.

Tensors are ``(N, C, H, W)``; every image of a batch gets its own GroupNorm statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LATENT_TILE = 96
LATENT_OVERLAP = 32
VAE_ENCODER_TILE = 1024
VAE_DECODER_TILE = 224
VAE_ENCODER_PAD = 32
VAE_DECODER_PAD = 11


# ----------------------------------------------------------------------------- latent tiling


def gaussian_weights(tile: int) -> torch.Tensor:
    """``(tile, tile)`` float64 blending weights, rows = y, columns = x."""
    var = 0.01

    def profile(mid: float) -> np.ndarray:
        i = np.arange(tile, dtype=np.float64)
        return np.exp(-((i - mid) ** 2) / (tile * tile) / (2 * var)) / np.sqrt(2 * np.pi * var)

    return torch.from_numpy(np.outer(profile(tile / 2), profile((tile - 1) / 2)))


def window_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: ``k * (tile - overlap)``, the last one at ``size - tile``."""
    n, end = 0, 0
    while end < size:
        end = max(n * (tile - overlap), 0) + tile
        n += 1
    return [k * (tile - overlap) for k in range(n - 1)] + [size - tile]


def tiled_latent(
    fn: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    tile: int = LATENT_TILE,
    overlap: int = LATENT_OVERLAP,
) -> torch.Tensor:
    """``fn(z)`` computed window by window when ``z`` is larger than ``tile**2`` latent pixels.

    ``fn`` maps ``(N, C, t, t)`` to ``(N, C', t, t)``. The blended result is float32 (as the
    official code accumulates it) unless ``fn`` runs on the whole latent at once.
    """
    n, _, h, w = z.shape
    if h * w <= tile * tile:
        return fn(z)
    tile = min(tile, h, w)
    weights = gaussian_weights(tile).to(z.device)
    out: torch.Tensor | None = None
    total = torch.zeros(h, w, dtype=torch.float64, device=z.device)
    for x0 in window_starts(w, tile, overlap):  # the official loop runs x outer, y inner
        for y0 in window_starts(h, tile, overlap):
            part = fn(z[:, :, y0 : y0 + tile, x0 : x0 + tile])
            if out is None:
                out = torch.zeros(n, part.shape[1], h, w, dtype=torch.float32, device=z.device)
            out[:, :, y0 : y0 + tile, x0 : x0 + tile] += part * weights
            total[y0 : y0 + tile, x0 : x0 + tile] += weights
    assert out is not None
    return out / total.float()


# ----------------------------------------------------------------------------- tiled VAE


def best_tile_size(lower: int, upper: int) -> int:
    """Round ``lower`` up to a multiple of 32, 16, ... 2 (the largest that stays <= ``upper``)."""
    divider = 32
    while divider >= 2:
        rem = lower % divider
        if rem == 0:
            return lower
        if lower - rem + divider <= upper:
            return lower - rem + divider
        divider //= 2
    return lower


@dataclass(frozen=True)
class Tile:
    inp: tuple[int, int, int, int]  # x1, x2, y1, y2 of the padded input window
    out: tuple[int, int, int, int]  # x1, x2, y1, y2 of its valid region in the output


def split_tiles(h: int, w: int, tile: int, pad: int, scale: float) -> list[Tile]:
    """Tiles of an ``h x w`` input; ``scale`` maps input to output coordinates (8 or 1/8)."""
    nh = max(math.ceil((h - 2 * pad) / tile), 1)
    nw = max(math.ceil((w - 2 * pad) / tile), 1)
    th = best_tile_size(math.ceil((h - 2 * pad) / nh), tile)
    tw = best_tile_size(math.ceil((w - 2 * pad) / nw), tile)

    def to_out(v: int) -> int:
        return v * int(scale) if scale >= 1 else v // round(1 / scale)

    tiles = []
    for i in range(nh):
        for j in range(nw):
            x1, x2 = pad + j * tw, min(pad + (j + 1) * tw, w)
            y1, y2 = pad + i * th, min(pad + (i + 1) * th, h)
            out = (x1 if x1 > pad else 0, x2 if x2 < w - pad else w,
                   y1 if y1 > pad else 0, y2 if y2 < h - pad else h)  # fmt: skip
            inp = (max(0, x1 - pad), min(w, x2 + pad), max(0, y1 - pad), min(h, y2 + pad))
            tiles.append(Tile(inp, tuple(to_out(v) for v in out)))  # type: ignore[arg-type]
    return tiles


# One step of the layer-by-layer program a tile runs: (kind, module or None).
#   "op": apply the module; "norm": GroupNorm with statistics shared by all tiles;
#   "save": push the module's output (a shortcut) for a later "add"; "add": pop and add it;
#   "attn": the attention core of a diffusers ``Attention`` (no norm, no residual).
Step = tuple[str, nn.Module | None]


def _resnet(block: nn.Module) -> list[Step]:
    shortcut = block.conv_shortcut if block.conv_shortcut is not None else nn.Identity()
    return [
        ("save", shortcut), ("norm", block.norm1), ("op", nn.SiLU()), ("op", block.conv1),
        ("norm", block.norm2), ("op", nn.SiLU()), ("op", block.conv2), ("add", None),
    ]  # fmt: skip


def _attention(attn: nn.Module) -> list[Step]:
    return [("save", nn.Identity()), ("norm", attn.group_norm), ("attn", attn), ("add", None)]


def _mid(mid: nn.Module) -> list[Step]:
    return _resnet(mid.resnets[0]) + _attention(mid.attentions[0]) + _resnet(mid.resnets[1])


def program(net: nn.Module, decoder: bool) -> list[Step]:
    """The layer sequence of a diffusers VAE ``Encoder`` or ``Decoder`` (no mid-block time
    embedding, no gradient checkpointing: inference only)."""
    steps: list[Step] = [("op", net.conv_in)]
    if decoder:
        steps += _mid(net.mid_block)
    for block in net.up_blocks if decoder else net.down_blocks:
        for r in block.resnets:
            steps += _resnet(r)
        sampler = block.upsamplers if decoder else block.downsamplers
        if sampler is not None:
            steps.append(("op", sampler[0]))
    if not decoder:
        steps += _mid(net.mid_block)
    return steps + [("norm", net.conv_norm_out), ("op", nn.SiLU()), ("op", net.conv_out)]


def attention_core(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Self-attention of a spatial map through ``attn``'s projections, without its GroupNorm
    and residual (the tiled VAE applies those itself)."""
    n, c, h, w = x.shape
    seq = x.reshape(n, c, h * w).transpose(1, 2)
    q, k, v = attn.to_q(seq), attn.to_k(seq), attn.to_v(seq)
    heads = attn.heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, -1, heads, t.shape[-1] // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    out = out.transpose(1, 2).reshape(n, h * w, -1)
    out = attn.to_out[1](attn.to_out[0](out))
    return out.transpose(1, 2).reshape(n, c, h, w)


def _group_stats(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (image, group) biased variance and mean, in float32."""
    n = x.shape[0]
    var, mean = torch.var_mean(x.float().reshape(n, groups, -1), dim=2, unbiased=False)
    return var, mean


def _apply_norm(x, norm: nn.GroupNorm, var: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    n, c = x.shape[:2]
    g = norm.num_groups
    y = (x.float().reshape(n, g, -1) - mean[..., None]) / torch.sqrt(var[..., None] + norm.eps)
    y = y.reshape(x.shape)
    if norm.weight is not None:
        y = y * norm.weight.float().view(1, c, 1, 1) + norm.bias.float().view(1, c, 1, 1)
    return y.to(x.dtype)


class TiledVAE:
    """Run a VAE encoder or decoder tile by tile (see the module docstring).

    ``offload`` keeps the waiting tiles and shortcuts on the CPU between GroupNorms, as the
    official code does, so GPU memory holds one tile's activations at a time.
    """

    def __init__(self, net: nn.Module, decoder: bool, tile: int, pad: int, offload: bool = True):
        self.net, self.decoder, self.tile, self.pad, self.offload = net, decoder, tile, pad, offload

    def needs_tiling(self, x: torch.Tensor) -> bool:
        return max(x.shape[-2:]) > self.tile + 2 * self.pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.needs_tiling(x):
            return self.net(x)
        return self._tiled(x)

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        park = torch.device("cpu") if self.offload else device
        n, _, h, w = x.shape
        scale = 8 if self.decoder else 1 / 8
        tiles = split_tiles(h, w, self.tile, self.pad, scale)
        states = [(x[:, :, t.inp[2] : t.inp[3], t.inp[0] : t.inp[1]].to(park), []) for t in tiles]
        steps = program(self.net, self.decoder)
        pos = 0
        while pos < len(steps):
            # run every tile up to the next GroupNorm (exclusive), collecting its statistics
            end = next((i for i in range(pos, len(steps)) if steps[i][0] == "norm"), len(steps))
            stats = []
            for i, (tile, saved) in enumerate(states):
                tile = tile.to(device)
                saved = [s.to(device) for s in saved]
                for kind, mod in steps[pos:end]:
                    tile = self._step(kind, mod, tile, saved)
                if end < len(steps):
                    var, mean = _group_stats(tile, steps[end][1].num_groups)
                    stats.append((var, mean, tile[0, 0].numel()))
                states[i] = (tile.to(park), [s.to(park) for s in saved])
            if end == len(steps):
                break
            norm = steps[end][1]
            areas = torch.tensor([a for _, _, a in stats], dtype=torch.float32, device=device)
            share = (areas / areas.max()) / (areas / areas.max()).sum()
            var = sum(s[0].to(device) * share[i] for i, s in enumerate(stats))
            mean = sum(s[1].to(device) * share[i] for i, s in enumerate(stats))
            states = [
                (_apply_norm(t.to(device), norm, var, mean).to(park), saved) for t, saved in states
            ]
            pos = end + 1
        out: torch.Tensor | None = None
        factor = 8 if self.decoder else 1
        for t, (tile, _) in zip(tiles, states):
            tile = tile.to(device)
            if out is None:
                oh, ow = (h * 8, w * 8) if self.decoder else (h // 8, w // 8)
                out = torch.zeros(n, tile.shape[1], oh, ow, dtype=torch.float32, device=device)
            # the tile's own window in output coordinates, then the valid part of it
            px1, px2, py1, py2 = (
                (v * factor if self.decoder else v // 8) for v in t.inp
            )  # fmt: skip
            ox1, ox2, oy1, oy2 = t.out
            crop = tile[:, :, oy1 - py1 : tile.shape[2] + (oy2 - py2),
                        ox1 - px1 : tile.shape[3] + (ox2 - px2)]  # fmt: skip
            out[:, :, oy1:oy2, ox1:ox2] = crop
        assert out is not None
        return out

    @staticmethod
    def _step(kind: str, mod, tile: torch.Tensor, saved: list[torch.Tensor]) -> torch.Tensor:
        if kind == "op":
            return mod(tile)
        if kind == "save":
            saved.append(mod(tile))
            return tile
        if kind == "add":
            return tile + saved.pop()
        if kind == "attn":
            return attention_core(mod, tile)
        raise ValueError(kind)
