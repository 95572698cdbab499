"""Tiling for large inputs, as S3Diff's inference runs it (same geometry, same arithmetic).

Two independent mechanisms, both off for the test sets' 128 -> 512 images:

* **Tiled VAE** (encoder in pixel space: tiles of 1024 px plus 32 px context; decoder in latent
  space: tiles of 224 latents plus 11 of context), used when the input's longer side exceeds
  ``tile + 2 * pad``. Each tile runs through the network's layers with its context; every
  GroupNorm uses statistics pooled over all tiles (each tile's mean and biased variance, weighted
  by its pixel count -- not the exact whole-image statistics), and the VAE mid-block attention
  attends within a tile. The valid part of each tile is pasted into the output.
* **Tiled latent** (the UNet with guidance): tiles of 96 latents overlapping by 32, blended with a
  fixed Gaussian window (variance 0.01 of the tile size squared, centred at (size-1)/2 across the
  width and size/2 down the height, as in the official code), used when the latent has more than
  96 * 96 positions.

All sizes are configurable (:class:`Tiling`), defaults are the official ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Tiling:
    """Tile sizes (official defaults); ``enabled=False`` always runs whole images."""

    latent_tile: int = 96
    latent_overlap: int = 32
    encoder_tile: int = 1024
    decoder_tile: int = 224
    enabled: bool = True


ENCODER_PAD, DECODER_PAD = 32, 11
GROUPS = 32


# ----------------------------------------------------------------------------- tiled latent


def gaussian_window(size: int, channels: int) -> torch.Tensor:
    """(1, channels, size, size) float64 blending weights of the official latent tiling."""
    var = 0.01
    mid_x, mid_y = (size - 1) / 2, size / 2
    norm = math.sqrt(2 * math.pi * var)
    xs = [
        math.exp(-(x - mid_x) * (x - mid_x) / (size * size) / (2 * var)) / norm for x in range(size)
    ]
    ys = [
        math.exp(-(y - mid_y) * (y - mid_y) / (size * size) / (2 * var)) / norm for y in range(size)
    ]
    w = torch.tensor(ys, dtype=torch.float64)[:, None] * torch.tensor(xs, dtype=torch.float64)[None]
    return w.expand(1, channels, size, size)


def latent_tiles(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the latent tiles, in the official visiting order."""
    step = tile - overlap
    n_x, cur = 0, 0
    while cur < w:
        cur = max(n_x * step, 0) + tile
        n_x += 1
    n_y, cur = 0, 0
    while cur < h:
        cur = max(n_y * step, 0) + tile
        n_y += 1
    out = []
    for i in range(n_x):
        for j in range(n_y):
            x = w - tile if i == n_x - 1 else max(i * step, 0)
            y = h - tile if j == n_y - 1 else max(j * step, 0)
            out.append((y, x))
    return out


def tiled_latent(
    fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, tiling: Tiling
) -> torch.Tensor:
    """``fn(z)``, or its Gaussian-blended tiles when the latent is larger than 96 * 96."""
    _, c, h, w = z.shape
    if not tiling.enabled or h * w <= tiling.latent_tile**2:
        return fn(z)
    tile = min(tiling.latent_tile, h, w)
    # the official loop never ends when the tile is not wider than the overlap
    overlap = tiling.latent_overlap if tile > tiling.latent_overlap else tile // 2
    weights = gaussian_window(tile, c).to(z.device)
    acc = torch.zeros(z.shape, device=z.device)  # float32, as the official accumulators
    contributors = torch.zeros(z.shape, device=z.device)
    for y, x in latent_tiles(h, w, tile, overlap):
        out = fn(z[:, :, y : y + tile, x : x + tile])
        acc[:, :, y : y + tile, x : x + tile] += out * weights
        contributors[:, :, y : y + tile, x : x + tile] += weights
    acc /= contributors
    return acc.to(z.dtype)


# ----------------------------------------------------------------------------- tiled VAE


def _best_tile(lower: int, upper: int) -> int:
    divider = 32
    while divider >= 2:
        rem = lower % divider
        if rem == 0:
            return lower
        candidate = lower - rem + divider
        if candidate <= upper:
            return candidate
        divider //= 2
    return lower


