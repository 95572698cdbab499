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
:func:`official_objects` / :func:`write_official` are its inverse: an ``AdcSRNet`` state dict
written in the released layout (tests, ``harness weights fabricate``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


# ----------------------------------------------------------------------------- writing


def random_net(cfg, seed: int = 0):
    """An ``AdcSRNet`` with PyTorch's default initialisation drawn from ``seed`` (the global
    random state is left as it was)."""
    from harness.methods.adcsr.arch import AdcSRNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AdcSRNet(cfg).eval().requires_grad_(False)


def _unet_module(key: str) -> str:
    """The UNet child a key belongs to: ``down_blocks.1``, ``mid_block``, ``conv_out``..."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks") else parts[0]


# the released UNet's children in registration order (diffusers builds up_blocks before mid)
_UNET_ORDER = ("conv_in", "down_blocks", "up_blocks", "mid_block", "conv_norm_out", "conv_out")


def official_objects(
    sd: Mapping[str, torch.Tensor], seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(net_params, half_decoder)``: the objects of ``net_params_200.pkl`` and
    ``halfDecoder.ckpt`` that :func:`from_official` maps back onto exactly ``sd`` (an
    ``AdcSRNet`` state dict).

    ``net_params``: ``module.body.1.<unet key>``, every block again under
    ``module.body.1.body.<position>`` as *the same tensor object* (one storage in the file, as
    released), and ``module.body.2.<mid key>`` without our ``.attn.`` level. ``half_decoder``:
    a Lightning-style dict whose ``state_dict`` holds the whole pruned decoder under
    ``decoder.`` (what the official test.py loads strictly: ``conv_in`` and ``mid_block`` --
    the stage-1 mid block, which stage 2 then trained into the net's, so random values of its
    own from ``seed`` -- then the tail taken from ``sd``) and ``post_quant_conv``. The released
    file's other entries (the encoder, training state) are not reproduced: no loader reads them.
    """
    from torch import nn

    from harness.methods.adcsr.arch import DecoderMid

    position = {name: pos for pos, name in _BODY.items()}
    unet = {k.removeprefix("unet."): t for k, t in sd.items() if k.startswith("unet.")}
    rank = {name: i for i, name in enumerate(_UNET_ORDER)}
    net: dict[str, torch.Tensor] = {}
    for k in sorted(unet, key=lambda k: rank[k.split(".")[0]]):  # stable: block order kept
        net[f"module.body.1.{k}"] = unet[k]
    for k, t in unet.items():
        name = _unet_module(k)
        if name in position:
            net[f"module.body.1.body.{position[name]}.{k[len(name) + 1 :]}"] = t  # an alias
    for k, t in sd.items():
        if k.startswith("mid."):
            net["module.body.2." + k.removeprefix("mid.").replace(".attn.", ".", 1)] = t
    width = sd["mid.resnets.0.conv1.weight"].shape[0]
    eps = 1e-6
    with torch.random.fork_rng(devices=[]):  # stage-1 parts no inference reads
        torch.manual_seed(seed)
        conv_in, mid, post = (
            nn.Conv2d(4, width, 3, padding=1),
            DecoderMid(width, eps),
            nn.Conv2d(4, 4, 1),
        )
    dtype = sd["mid.resnets.0.conv1.weight"].dtype
    state: dict[str, torch.Tensor] = {}
    state.update({f"decoder.conv_in.{k}": t for k, t in conv_in.state_dict().items()})
    state.update({"decoder.mid_block." + k.replace(".attn.", ".", 1): t
                  for k, t in mid.state_dict().items()})  # fmt: skip
    state = {k: t.to(dtype) for k, t in state.items()}
    state.update({k: t for k, t in sd.items() if k.startswith("decoder.")})
    state.update({f"post_quant_conv.{k}": t.to(dtype) for k, t in post.state_dict().items()})
    half_decoder = {"epoch": 0, "global_step": 0, "state_dict": state}
    return net, half_decoder


def write_official(
    folder: str | Path, sd: Mapping[str, torch.Tensor], seed: int = 0, half: bool = False
) -> tuple[Path, Path]:
    """Write ``sd`` (an ``AdcSRNet`` state dict) as ``<folder>/net_params_200.pkl`` and
    ``<folder>/halfDecoder.ckpt`` (see :func:`official_objects`); ``half`` stores fp16 (the
    released files are fp32; loading upcasts). Returns the two paths."""
    from harness.checkpoints import save_checkpoint

    if half:
        sd = {k: t.half() if t.is_floating_point() else t for k, t in sd.items()}
    net, half_decoder = official_objects(sd, seed)
    folder = Path(folder)
    paths = folder / "net_params_200.pkl", folder / "halfDecoder.ckpt"
    for path, obj in zip(paths, (net, half_decoder)):
        save_checkpoint(obj, path)
    return paths
