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

# The floor for every metric: SSIM's 11x11 window. PSNR, DISTS and FID run at any size, 1x1
# included, but no Real-ISR protocol scores an image smaller than the SSIM every paper reports
# beside PSNR: such a file in a test set is a mistake (a thumbnail, a broken export), and its
# numbers (80 dB for a pixel reproduced exactly) would swamp a set's mean.
MIN_SIZE = 11


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
        min_size: the smallest height and width (pixels) of an image the metric scores as it is
            (not failing, padding or enlarging it); a smaller input is refused before any work.
            Found from pyiqa 0.1.16's code and by scoring sizes around it; a metric that runs at
            any size gets the harness floor, ``MIN_SIZE`` (below).
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
    min_size: int = MIN_SIZE
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
        min_size=11,  # the Gaussian window (harness/metrics/ssim.py raises below it, as pyiqa)
        doc="SSIM on the rounded 8-bit Y of YCbCr, 11x11 Gaussian (sigma 1.5), no downsampling",
    )
)

# Learned metrics: pyiqa's defaults are the papers' settings (OSEDiff and AdcSR evaluate with
# pyiqa.create_metric(name) as is). Every file they load is listed in the weights manifest.
for _spec in (
    MetricSpec("lpips", "lpips", "FR", True, "0 to ~1", {"net": "alex", "version": "0.1"},
               weights=("torchvision-alexnet", "pyiqa-lpips-alex"),
               min_size=31,  # AlexNet's 11/4 conv then two 3/2 max-pools: 30 fails in pyiqa
               doc="LPIPS v0.1, AlexNet features"),
    MetricSpec("dists", "dists", "FR", True, "0 to ~1", weights=("torchvision-vgg16", "pyiqa-dists"),
               doc="DISTS, VGG16 features"),  # padded convs and L2 pools: any size (MIN_SIZE)
    MetricSpec("niqe", "niqe", "NR", True, "~0 to ~100", weights=("pyiqa-niqe",),
               min_size=96,  # the image is cut to whole 96x96 blocks: none below 96 (fails)
               doc="NIQE (pyiqa default: Y of YIQ)"),
    MetricSpec("musiq", "musiq", "NR", False, "~0 to ~100", weights=("pyiqa-musiq-koniq",),
               min_size=32,  # its native-resolution scale's 32x32 patches (zero-padded below)
               decimals=2, doc="MUSIQ trained on KonIQ-10k"),
    MetricSpec("maniqa-pipal", "maniqa-pipal", "NR", False, "~0 to ~1",
               weights=("timm-vit-b8", "pyiqa-maniqa-pipal"),
               # its ViT takes 224 crops; pyiqa's uniform_crop enlarges (bilinear) an image whose
               # short side is <= 224 to 225 first: at 224 by one pixel, below by ever more
               min_size=224,
               doc="MANIQA trained on PIPAL (OSEDiff, AdcSR); 20 uniform 224 crops (pyiqa>=0.1.12)"),
    MetricSpec("maniqa", "maniqa", "NR", False, "~0 to ~1",
               weights=("timm-vit-b8", "pyiqa-maniqa-koniq"),
               min_size=224,  # as maniqa-pipal
               doc="MANIQA trained on KonIQ-10k (S3Diff); not comparable with maniqa-pipal"),
    MetricSpec("clipiqa", "clipiqa", "NR", False, "0 to 1", weights=("clip-rn50",),
               min_size=31,  # RN50's stride-2 stem and four 2x2 average pools: 30 fails
               doc="CLIPIQA with OpenAI CLIP RN50, antonym prompt pairs"),
    MetricSpec("fid", "fid", "FR", True, "0 to ~", {"mode": "clean"},
               weights=("pyiqa-fid-inception",), per="set", decimals=2,
               doc="FID, SR folder vs HR folder, clean-fid mode, once per method and dataset"),
):  # fmt: skip
    _add(_spec)
