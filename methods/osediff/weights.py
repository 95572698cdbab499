"""OSEDiff's weight files: reading them into :class:`OSEDiffNet` and writing them (random weights
in the official layouts, for tests and the equivalence check).

Files (names as the harness stores them; the source layouts in brackets):

* ``osediff.pkl`` [the OSEDiff release, ``torch.save`` of a dict]: ``unet_lora_encoder_modules``,
  ``unet_lora_decoder_modules``, ``unet_lora_others_modules``, ``vae_lora_encoder_modules``
  (lists of module names), ``rank_unet``, ``rank_vae`` (ints), ``state_dict_unet`` (every UNet
  tensor whose name contains ``lora`` or ``conv_in``, peft names such as
  ``conv_in.base_layer.weight`` / ``...lora_A.default_encoder.weight``), ``state_dict_vae``
  (the VAE's ``lora`` tensors). Read with the restricted loader (no code runs).
* ``sd21base-unet.safetensors``, ``sd21base-vae.safetensors``, ``sd21base-text-encoder.safetensors``
  [SD2.1-base ``unet/diffusion_pytorch_model.safetensors``, ``vae/diffusion_pytorch_model.
  safetensors``, ``text_encoder/model.safetensors``].
* ``sd21base-vocab.json``, ``sd21base-merges.txt`` [SD2.1-base ``tokenizer/``].

AdcSR's training file of the same name (``{"vae": ..., "unet": ...}``: full SD state dicts with
OSEDiff's LoRA merged) is read too (:func:`load_merged`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints import load_tensors
from harness.errors import HarnessError
from harness.methods.common import sd
from harness.methods.osediff.arch import UNET_ADAPTERS, OSEDiffConfig, OSEDiffNet

SD_FILES = {  # role -> harness file name
    "unet": "sd21base-unet.safetensors",
    "vae": "sd21base-vae.safetensors",
    "text_encoder": "sd21base-text-encoder.safetensors",
    "vocab": "sd21base-vocab.json",
    "merges": "sd21base-merges.txt",
}
CHECKPOINT = "osediff.pkl"
_LISTS = {
    "default_encoder": "unet_lora_encoder_modules",
    "default_decoder": "unet_lora_decoder_modules",
    "default_others": "unet_lora_others_modules",
}
_KEYS = (*_LISTS.values(), "vae_lora_encoder_modules", "rank_unet", "rank_vae",
         "state_dict_unet", "state_dict_vae")  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """The content of an official ``osediff.pkl``, validated."""

    unet_targets: dict[str, list[str]]
    vae_targets: list[str]
    rank_unet: int
    rank_vae: int
    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]


def _tensors(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()
    ):
        raise HarnessError(f"{where}: not a dict of tensors")
    return dict(obj)


def read_checkpoint(path: Path) -> Checkpoint:
    """Parse ``osediff.pkl`` (restricted unpickling) and check its structure."""
    obj = load_tensors(path)
    if not isinstance(obj, Mapping):
        raise HarnessError(f"{path}: not an OSEDiff checkpoint (a dict was expected)")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        kind = " (AdcSR's merged {vae, unet} file?)" if {"vae", "unet"} <= set(obj) else ""
        raise HarnessError(f"{path}: not an OSEDiff checkpoint{kind}: no {', '.join(missing)}")
    lists = {}
    for key in (*_LISTS.values(), "vae_lora_encoder_modules"):
        v = obj[key]
        if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
            raise HarnessError(f"{path}: {key} is not a list of module names")
        lists[key] = list(v)
    for key in ("rank_unet", "rank_vae"):
        if not isinstance(obj[key], int) or obj[key] < 1:
            raise HarnessError(f"{path}: {key} is not a positive integer")
    return Checkpoint(
        unet_targets={a: lists[k] for a, k in _LISTS.items()},
        vae_targets=lists["vae_lora_encoder_modules"],
        rank_unet=obj["rank_unet"],
        rank_vae=obj["rank_vae"],
        unet=_tensors(obj["state_dict_unet"], f"{path} [state_dict_unet]"),
        vae=_tensors(obj["state_dict_vae"], f"{path} [state_dict_vae]"),
    )


def _check_targets(model: torch.nn.Module, names: list[str], where: str) -> None:
    known = {n for n, _ in model.named_modules()}
    unknown = sorted(set(names) - known)
    if unknown:
        raise HarnessError(
            f"{where}: {len(unknown)} LoRA target modules are not in the architecture "
            f"({', '.join(unknown[:4])}{', ...' if len(unknown) > 4 else ''})"
        )


def _load_selected(model, sd_part: Mapping[str, torch.Tensor], keep, where: str) -> None:
    """Copy ``sd_part`` into the tensors of ``model`` selected by ``keep(name)``, strictly."""
    own = {k: v for k, v in model.state_dict().items() if keep(k)}
    missing, unexpected = set(own) - set(sd_part), set(sd_part) - set(own)
    if missing or unexpected:
        raise HarnessError(f"{where}: keys do not fit: {sd.key_report(missing, unexpected)}")
    for k, v in sd_part.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise HarnessError(f"{where}: {k} has shape {tuple(v.shape)}, expected "
                               f"{tuple(own[k].shape)}")  # fmt: skip
    model.load_state_dict(dict(sd_part), strict=False)


def _base_key(k: str) -> str:
    return k.replace(".base_layer.", ".")


def load_sd_part(model: torch.nn.Module, kind: str, path: Path, skip=lambda k: False) -> None:
    """Load an SD component file into a (possibly LoRA-wrapped) ``model``: every non-LoRA tensor
    must be present (``skip`` excludes some, e.g. the UNet's ``conv_in`` from osediff.pkl)."""
    own = {_base_key(k): k for k in model.state_dict() if "lora_" not in k and not skip(k)}
    data = sd.normalise_keys(kind, load_tensors(path), own)
    missing, unexpected = set(own) - set(data), set(data) - set(own)
    unexpected = {k for k in unexpected if not skip(k)}
    if missing or unexpected:
        raise HarnessError(
            f"{path}: does not fit the {kind} architecture: {sd.key_report(missing, unexpected)}"
        )
    mine = model.state_dict()
    for base, k in own.items():
        if tuple(data[base].shape) != tuple(mine[k].shape):
            raise HarnessError(f"{path}: {base} has shape {tuple(data[base].shape)}, expected "
                               f"{tuple(mine[k].shape)}")  # fmt: skip
    model.load_state_dict({k: data[base] for base, k in own.items()}, strict=False)


def build(cfg: OSEDiffConfig, files: Mapping[str, Path]) -> OSEDiffNet:
    """OSEDiffNet with the official weights: ``files`` maps ``checkpoint`` and the SD roles of
    :data:`SD_FILES` to paths."""
    ck = read_checkpoint(files["checkpoint"])
    where = str(files["checkpoint"])
    net = OSEDiffNet(cfg, lora=False)
    for name in UNET_ADAPTERS:
        _check_targets(net.unet, ck.unet_targets[name], f"{where} [{_LISTS[name]}]")
    _check_targets(net.vae, ck.vae_targets, f"{where} [vae_lora_encoder_modules]")
    net.add_lora(ck.unet_targets, ck.vae_targets, (ck.rank_unet, ck.rank_vae))
    load_sd_part(net.unet, "unet", files["unet"], skip=lambda k: k.startswith("conv_in."))
    load_sd_part(net.vae, "vae", files["vae"])
    load_sd_part(net.text_encoder, "text_encoder", files["text_encoder"])
    _load_selected(net.unet, ck.unet, lambda k: "lora" in k or "conv_in" in k,
                   f"{where} [state_dict_unet]")  # fmt: skip
    _load_selected(net.vae, ck.vae, lambda k: "lora" in k, f"{where} [state_dict_vae]")
    return net.eval().requires_grad_(False)


def load_merged(cfg: OSEDiffConfig, path: Path, text_encoder: Path | None) -> OSEDiffNet:
    """AdcSR's ``osediff.pkl``: ``{"vae", "unet"}`` full state dicts with LoRA merged."""
    obj = load_tensors(path)
    if not isinstance(obj, Mapping) or not {"vae", "unet"} <= set(obj):
        raise HarnessError(f"{path}: expected a dict with 'vae' and 'unet' state dicts "
                           "(OSEDiff with LoRA merged)")  # fmt: skip
    net = OSEDiffNet(cfg, lora=False)
    vae = sd.normalise_keys("vae", _tensors(obj["vae"], f"{path} ['vae']"))
    sd.load_strict(net.vae, vae, f"{path} ['vae']")
    sd.load_strict(net.unet, _tensors(obj["unet"], f"{path} ['unet']"), f"{path} ['unet']")
    if text_encoder is not None:
        load_sd_part(net.text_encoder, "text_encoder", text_encoder)
    return net.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- writing


def randomize_lora(net: OSEDiffNet, generator: torch.Generator, std: float = 0.005) -> None:
    """Give every LoRA ``B`` matrix random values (peft initialises them to zero, which would
    leave the adapters without effect and untested)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def checkpoint_dict(net: OSEDiffNet) -> dict[str, Any]:
    """The official ``osediff.pkl`` content of ``net`` (module lists by the official rules)."""
    from harness.methods.osediff.arch import param_names, unet_lora_targets, vae_lora_targets

    unet_t = unet_lora_targets(param_names(net.unet))
    vae_t = vae_lora_targets(param_names(net.vae))
    return {
        "vae_lora_encoder_modules": vae_t,
        "unet_lora_encoder_modules": unet_t["default_encoder"],
        "unet_lora_decoder_modules": unet_t["default_decoder"],
        "unet_lora_others_modules": unet_t["default_others"],
        "rank_unet": 4,
        "rank_vae": 4,
        "state_dict_unet": {
            k: v.clone() for k, v in net.unet.state_dict().items() if "lora" in k or "conv_in" in k
        },  # fmt: skip
        "state_dict_vae": {k: v.clone() for k, v in net.vae.state_dict().items() if "lora" in k},
    }


def component_state(net: OSEDiffNet, kind: str) -> dict[str, torch.Tensor]:
    """SD2.1-base-style state dict of one component (no LoRA, diffusers/transformers names)."""
    module = {"unet": net.unet, "vae": net.vae, "text_encoder": net.text_encoder}[kind]
    out = {
        _base_key(k): v.detach().contiguous().clone()
        for k, v in module.state_dict().items()
        if "lora_" not in k
    }
    return sd.text_encoder_file_keys(out) if kind == "text_encoder" else out


def random_net(cfg: OSEDiffConfig, seed: int = 0, decoder_gain: float = 3.0) -> OSEDiffNet:
    """An OSEDiffNet with seeded random weights, every LoRA non-zero.

    ``decoder_gain`` scales the VAE decoder's last conv: a randomly initialised decoder gives
    images of a third to half a photograph's contrast, and the ``adain`` colour fix would then
    stretch every 8-bit rounding step (and every rounding difference) two- to threefold."""
    torch.manual_seed(seed)
    net = OSEDiffNet(cfg).eval().requires_grad_(False)
    randomize_lora(net, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        net.vae.decoder.conv_out.weight.mul_(decoder_gain)
        net.vae.decoder.conv_out.bias.mul_(decoder_gain)
    return net


def write_files(net: OSEDiffNet, paths: Mapping[str, Path], half: bool = False) -> None:
    """Write ``net`` as the official files: ``checkpoint`` (osediff.pkl) and the SD roles of
    :data:`SD_FILES` (``vocab``/``merges`` derived from CLIP's BPE table). ``half`` stores the
    SD components in fp16 (consumers upcast); osediff.pkl stays fp32 as released."""
    from safetensors.torch import save

    from harness.checkpoints import save_checkpoint
    from harness.imageio import write_bytes

    for kind in ("unet", "vae", "text_encoder"):
        if kind in paths:
            state = component_state(net, kind)
            if half:
                state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            write_bytes(paths[kind], save(state, metadata={"format": "pt"}))  # as HF writes
    if "checkpoint" in paths:
        save_checkpoint(checkpoint_dict(net), paths["checkpoint"])
    if "vocab" in paths or "merges" in paths:
        sd.write_clip_tokenizer_files(paths["vocab"], paths["merges"])
