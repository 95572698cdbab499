"""ResShift's sampler (Yue et al., "ResShift: Efficient Diffusion Model for Image
Super-resolution by Residual Shifting", NeurIPS 2023; TPAMI 2024 for the 4-step version).

SinSR distilled ResShift into one step, on the same networks: the Swin-UNet and the VQ-f4
autoencoder of :mod:`harness.methods.sinsr.arch`. What ResShift adds is the chain
x_T -> ... -> x_0 on the latent, as the official ``models/gaussian_diffusion.py`` runs it:

* ``z_y`` = VQ encoding (no quantisation) of the bicubic x4 upsampled LR (``F.interpolate``);
* ``x_T = z_y + kappa * sqrt(eta_T) * n_T``;
* for t = T-1 ... 0: ``x0 = UNet(x_t / sqrt(kappa^2 eta_t + 1), t, lq)`` (x0 predicted directly,
  not clipped: the official sampler clips only without an autoencoder), then the posterior
  ``mean = eta_{t-1}/eta_t * x_t + alpha_t/eta_t * x0`` with ``alpha_t = eta_t - eta_{t-1}``;
  for t > 0, ``x_{t-1} = mean + sqrt(kappa^2 eta_{t-1}/eta_t alpha_t) * n_t``; x_{-1} = mean;
* VQ decode (nearest code, ``post_quant_conv``, decoder).

The schedule constants are computed in float64 and applied as fp32 tensors, as the official
``_extract_into_tensor`` does; the noise std is ``exp(0.5 * log variance)`` in fp32, as there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.sinsr.arch import (
    SwinUNet,
    SwinUNetConfig,
    VQAutoencoder,
    VQConfig,
    exponential_sqrt_etas,
)


@dataclass(frozen=True)
class ResShiftSchedule:
    """``diffusion.params`` of the official configs (``exponential`` schedule, x0 prediction,
    ``normalize_input``, latent). ``floor``: see :func:`exponential_sqrt_etas`."""

    steps: int
    min_noise_level: float
    etas_end: float = 0.99
    kappa: float = 2.0
    power: float = 0.3
    scale_factor: float = 1.0
    floor: float | None = None

    @classmethod
    def conference(cls) -> ResShiftSchedule:
        """``configs/realsr_swinunet_realesrgan256.yaml``: v1 and v2, 15 steps."""
        return cls(steps=15, min_noise_level=0.04)

    @classmethod
    def journal(cls) -> ResShiftSchedule:
        """``configs/realsr_swinunet_realesrgan256_journal.yaml``: v3, 4 steps."""
        return cls(steps=4, min_noise_level=0.2)

    def sqrt_etas(self) -> list[float]:
        return exponential_sqrt_etas(
            self.steps, self.min_noise_level, self.etas_end, self.kappa, self.power, self.floor
        )

    def tables(self) -> dict[str, torch.Tensor]:
        """Per-step fp32 constants, indexed by t: ``prior`` (kappa sqrt(eta_t)), ``std``
        (input divisor), ``coef1``, ``coef2`` (posterior mean), ``noise_std`` (posterior)."""
        sqrt_etas = torch.tensor(self.sqrt_etas(), dtype=torch.float64)
        etas = sqrt_etas**2
        etas_prev = torch.cat([etas.new_zeros(1), etas[:-1]])
        alpha = etas - etas_prev
        variance = self.kappa**2 * etas_prev / etas * alpha
        # the official log variance replaces t=0's (zero) by t=1's; t=0 adds no noise anyway
        clipped = torch.cat([variance[1:2], variance[1:]]) if self.steps > 1 else variance
        log_variance = torch.log(clipped).float()
        eta32 = etas.float()
        return {
            "prior": (self.kappa * sqrt_etas).float(),
            "std": torch.sqrt(eta32 * self.kappa**2 + 1),
            "coef1": (etas_prev / etas).float(),
            "coef2": (alpha / etas).float(),
            "noise_std": torch.exp(0.5 * log_variance),
        }


class ResShiftNet(nn.Module):
    """The whole chain. ``forward(lq, noise)``: ``lq`` the LR in [-1, 1], sides multiples of the
    UNet's :attr:`SwinUNetConfig.downsample`; ``noise`` ``(N, steps, C, h, w)`` standard normal
    at the latent's size: ``noise[:, 0]`` starts the chain, ``noise[:, j]`` (j >= 1) is added
    after the j-th step -> image in [-1, 1] (not clamped), ``factor`` times larger."""

    def __init__(self, unet: SwinUNetConfig, vq: VQConfig, schedule: ResShiftSchedule) -> None:
        super().__init__()
        self.unet = SwinUNet(unet)
        self.vq = VQAutoencoder(vq)
        self.schedule = schedule
        self.sf = vq.factor
        self.consts = {k: [float(v) for v in t] for k, t in schedule.tables().items()}

    def _const(self, name: str, t: int, like: torch.Tensor) -> torch.Tensor:
        # an expanded fp32 tensor, as the official code broadcasts its per-step constants
        value = self.consts[name][t]
        return torch.tensor(value, dtype=torch.float32, device=like.device).expand(like.shape)

    def forward(self, lq: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        steps = self.schedule.steps
        if noise.ndim != 5 or noise.shape[1] != steps:
            raise ValueError(f"noise {tuple(noise.shape)}: expected (N, {steps}, C, h, w)")
        y = F.interpolate(lq, scale_factor=self.sf, mode="bicubic")
        z_y = self.vq.encode(y) * self.schedule.scale_factor
        last = steps - 1
        z = z_y + self._const("prior", last, z_y) * noise[:, 0]
        for j, t in enumerate(range(last, -1, -1)):
            ts = torch.full((lq.shape[0],), t, dtype=torch.long, device=lq.device)
            x0 = self.unet(z / self._const("std", t, z), ts, lq)
            mean = self._const("coef1", t, z) * z + self._const("coef2", t, z) * x0
            z = mean + self._const("noise_std", t, z) * noise[:, j + 1] if t > 0 else mean
        return self.vq.decode(1 / self.schedule.scale_factor * z)
