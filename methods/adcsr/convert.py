"""Weights for the AdcSR network: structural compression of a teacher UNet, and the official
checkpoint layout.

``compress_unet`` is the paper's compression as a function: from a diffusers SD2.x UNet state
dict (pretrained or random) it removes the time embedding and every ``time_emb_proj``, removes
cross-attention (``attn2`` and its ``norm2``), and keeps the *first* ``ratio`` of the channels of
every conv, linear and norm tensor (no importance criterion). The input conv sees four stacked
copies of its 4-channel input before pruning (PixelUnshuffle feeds it 12 = 0.75 * 16 channels);
the output conv's rows are the teacher's repeated until the decoder's latent width.

``from_official`` maps the released files onto :class:`AdcSRNet`:
``net_params_200.pkl`` (DataParallel, ``module.body.0`` PixelUnshuffle, ``module.body.1`` the
UNet -- whose blocks appear twice, under their own names and again under ``body.<i>``, sharing
tensors -- and ``module.body.2`` the decoder mid block) and ``halfDecoder.ckpt`` (a Lightning
checkpoint whose ``state_dict`` has the pruned VAE under ``decoder.``/``encoder.``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from harness.errors import HarnessError

_DROP = re.compile(
    r"^(time_embedding|add_embedding|class_embedding|encoder_hid_proj)\."
    r"|\.time_emb_proj\.|\.attn2\.|transformer_blocks\.\d+\.norm2\."
)

# position in the official UNet's `body` Sequential -> module name (10 is the SiLU)
_BODY = {
    **{str(i): f"down_blocks.{i}" for i in range(4)},
    "4": "mid_block",
    **{str(5 + i): f"up_blocks.{i}" for i in range(4)},
    "9": "conv_norm_out",
    "11": "conv_out",
}


def _keep_first(t: torch.Tensor, ratio: float) -> torch.Tensor:
    dims = min(t.ndim, 2)  # out/in channels of convs and linears; the length of 1-D tensors
    index = tuple(slice(0, int(t.shape[d] * ratio)) for d in range(dims))
    return t[index].clone()


def compress_unet(
    teacher: Mapping[str, torch.Tensor], ratio: float = 0.75, latent_channels: int = 256
) -> dict[str, torch.Tensor]:
    """Student UNet state dict (keys as ``PrunedUNet``) sliced from a teacher UNet's."""
    out: dict[str, torch.Tensor] = {}
    for key, t in teacher.items():
        if _DROP.search(key):
            continue
        if key == "conv_in.weight":
            t = t.repeat(1, 4, 1, 1)
        elif key.startswith("conv_out."):
            reps = math.ceil(latent_channels / t.shape[0])
            t = t.repeat(reps, *([1] * (t.ndim - 1)))[:latent_channels]
            if t.ndim > 1:
                t = t[:, : int(t.shape[1] * ratio)]
            out[key] = t.clone()
            continue
        out[key] = _keep_first(t, ratio)
    return out


def _mid_key(key: str) -> str:
    """Official VAE mid-block names -> ours (the attention projections sit under ``attn``)."""
    return re.sub(r"^attentions\.0\.(to_q|to_k|to_v|to_out)", r"attentions.0.attn.\1", key)


def from_official(
    net: Mapping[str, torch.Tensor], half_decoder: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """State dict for :class:`AdcSRNet` from the two official files' state dicts.

    Aliased ``body.<i>`` copies must equal their named originals; anything unexpected is an
    error naming the key (a wrong file fails loudly instead of loading half a model).
    """
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, torch.Tensor] = {}
    for key, t in net.items():
        k = key.removeprefix("module.")
        if k.startswith("body.1.body."):
            pos, _, rest = k.removeprefix("body.1.body.").partition(".")
            if pos not in _BODY:
                raise HarnessError(f"AdcSR checkpoint: unexpected key {key}")
            aliases[f"unet.{_BODY[pos]}.{rest}"] = t
        elif k.startswith("body.1."):
            out["unet." + k.removeprefix("body.1.")] = t
        elif k.startswith("body.2."):
            out["mid." + _mid_key(k.removeprefix("body.2."))] = t
        else:
            raise HarnessError(f"AdcSR checkpoint: unexpected key {key}")
    for k, t in aliases.items():
        if k not in out or not torch.equal(out[k], t):
            raise HarnessError(f"AdcSR checkpoint: aliased tensor {k} differs from its original")
    tail = ("decoder.up_blocks.", "decoder.conv_norm_out.", "decoder.conv_out.")
    found = False
    for key, t in half_decoder.items():
        if key.startswith(tail):
            out[key] = t
            found = True
    if not found:
        raise HarnessError("halfDecoder checkpoint: no decoder.up_blocks.* keys")
    return out
