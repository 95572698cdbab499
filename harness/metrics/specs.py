"""The metric table: one declarative entry per metric (pyiqa's default_model_configs, in small).

Each entry fixes the exact pyiqa settings the Real-ISR papers use (FACTS.md section 1). The
options are stamped into every results file, so a number can always be traced to its settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from harness.registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    """How to compute one metric.

    Attributes:
        name: the harness name (CSV column, CLI name).
        pyiqa_id: the pyiqa metric id the numbers must equal.
        options: keyword options passed to ``pyiqa.create_metric``.
        reference: "FR" needs the HR image, "NR" scores the SR image alone.
        lower_better: direction of "better" (report arrows, best-in-bold).
        score_range: the documented range of values.
        impl: "pyiqa" calls pyiqa; "harness" is an own implementation that tests hold equal to
            pyiqa with the same options (to 1e-6), used where pyiqa is needlessly slow.
        doc: one line for ``harness list metrics``.
    """

    name: str
    pyiqa_id: str
    reference: Literal["FR", "NR"]
    lower_better: bool
    score_range: str
    options: Mapping[str, Any] = field(default_factory=dict)
    impl: Literal["pyiqa", "harness"] = "pyiqa"
    decimals: int = 4  # digits the report prints (the papers' convention)
    weights: tuple[str, ...] = ()  # ids in the weights manifest (harness/weights/manifest.py)
    per: Literal["image", "set"] = "image"  # "set": one value per (method, dataset), e.g. FID
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"options": dict(self.options), "weights": list(self.weights)}


METRICS: Registry[MetricSpec] = Registry("metric")


def _add(spec: MetricSpec) -> None:
    METRICS.register(spec.name)(spec)


# Y of YCbCr (BT.601), no border crop: what the papers report. pyiqa's defaults differ (RGB for
# psnr, YIQ for ssim) and give other numbers, so both options are always passed.
_Y_YCBCR = {"test_y_channel": True, "color_space": "ycbcr"}

_add(
    MetricSpec(
        name="psnr",
        pyiqa_id="psnr",
        reference="FR",
        lower_better=False,
        score_range="dB, ~0 to ~60",
        options=_Y_YCBCR,
        impl="harness",
        decimals=2,
        doc="PSNR on the Y channel of YCbCr (unrounded Y, data range 1)",
    )
)
_add(
    MetricSpec(
        name="ssim",
        pyiqa_id="ssim",
        reference="FR",
        lower_better=False,
        score_range="0 to 1",
        options=_Y_YCBCR,
        impl="harness",
        doc="SSIM on the rounded 8-bit Y of YCbCr, 11x11 Gaussian (sigma 1.5), no downsampling",
    )
)

# Learned metrics: pyiqa's defaults are the papers' settings (OSEDiff and AdcSR evaluate with
# pyiqa.create_metric(name) as is). Every file they load is listed in the weights manifest.
for _spec in (
    MetricSpec("lpips", "lpips", "FR", True, "0 to ~1", {"net": "alex", "version": "0.1"},
               weights=("torchvision-alexnet", "pyiqa-lpips-alex"),
               doc="LPIPS v0.1, AlexNet features"),
    MetricSpec("dists", "dists", "FR", True, "0 to ~1", weights=("torchvision-vgg16", "pyiqa-dists"),
               doc="DISTS, VGG16 features"),
    MetricSpec("niqe", "niqe", "NR", True, "~0 to ~100", weights=("pyiqa-niqe",),
               doc="NIQE (pyiqa default: Y of YIQ)"),
    MetricSpec("musiq", "musiq", "NR", False, "~0 to ~100", weights=("pyiqa-musiq-koniq",),
               decimals=2, doc="MUSIQ trained on KonIQ-10k"),
    MetricSpec("maniqa-pipal", "maniqa-pipal", "NR", False, "~0 to ~1",
               weights=("timm-vit-b8", "pyiqa-maniqa-pipal"),
               doc="MANIQA trained on PIPAL (OSEDiff, AdcSR); 20 uniform 224 crops (pyiqa>=0.1.12)"),
    MetricSpec("maniqa", "maniqa", "NR", False, "~0 to ~1",
               weights=("timm-vit-b8", "pyiqa-maniqa-koniq"),
               doc="MANIQA trained on KonIQ-10k (S3Diff); not comparable with maniqa-pipal"),
    MetricSpec("clipiqa", "clipiqa", "NR", False, "0 to 1", weights=("clip-rn50",),
               doc="CLIPIQA with OpenAI CLIP RN50, antonym prompt pairs"),
    MetricSpec("fid", "fid", "FR", True, "0 to ~", {"mode": "clean"},
               weights=("pyiqa-fid-inception",), per="set", decimals=2,
               doc="FID, SR folder vs HR folder, clean-fid mode, once per method and dataset"),
):  # fmt: skip
    _add(_spec)
