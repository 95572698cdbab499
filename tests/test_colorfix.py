"""Colour fixes: the documented statistics, decomposition and batch independence."""

import pytest
import torch

from harness.methods.common.colorfix import _split, adain, color_fix, wavelet


def test_adain_takes_the_source_channel_statistics():
    torch.manual_seed(0)
    t, s = torch.rand(2, 3, 40, 30), torch.rand(2, 3, 40, 30) * 0.5 + 0.2
    out = adain(t, s).flatten(2)
    src = s.flatten(2)
    assert torch.allclose(out.mean(2), src.mean(2), atol=1e-6)
    # unbiased variance + 1e-5 on both sides, as the official code
    want = (src.var(2) + 1e-5).sqrt()
    assert torch.allclose((out.var(2) + 1e-5).sqrt(), want, atol=1e-4)


def test_wavelet_keeps_target_detail_and_source_colour():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 33, 47)
    high, low = _split(x)
    assert torch.allclose(high + low, x, atol=1e-6)
    flat = torch.full((1, 3, 33, 47), 0.3)
    # a flat target takes the source's low frequencies exactly
    assert torch.allclose(wavelet(flat, x), _split(x)[1], atol=1e-6)
    assert torch.allclose(wavelet(x, x), x, atol=1e-6)


@pytest.mark.parametrize("kind", ["adain", "wavelet", "nofix"])
def test_batch_equals_one_image_at_a_time(kind):
    torch.manual_seed(2)
    t, s = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 24, 24)
    batch = color_fix(kind, t, s)
    for i in range(3):
        assert torch.equal(batch[i : i + 1], color_fix(kind, t[i : i + 1], s[i : i + 1]))


def test_unknown_fix_is_refused():
    with pytest.raises(ValueError, match="adain"):
        color_fix("histogram", torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
