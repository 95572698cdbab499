"""The ``adcsr`` method: the AdcSR network from the official weights or an in-harness checkpoint.

Inference follows the official ``test.py``: LR in [-1, 1] -> network -> each output channel's
mean and (unbiased) std matched to the LR's -> [0, 1]. Weight sources, in order:

* ``weights``: a safetensors file written by the harness (``AdcSRNet`` state dict);
* ``net_params`` + ``half_decoder``: the official ``net_params_200.pkl`` and
  ``halfDecoder.ckpt``, converted once to a safetensors cache beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.checkpoints import file_digest, load_tensors, tensors_only
from harness.errors import HarnessError
from harness.methods.adcsr.arch import AdcSRConfig, AdcSRNet
from harness.methods.adcsr.convert import from_official
from harness.methods.base import MethodCard, SRMethod, WeightFile, load_strict

HF = "https://huggingface.co/Guaishou74851/AdcSR"
MULTIPLE = 16  # PixelUnshuffle(2) then three stride-2 downsamplers
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def color_match(sr: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Give each channel of ``sr`` the mean and unbiased std of ``ref`` (per image)."""
    mu_s, sd_s = sr.mean(dim=(2, 3), keepdim=True), sr.std(dim=(2, 3), keepdim=True)
    mu_r, sd_r = ref.mean(dim=(2, 3), keepdim=True), ref.std(dim=(2, 3), keepdim=True)
    return (sr - mu_s) / sd_s * sd_r + mu_r


