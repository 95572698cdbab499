import re

import numpy as np
import pyiqa
import pytest
import torch
from skimage import data

from harness.errors import HarnessError
from harness.imageio import from_tensor, to_tensor
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


def _bright_pair():
    """A bright, nearly flat pair: where a window whose sum is off by 1e-9 moves SSIM most."""
    rng = np.random.default_rng(0)
    hr = np.full((48, 40, 3), 250, np.uint8)
    hr[::7, ::5] = 235
    sr = np.clip(hr.astype(int) + rng.integers(-2, 3, hr.shape), 0, 255).astype(np.uint8)
    return to_tensor(sr), to_tensor(hr)


@pytest.mark.parametrize("noise", [0.0, 3.0, 25.0, "bright"])
@pytest.mark.parametrize("crop", [(slice(None), slice(None)), (slice(5, 94), slice(7, 150))])
def test_fast_ssim_equals_pyiqa(noise, crop):
    """Within 1e-9 on a square and an odd, non-square size. The separable window must keep
    the float32 window's sum: without that the error is ~2e-8 (bright and noise 3), with the
    exact float64 Gaussian ~1e-7, with sigma 1.6 instead of 1.5 ~1e-5 to 5e-4."""
    sr, hr = _bright_pair() if noise == "bright" else _pair(0, noise)
    sr, hr = sr[..., crop[0], crop[1]], hr[..., crop[0], crop[1]]
    ref = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert abs(float(ssim_y(sr, hr)[0]) - float(ref(sr, hr))) < 1e-9


def test_separable_window_keeps_the_float32_windows_sum():
    from harness.metrics.ssim import WINDOW, separable_window

    vertical, horizontal = separable_window()
    assert np.outer(vertical, horizontal).sum() == pytest.approx(WINDOW.sum(), abs=1e-15)
    assert np.abs(np.outer(vertical, horizontal) - WINDOW).max() < 1e-9  # one term suffices


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


def test_y_planes_equal_pyiqa_bitwise_for_every_8bit_colour():
    """All 2^24 RGB colours, 2^20 at a time: the table lookup (from 8-bit pixels) and the
    float path (from tensors) give pyiqa's Y bits, unrounded and rounded to [0, 255]."""
    from pyiqa.utils.color_util import to_y_channel

    from harness.metrics.fullref import y_plane, y_plane_255, y_plane_rgb8

    low = np.arange(1 << 20, dtype=np.int64)
    for r_high in range(16):
        v = (r_high << 20) | low
        rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)
        rgb = rgb.reshape(1024, 1024, 3)
        x = to_tensor(rgb)
        want = to_y_channel(x, 1.0, "ycbcr")[0, 0].numpy()
        assert np.array_equal(y_plane_rgb8(rgb), want)
        assert np.array_equal(y_plane(x[0].numpy()), want)
        want255 = to_y_channel(x, 255.0, "ycbcr")[0, 0].double().numpy()
        assert np.array_equal(y_plane_255(want), want255)


def test_suite_scores_8bit_batches_as_pyiqa_scores_tensors():
    """The metric stage hands the suite 8-bit images (Y from tables, no float image); values
    equal pyiqa's on the float tensors: PSNR bitwise, SSIM within 1e-9; batches of two too."""
    from harness.metrics.images import ImageBatch

    pairs = [_pair(4, 6.0), _pair(5, 30.0)]
    rgb8 = [[from_tensor(t[0]) for t in p] for p in pairs]
    suite = MetricSuite(["psnr", "ssim"])
    batch = suite.score(
        ImageBatch(rgb8=[r[0] for r in rgb8]), ImageBatch(rgb8=[r[1] for r in rgb8])
    )
    opts = {"test_y_channel": True, "color_space": "ycbcr", "device": "cpu"}
    for (sr, hr), score in zip(pairs, batch):
        assert score.values == suite.score(sr, hr)[0].values
        assert score.values["psnr"] == float(pyiqa.create_metric("psnr", **opts)(sr, hr))
        assert abs(score.values["ssim"] - float(pyiqa.create_metric("ssim", **opts)(sr, hr))) < 1e-9


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


def test_set_level_metrics_run_with_one_blas_thread(tmp_path):
    """FID's sqrtm (scipy, many small BLAS calls) ran 4.5x slower with two OpenBLAS threads
    than with one on a shared 2-core CPU: set-level metrics get one, and the setting is
    restored afterwards."""
    from types import SimpleNamespace

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    suite = MetricSuite(["psnr"])
    seen = []
    suite.specs.append(SimpleNamespace(name="setlevel", per="set"))
    suite._scorers["setlevel"] = lambda sr_dir, hr_dir: seen.append(blas_threads()) or 1.0
    before = blas_threads()
    score = suite.score_sets(tmp_path, tmp_path)
    assert score.values == {"setlevel": 1.0}
    assert seen and set(seen[0]) == {1}
    assert blas_threads() == before
