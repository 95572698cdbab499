"""SinSR's official checkpoint files onto :class:`~harness.methods.sinsr.arch.SinSRNet`.

Files (read through :func:`harness.checkpoints.load_tensors`, so no pickled code runs):

* ``SinSR_v1.pth``: the Swin-UNet, a state dict or ``{"state_dict": ...}``; keys may carry the
  ``module.`` prefix of DataParallel (the official loader strips it).
* ``autoencoder_vq_f4.pth``: the VQ-f4 autoencoder. SinSR's code downloads it from ResShift's
  v2.0 release, and SinSR issue #45 reports that this file no longer loads into SinSR's code:
  every key is reported missing. ResShift's own loader, rewritten in the same commit that moved
  its downloads to v2.0, looks every model key up with a ``_orig_mod.`` (``torch.compile``)
  and/or ``module.`` prefix when the file's first key has one, which SinSR's older loader does
  not. The harness applies that same mapping -- a prefix shared by *every* key is removed -- and
  then requires exactly the model's keys and shapes: anything else is an error that names the
  keys that differ (missing, unexpected, wrong shape), never a partial load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints import load_tensors, tensors_only
from harness.errors import HarnessError
from harness.methods.sinsr.arch import SinSRNet, SwinUNetConfig, VQConfig, WindowAttention

# Prefixes the official loaders remove (SinSR: module.; ResShift since v2.0: _orig_mod. too).
UNET_PREFIXES = ("module.",)
VQ_PREFIXES = ("module.", "_orig_mod.")


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return obj["state_dict"]  # the official loaders' only container
    return obj


def strip_prefixes(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> tuple[dict, list]:
    """Remove each prefix of ``prefixes`` that *every* key carries (repeatedly, any order);
    returns the new dict and the prefixes removed."""
    removed: list[str] = []
    changed = True
    while changed and sd:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                removed.append(p)
                changed = True
    return sd, removed


def _show(keys: list[str], limit: int = 4) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def layout_problems(sd: Mapping[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    """How ``sd`` differs from ``model``'s state dict: missing, unexpected, wrong-shape keys."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}"
        for k in want
        if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)
    ]
    out = []
    if missing:
        out.append(f"{len(missing)} missing ({_show(missing)})")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected ({_show(unexpected)})")
    if shapes:
        out.append(f"{len(shapes)} with another shape ({_show(shapes, 2)})")
    return out


def read_state_dict(
    path: Path, model: torch.nn.Module, prefixes: tuple[str, ...], what: str, who: str = "sinsr"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of ``path`` in ``model``'s key layout (official prefixes removed), checked
    key by key and shape by shape; raises ``HarnessError`` naming what differs."""
    sd = tensors_only(_unwrap(load_tensors(path)), str(path))
    sd, removed = strip_prefixes(sd, prefixes)
    problems = layout_problems(sd, model)
    if problems:
        arch = "; ".join(problems)
        raise HarnessError(f"{who}: {path} does not fit the {what} architecture: {arch}")
    return sd, removed


def random_weights(
    unet: SwinUNetConfig, vq: VQConfig, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random (UNet, VQ) state dicts in the official layouts, for tests, equivalence checks and
    ``harness weights fabricate``: PyTorch's default initialisation, GroupNorm affine and the Swin
    bias tables perturbed (so they matter), a unit-normal codebook. Outputs are meaningless but
    not degenerate (most pixels stay inside [-1, 1])."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SinSRNet(unet, vq)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.GroupNorm):
                    m.weight.copy_(1 + 0.1 * torch.randn_like(m.weight))
                    m.bias.copy_(0.1 * torch.randn_like(m.bias))
                elif isinstance(m, WindowAttention):
                    m.relative_position_bias_table.normal_(0, 0.02)
            net.vq.quantize.embedding.weight.normal_()
    return net.unet.state_dict(), net.vq.state_dict()


def save_official(
    folder: Path, unet_sd: Mapping[str, torch.Tensor], vq_sd: Mapping[str, torch.Tensor],
    unet_prefix: str = "module.", vq_prefix: str = "",
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``SinSR_v1.pth`` (``{"state_dict": ...}``, keys with ``unet_prefix``) and
    ``autoencoder_vq_f4.pth`` (a plain state dict, keys with ``vq_prefix``) into ``folder``."""
    from harness.checkpoints import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "SinSR_v1.pth", folder / "autoencoder_vq_f4.pth"
    objs = (
        {"state_dict": {unet_prefix + k: v.clone() for k, v in unet_sd.items()}},
        {vq_prefix + k: v.clone() for k, v in vq_sd.items()},
    )
    for path, obj in zip(paths, objs):
        save_checkpoint(obj, path)
    return paths