class AdcSR(SRMethod):
    card = MethodCard(
        family="diffusion",
        name="adcsr",
        display_name="AdcSR",
        paper="Chen et al., Adversarial Diffusion Compression for Real-World Image "
        "Super-Resolution, CVPR 2025 (arXiv:2411.13383)",
        license="Apache-2.0",
        scale=4,
        scales=(4,),
        steps=1,
        code="https://github.com/Guaishou74851/AdcSR",
        weights=(
            WeightFile(
                "net_params_200.pkl", f"{HF}/resolve/main/net_params_200.pkl", license="Apache-2.0"
            ),
            WeightFile(
                "halfDecoder.ckpt", f"{HF}/resolve/main/halfDecoder.ckpt", license="Apache-2.0"
            ),
        ),
        deviations=(
            "LR sides that are not multiples of 16 are reflect-padded (replicate-padded when "
            "the padding is not smaller than the side, where reflection is undefined) and the "
            "output cropped (the official code fails on them, AdcSR issue #22).",
            "Skip connections live in a local list, not a module-global one: re-entrant and "
            "torch.compile-able; outputs unchanged.",
            "Colour matching (official, on by default) can be switched off: color_match=false.",
            "8-bit output truncates like the official ToPILImage (quantize=truncate, default); "
            "quantize=round rounds instead.",
        ),
        notes="fp32 by default (fp16 reportedly gives NaN/black output).",
    )
    version = "1"

    def _arch(self) -> AdcSRConfig:
        arch = str(self.cfg.get("arch", "paper"))
        if arch not in ("paper", "tiny"):
            raise HarnessError(f"method.arch: '{arch}' is not one of paper, tiny")
        return AdcSRConfig.paper() if arch == "paper" else AdcSRConfig.tiny()

    fast_mode = (
        "channels_last weights and inputs, bf16 autocast, and on a GPU torch.compile "
        "(mode from method.compile_mode; reduce-overhead uses CUDA graphs)"
    )

    def check_config(self) -> None:
        self._arch()
        mode = str(self.cfg.get("compile_mode", "reduce-overhead"))
        if mode not in COMPILE_MODES:
            raise HarnessError(
                f"method.compile_mode: '{mode}' is not one of {', '.join(COMPILE_MODES)}"
            )
        if str(self.cfg.get("quantize", "truncate")) not in ("truncate", "round"):
            quantize = self.cfg["quantize"]
            raise HarnessError(f"method.quantize: '{quantize}' is not truncate or round")

    def build_model(self) -> AdcSRNet:
        return AdcSRNet(self._arch())

    # -- weights -------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if self.cfg.get("weights"):
            return [Path(str(self.cfg["weights"])).expanduser()]
        folder = Path(str(self.cfg.get("weights_dir", "."))).expanduser()
        return [folder / "net_params_200.pkl", folder / "halfDecoder.ckpt"]

    def _check_files(self) -> list[Path]:
        files = self._files()
        for f in files:
            if not f.is_file():
                if self.cfg.get("weights"):
                    raise HarnessError(f"adcsr: method.weights file {f} not found")
                raise HarnessError(
                    f"adcsr: weights file {f.name} not found in {f.parent}; get it with "
                    f"`harness weights fetch adcsr` (from {HF}) or `harness weights import DIR`, "
                    "or pass method.weights_dir=DIR / method.weights=FILE"
                )
        return files

    def weights_digest(self) -> str:
        return "+".join(file_digest(f)[:16] for f in self._check_files())

    def _state_dict(self) -> dict[str, torch.Tensor]:
        files = self._check_files()
        if len(files) == 1:
            return tensors_only(load_tensors(files[0]), str(files[0]))
        cache = files[0].with_name(f"adcsr-harness-{self.weights_digest()[:33]}.safetensors")
        if cache.is_file():
            return tensors_only(load_tensors(cache), str(cache))
        net = tensors_only(load_tensors(files[0]), str(files[0]))
        half = load_tensors(files[1])
        half = tensors_only(
            half.get("state_dict", half) if isinstance(half, dict) else half, str(files[1])
        )
        sd = from_official(net, half)
        try:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in sd.items()},
                str(cache),
                metadata={"source": json.dumps([f.name for f in files])},
            )
        except OSError:
            pass  # read-only folder: convert again next time
        return sd

    def load(self, device: torch.device, dtype: torch.dtype, random_init: bool = False) -> None:
        super().load(device, dtype, random_init)
        net = self.build_model()
        if not random_init:
            load_strict(net, self._state_dict(), "adcsr", str(self.cfg.get("arch", "paper")))
        self.net = net.to(device=device, dtype=dtype).eval()
        self._fast, self._compiled = False, None
        if self.cfg.get("fast", False):
            self.set_fast(True)

    def set_fast(self, on: bool) -> None:
        self._fast = bool(on)
        fmt = torch.channels_last if on else torch.contiguous_format
        self.net.to(memory_format=fmt)
        if on and self.device.type == "cuda" and self._compiled is None:
            mode = str(self.cfg.get("compile_mode", "reduce-overhead"))
            self._compiled = torch.compile(self.net, mode=mode)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not getattr(self, "_fast", False):
            return self.net(x)
        net = self._compiled or self.net
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            # a copy: CUDA-graph outputs are overwritten by the next call
            return net(x).float().clone()

    # -- inference -----------------------------------------------------------------------------
    def network_inputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """LR in [-1, 1], padded to a multiple of 16 as :meth:`upscale` does."""
        x = lr.to(self.device, self.dtype) * 2 - 1
        h, w = x.shape[-2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        mode = "reflect" if ph < h and pw < w else "replicate"
        return (F.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x,)

    def components(self, model: torch.nn.Module) -> dict[str, torch.nn.Module]:
        return {"unet": model.unet, "decoder_mid": model.mid, "decoder_tail": model.decoder}

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        (xp,) = self.network_inputs(lr)
        h, w = lr.shape[-2:]
        y = self._forward(xp)[..., : h * self.scale, : w * self.scale].float()
        if self.cfg.get("color_match", True):
            y = color_match(y, xp[..., :h, :w].float())
        out = (y / 2 + 0.5).clamp(0, 1)
        if str(self.cfg.get("quantize", "truncate")) == "truncate":
            out = torch.floor(out * 255) / 255
        return out
