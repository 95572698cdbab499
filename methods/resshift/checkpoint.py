"""ResShift's official checkpoint files, for tests, equivalence checks and ``harness weights
fabricate`` (reading them is SinSR's :func:`~harness.methods.sinsr.checkpoint.read_state_dict`,
with ResShift's prefixes).

The released UNet files are EMA state dicts of the training script, whose model is wrapped in
DistributedDataParallel (keys ``module.*``) and, where ``train.compile`` was on, compiled first
(``module._orig_mod.*``); ResShift's loader accepts either, bare or under ``state_dict``. The
autoencoder is SinSR's ``autoencoder_vq_f4.pth`` (the same release file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from harness.methods.resshift.adapter import RELEASES
from harness.methods.sinsr.adapter import VQ_FILE

# the layouts written by default: the conference checkpoints predate compiling in training
PREFIXES = {"v1": "module.", "v2": "module.", "v3": "module._orig_mod."}


def save_official(
    folder: Path, release: str, unet_sd: Mapping[str, torch.Tensor],
    vq_sd: Mapping[str, torch.Tensor], prefix: str | None = None, container: bool = False,
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``resshift_realsrx4_s<steps>_<release>.pth`` (keys with ``prefix``, default
    :data:`PREFIXES`; under ``{"state_dict": ...}`` if ``container``) and
    ``autoencoder_vq_f4.pth`` (a plain state dict) into ``folder``."""
    from harness.checkpoints import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    prefix = PREFIXES[release] if prefix is None else prefix
    unet = {prefix + k: v.clone() for k, v in unet_sd.items()}
    paths = folder / RELEASES[release][0], folder / VQ_FILE
    objs = ({"state_dict": unet} if container else unet, {k: v.clone() for k, v in vq_sd.items()})
    for path, obj in zip(paths, objs):
        save_checkpoint(obj, path)
    return paths
