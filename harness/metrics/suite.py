"""Build each metric once and score image pairs with it.

A metric knows nothing about methods: it scores tensors. A metric that cannot be built (missing
weights, missing package) or fails on an image is reported as *missing, with its reason* -- never
as 0 and never dropped silently; the store and the report carry the reason through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.errors import HarnessError
from harness.metrics.specs import METRICS, MetricSpec

Scorer = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class Score:
    """Values per metric for one image; ``None`` values have a reason in ``missing``."""

    values: dict[str, float | None]
    missing: dict[str, str]


def _build(spec: MetricSpec, device: torch.device) -> Scorer:
    if spec.impl == "harness" and spec.name == "ssim":
        from harness.metrics.ssim import ssim_y

        color_space = spec.options.get("color_space", "yiq")
        return lambda sr, hr: ssim_y(sr, hr, color_space)
    import pyiqa

    net = pyiqa.create_metric(spec.pyiqa_id, device=device, as_loss=False, **spec.options)
    if spec.reference == "FR":
        return lambda sr, hr: net(sr, hr)
    return lambda sr, hr: net(sr)


class MetricSuite:
    """The metrics of one run, each built once and reused for every method and dataset."""

    def __init__(self, names: Sequence[str], device: torch.device | str = "cpu") -> None:
        if not names:
            raise HarnessError("no metrics selected (option --metrics)")
        self.specs = [METRICS.get(n) for n in names]
        self.device = torch.device(device)
        self._scorers: dict[str, Scorer] = {}
        self.unavailable: dict[str, str] = {}
        for spec in self.specs:
            try:
                self._scorers[spec.name] = _build(spec, self.device)
            except Exception as e:  # a metric that cannot be built is missing, with its reason
                self.unavailable[spec.name] = f"could not build {spec.pyiqa_id}: {_one_line(e)}"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def applicable(self, has_hr: bool) -> list[MetricSpec]:
        """Full-reference metrics need HR; on LR-only datasets only no-reference ones run."""
        return [s for s in self.specs if has_hr or s.reference == "NR"]

    @torch.inference_mode()
    def score(self, sr: torch.Tensor, hr: torch.Tensor | None) -> list[Score]:
        """Score a batch: ``sr`` and ``hr`` float32 ``(N, 3, H, W)`` in [0, 1]."""
        n = sr.shape[0]
        out = [Score({}, {}) for _ in range(n)]
        sr = sr.to(self.device)
        hr = hr.to(self.device) if hr is not None else None
        for spec in self.specs:
            if spec.reference == "FR" and hr is None:
                continue
            reason = self.unavailable.get(spec.name)
            vals: list[float | None] = [None] * n
            if reason is None:
                try:
                    v = self._scorers[spec.name](sr, hr).detach().double().flatten().cpu()
                    vals = [float(x) for x in v]
                except Exception as e:
                    reason = f"{spec.name} failed: {_one_line(e)}"
            for i, s in enumerate(out):
                s.values[spec.name] = vals[i]
                if vals[i] is None:
                    s.missing[spec.name] = reason or "no value"
                elif vals[i] != vals[i]:  # NaN is a failure, not a number
                    s.values[spec.name] = None
                    s.missing[spec.name] = f"{spec.name} returned NaN"
        return out


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()
