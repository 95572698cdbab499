"""OSEDiff as a teacher for distillation (AdcSR's stage 2): the ``osediff`` method's network and
loaders, driven on training batches instead of through the PIL test pipeline.

Sources of weights, as AdcSR's official training reads them:

* ``weights_dir``: the OSEDiff release as the adapter reads it (``osediff.pkl`` with LoRA
  unmerged + SD2.1-base); the LoRA-free SD VAE encoder (for HR latents) is the same VAE with
  the adapters switched off, the "SD base" UNet is SD2.1-base's;
* ``merged``: AdcSR's ``osediff.pkl`` (``{"vae", "unet"}`` with LoRA merged); text encoder and
  tokenizer still come from ``weights_dir`` when given;
* neither: random weights of the configured architecture (smoke runs).

Prompts (``prompt``): ``dape`` tags each LR image (as AdcSR's training does: the tags alone,
not OSEDiff's test-time ``"{tags}, ,"`` string), ``empty`` encodes "", ``zeros`` is a zero
embedding, ``file:PATH`` a precomputed ``(77, D)`` embedding; ``auto`` is ``dape`` when the DAPE
package and its weight files are present, else ``zeros``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.methods.common import sd
from harness.methods.osediff.arch import OSEDiffConfig, OSEDiffNet
from harness.methods.osediff.weights import CHECKPOINT, SD_FILES, build, load_merged

PROMPTS = ("auto", "dape", "empty", "zeros", "file:PATH")


def _dape_files() -> dict[str, Path] | None:
    """The DAPE tagger's files when its package is installed and they are all present."""
    from harness.methods.osediff.adapter import dape_module
    from harness.weights.manager import path_of
    from harness.weights.manifest import load_manifest

    dape = dape_module()
    if dape is None:
        return None
    manifest = load_manifest()
    ids = dape.DapeTagger.weight_ids
    if not all(i in manifest for i in ids):
        return None
    files = {i: path_of(manifest[i]) for i in ids}
    return files if all(p.is_file() for p in files.values()) else None


class Teacher:
    """OSEDiffNet (tiling off, frozen) with its text side; see the module docstring."""

    def __init__(
        self,
        net: OSEDiffNet,
        tokenizer: Any,
        prompt: str,
        tagger: Any = None,
        fixed: torch.Tensor | None = None,
        base_unet: Mapping | None = None,
    ) -> None:
        self.net, self.tokenizer, self.prompt, self.tagger = net, tokenizer, prompt, tagger
        self.fixed = fixed
        self.base_unet = dict(base_unet) if base_unet is not None else net.base_unet_state()
        net.tiling.enabled = False
        net.eval().requires_grad_(False)  # frozen: outputs must not depend on grad flags

    def to(self, device: torch.device) -> Teacher:
        self.net.to(device)
        if self.fixed is not None:
            self.fixed = self.fixed.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.net.alpha.device

    def text(self, lr01: torch.Tensor) -> torch.Tensor:
        """``(N, 77, D)`` conditioning for a batch of LR images in [0, 1]."""
        n = lr01.shape[0]
        if self.fixed is not None:
            return self.fixed.expand(n, -1, -1)
        if self.prompt == "dape":
            prompts = list(self.tagger.tags(lr01))
        else:
            prompts = [""] * n
        ids = sd.tokenize(self.tokenizer, prompts).to(self.device)
        return self.net.encode_text(ids)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """OSEDiff's latent of an image in [-1, 1] (encoder LoRA on; mean; scaled)."""
        return self.net.encode(x)

    def sd_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The plain SD VAE's latent mean (unscaled) of an image in [-1, 1]: adapters off.

        Leaves the network as it found it, ``requires_grad`` flags included: peft's
        ``enable_adapters(True)`` marks the adapter weights trainable, and with a weight that
        requires grad ``torch.matmul`` takes another kernel path for the strided 3-D input of
        the encoder's attention LoRA, so :meth:`latent` would round differently before and
        after the first call here (a resumed run's first step would not match the straight
        run's)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.net.vae.modules() if isinstance(m, BaseTunerLayer)]
        flags = [(p, p.requires_grad) for p in self.net.vae.parameters()]
        for m in layers:
            m.enable_adapters(False)
        try:
            return self.net.encode(x) / sd.SCALING_FACTOR
        finally:
            for m in layers:
                m.enable_adapters(True)
            for p, flag in flags:
                p.requires_grad_(flag)

    def x0(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """One step at t=999 and the DDPM x0 (scaled latent, fp32)."""
        return self.net.x0(z, self.net.eps(z, text))


def build_teacher(
    cfg: OSEDiffConfig,
    weights_dir: str | None = None,
    merged: str | None = None,
    prompt: str = "auto",
    sd_unet: str | None = None,
) -> Teacher:
    """A :class:`Teacher` from the sources described in the module docstring."""
    if prompt not in ("auto", "dape", "empty", "zeros") and not prompt.startswith("file:"):
        raise HarnessError(f"teacher.prompt: '{prompt}' is not one of {', '.join(PROMPTS)}")
    folder = Path(weights_dir).expanduser() if weights_dir else None
    files = {"checkpoint": folder / CHECKPOINT} if folder else {}
    if folder:
        files |= {k: folder / v for k, v in SD_FILES.items()}
        missing = [str(p) for k, p in files.items() if not p.is_file()
                   and (merged is None or k in ("text_encoder", "vocab", "merges"))]  # fmt: skip
        if missing:
            raise HarnessError(f"teacher.weights_dir: missing {', '.join(missing)} (get them with "
                               "`harness weights fetch osediff`)")  # fmt: skip
    base = None
    if merged:
        net = load_merged(cfg, Path(merged), files.get("text_encoder"))
    elif folder:
        net = build(cfg, files)
        base = {k: v for k, v in _plain_unet(files["unet"]).items()}
    else:
        from harness.methods.osediff.weights import random_net

        net = random_net(cfg, seed=0, decoder_gain=1.0)
    if sd_unet:
        from harness.checkpoints import load_tensors, tensors_only

        base = tensors_only(load_tensors(sd_unet), sd_unet)
    if folder:
        tokenizer = sd.load_tokenizer(files["vocab"], files["merges"])
    else:
        tokenizer = sd.bundled_tokenizer()
    tagger, fixed = None, None
    if prompt == "auto":
        prompt = "dape" if _dape_files() is not None else "zeros"
    dim = int(cfg.text["hidden_size"])
    if prompt == "dape":
        files_dape = _dape_files()
        if files_dape is None:
            raise HarnessError("teacher.prompt=dape: the DAPE package or its weight files are "
                               "missing (`harness weights fetch osediff`)")  # fmt: skip
        from harness.methods.osediff.adapter import dape_module

        tagger = dape_module().DapeTagger.from_files(files_dape, torch.device("cpu"),
                                                     torch.float32)  # fmt: skip
    elif prompt == "zeros":
        fixed = torch.zeros(1, sd.TOKEN_LENGTH, dim)
    elif prompt.startswith("file:"):
        from harness.checkpoints import load_tensors

        obj = load_tensors(prompt[5:])
        t = next(iter(obj.values())) if isinstance(obj, dict) else obj
        fixed = t.reshape(1, -1, dim).float()
    return Teacher(net, tokenizer, prompt, tagger, fixed, base)


def _plain_unet(path: Path) -> dict[str, torch.Tensor]:
    from harness.checkpoints import load_tensors

    return dict(load_tensors(path))
