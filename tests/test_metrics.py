import re

import numpy as np
import pyiqa
import pytest
import torch
from skimage import data

from harness.errors import HarnessError
from harness.imageio import to_tensor
from harness.metrics import METRICS, MetricSuite
from harness.metrics.ssim import ssim_y


def _pair(seed: int, noise: float):
    hr = data.astronaut()[64:320, 96:352]
    rng = np.random.default_rng(seed)
    sr = np.clip(hr + rng.normal(0, noise, hr.shape), 0, 255).astype(np.uint8)
    return to_tensor(sr), to_tensor(hr)


def test_paper_settings_are_declared():
    for name in ("psnr", "ssim"):
        spec = METRICS.get(name)
        assert dict(spec.options) == {"test_y_channel": True, "color_space": "ycbcr"}
        assert spec.reference == "FR" and not spec.lower_better


@pytest.mark.parametrize("noise", [0.0, 3.0, 25.0])
@pytest.mark.parametrize("crop", [(slice(None), slice(None)), (slice(5, 94), slice(7, 150))])
def test_fast_ssim_equals_pyiqa(noise, crop):
    """Within 1e-8 (the module claims 1e-9; one separable term alone is off by ~1e-7), on a
    square and an odd, non-square size."""
    sr, hr = _pair(0, noise)
    sr, hr = sr[..., crop[0], crop[1]], hr[..., crop[0], crop[1]]
    ref = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert abs(float(ssim_y(sr, hr)[0]) - float(ref(sr, hr))) < 1e-8


@pytest.mark.parametrize("noise", [0.0, 3.0, 25.0])
def test_psnr_and_y_channel_equal_pyiqa_bitwise(noise):
    from pyiqa.utils.color_util import to_y_channel

    from harness.metrics.fullref import psnr_y, y_channel

    sr, hr = _pair(3, noise)
    sr, hr = sr[..., 3:200, 1:131], hr[..., 3:200, 1:131]
    ref = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert float(psnr_y(sr, hr)[0]) == float(ref(sr, hr))
    for scale in (1.0, 255.0):
        assert torch.equal(y_channel(sr, scale), to_y_channel(sr, scale, "ycbcr"))


def test_psnr_ssim_evaluation_never_imports_pyiqa(tmp_path):
    """pyiqa's import takes seconds (its model zoo); PSNR/SSIM runs must not pay for it."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from harness.metrics import MetricSuite\n"
        "s = MetricSuite(['psnr', 'ssim'])\n"
        "x = torch.rand(1, 3, 32, 32)\n"
        "s.score(x, x)\n"
        "assert 'pyiqa' not in sys.modules, 'pyiqa was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_ssim_batches_like_single_images():
    a, b = _pair(1, 10.0), _pair(2, 20.0)
    batch = ssim_y(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
    assert float(batch[0]) == pytest.approx(float(ssim_y(*a)[0]), abs=1e-12)
    assert float(batch[1]) == pytest.approx(float(ssim_y(*b)[0]), abs=1e-12)


def test_suite_scores_identity_and_degrades_with_noise():
    suite = MetricSuite(["psnr", "ssim"])
    clean = suite.score(*_pair(0, 0.0))[0].values
    noisy = suite.score(*_pair(0, 10.0))[0].values
    assert clean["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert clean["psnr"] > 70  # identical images: mse 0 -> 10*log10(1/eps)
    assert noisy["psnr"] < clean["psnr"] and noisy["ssim"] < 1.0


def test_unknown_metric_is_a_user_error():
    with pytest.raises(HarnessError, match=re.escape("unknown metric 'nope'")):
        MetricSuite(["psnr", "nope"])


def test_failing_metric_is_missing_with_reason_not_zero():
    suite = MetricSuite(["psnr", "ssim"])
    tiny = torch.zeros(1, 3, 8, 8)  # smaller than SSIM's 11x11 window
    score = suite.score(tiny, tiny)[0]
    assert score.values["ssim"] is None
    assert "at least 11x11" in score.missing["ssim"]
    assert score.values["psnr"] is not None