def split_tiles(
    h: int, w: int, tile: int, pad: int, is_decoder: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """Input boxes (with context) and output boxes ``[x1, x2, y1, y2]`` of the VAE tiles."""
    n_h = max(math.ceil((h - 2 * pad) / tile), 1)
    n_w = max(math.ceil((w - 2 * pad) / tile), 1)
    th = _best_tile(math.ceil((h - 2 * pad) / n_h), tile)
    tw = _best_tile(math.ceil((w - 2 * pad) / n_w), tile)
    ins, outs = [], []
    for i in range(n_h):
        for j in range(n_w):
            box = [
                pad + j * tw,
                min(pad + (j + 1) * tw, w),
                pad + i * th,
                min(pad + (i + 1) * th, h),
            ]
            out = [
                box[0] if box[0] > pad else 0,
                box[1] if box[1] < w - pad else w,
                box[2] if box[2] > pad else 0,
                box[3] if box[3] < h - pad else h,
            ]
            outs.append([v * 8 if is_decoder else v // 8 for v in out])
            ins.append(
                [
                    max(0, box[0] - pad),
                    min(w, box[1] + pad),
                    max(0, box[2] - pad),
                    min(h, box[3] + pad),
                ]
            )
    return ins, outs


def _resnet_ops(block: nn.Module) -> list[tuple[str, object]]:
    shortcut = block.conv_shortcut if block.in_channels != block.out_channels else None
    return [
        ("store", shortcut), ("norm", block.norm1), ("silu", None), ("call", block.conv1),
        ("norm", block.norm2), ("silu", None), ("call", block.conv2), ("add", None),
    ]  # fmt: skip


def _attn_ops(attn: nn.Module) -> list[tuple[str, object]]:
    return [("store", None), ("norm", attn.group_norm), ("attn", attn), ("add", None)]


def vae_program(net: nn.Module, is_decoder: bool) -> list[tuple[str, object]]:
    """The layer sequence of a diffusers VAE Encoder/Decoder, residuals made explicit."""
    ops: list[tuple[str, object]] = [("call", net.conv_in)]
    mid = net.mid_block
    mid_ops = (
        _resnet_ops(mid.resnets[0]) + _attn_ops(mid.attentions[0]) + _resnet_ops(mid.resnets[1])
    )
    if is_decoder:
        ops += mid_ops
        for i, up in enumerate(net.up_blocks):
            for r in up.resnets:
                ops += _resnet_ops(r)
            if i != len(net.up_blocks) - 1:
                ops.append(("call", up.upsamplers[0]))
    else:
        for i, down in enumerate(net.down_blocks):
            for r in down.resnets:
                ops += _resnet_ops(r)
            if i != len(net.down_blocks) - 1:
                ops.append(("call", down.downsamplers[0]))
        ops += mid_ops
    return ops + [("norm", net.conv_norm_out), ("silu", None), ("call", net.conv_out)]


def _attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The VAE mid-block attention without its norm and residual (the program holds them)."""
    b, c, h, w = x.shape
    hs = x.view(b, c, h * w).transpose(1, 2)
    q = attn.head_to_batch_dim(attn.to_q(hs))
    k = attn.head_to_batch_dim(attn.to_k(hs))
    v = attn.head_to_batch_dim(attn.to_v(hs))
    hs = attn.batch_to_head_dim(torch.bmm(attn.get_attention_scores(q, k, None), v))
    hs = attn.to_out[1](attn.to_out[0](hs))
    return hs.transpose(-1, -2).reshape(b, c, h, w)


def _var_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = x.shape[:2]
    g = x.contiguous().view(1, b * GROUPS, c // GROUPS, *x.shape[2:])
    var, mean = torch.var_mean(g, dim=[0, 2, 3, 4], unbiased=False)
    if var.dtype == torch.float16 and var.isinf().any():  # giant tiles overflow fp16
        var, mean = _var_mean(x.float())
    return var, mean


def _group_norm(x: torch.Tensor, mean, var, norm: nn.GroupNorm) -> torch.Tensor:
    b, c = x.shape[:2]
    g = x.contiguous().view(1, b * GROUPS, c // GROUPS, *x.shape[2:])
    out = F.batch_norm(g, mean, var, None, None, False, 0, 1e-6).view(b, c, *x.shape[2:])
    out *= norm.weight.view(1, -1, 1, 1)
    out += norm.bias.view(1, -1, 1, 1)
    return out


def tiled_vae(net: nn.Module, x: torch.Tensor, tile: int, pad: int, is_decoder: bool):
    """Run a VAE Encoder/Decoder over tiles with pooled GroupNorm statistics."""
    n, _, h, w = x.shape
    ins, outs = split_tiles(h, w, tile, pad, is_decoder)
    tiles = [x[:, :, b[2] : b[3], b[0] : b[1]] for b in ins]
    res: list[torch.Tensor | None] = [None] * len(tiles)
    n_norm = 0
    for kind, op in vae_program(net, is_decoder):
        if kind == "norm":
            # the official loop visits tiles forward, then backward, alternating per norm
            order = range(len(tiles)) if n_norm % 2 == 0 else range(len(tiles) - 1, -1, -1)
            stats = [_var_mean(tiles[i]) for i in order]
            pixels = torch.tensor([tiles[i].shape[2] * tiles[i].shape[3] for i in order],
                                  dtype=torch.float32, device=x.device)  # fmt: skip
            pixels = pixels / pixels.max()
            pixels = pixels.unsqueeze(1) / torch.sum(pixels)
            var = torch.sum(torch.vstack([s[0] for s in stats]) * pixels, dim=0)
            mean = torch.sum(torch.vstack([s[1] for s in stats]) * pixels, dim=0)
            tiles = [_group_norm(t, mean, var, op) for t in tiles]
            n_norm += 1
            continue
        for i, t in enumerate(tiles):
            if kind == "store":
                res[i] = op(t) if op is not None else t
            elif kind == "add":
                tiles[i] = t + res[i]
                res[i] = None
            elif kind == "silu":
                tiles[i] = F.silu(t)
            elif kind == "attn":
                tiles[i] = _attention(op, t)
            else:
                tiles[i] = op(t)
    scale = 8 if is_decoder else 1 / 8
    out = x.new_zeros((n, tiles[0].shape[1], int(h * scale), int(w * scale)))
    for t, box, target in zip(tiles, ins, outs):
        start = [v * 8 if is_decoder else v // 8 for v in box]
        m = [target[k] - start[k] for k in range(4)]
        out[:, :, target[2] : target[3], target[0] : target[1]] = t[
            :, :, m[2] : t.shape[2] + m[3], m[0] : t.shape[3] + m[1]
        ]
    return out


def vae_encoder_forward(encoder: nn.Module, x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    if not tiling.enabled or max(x.shape[-2:]) <= 2 * ENCODER_PAD + tiling.encoder_tile:
        return encoder(x)
    return tiled_vae(encoder, x, tiling.encoder_tile, ENCODER_PAD, is_decoder=False)


def vae_decoder_forward(decoder: nn.Module, z: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    if not tiling.enabled or max(z.shape[-2:]) <= 2 * DECODER_PAD + tiling.decoder_tile:
        return decoder(z)
    return tiled_vae(decoder, z, tiling.decoder_tile, DECODER_PAD, is_decoder=True)
