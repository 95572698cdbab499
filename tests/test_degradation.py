import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.datasets import degradation as D
from harness.datasets import kernels as K


@pytest.mark.parametrize("mode", D.RESIZE_MODES)
@pytest.mark.parametrize("size", [(20, 70), (90, 11), (37, 53), (13, 106)])
def test_resize_matches_torch_interpolate(mode, size):
    x = np.random.default_rng(1).random((37, 53, 3))
    ours = D.resize(x, *size, mode)
    extra = {} if mode == "area" else {"align_corners": False}
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=size, mode=mode, **extra)
    np.testing.assert_allclose(ours, ref[0].permute(1, 2, 0).numpy(), atol=1e-12)


def test_kernels_are_normalised_and_centred():
    rng = np.random.default_rng(0)
    for size in (7, 13, 21):
        for _ in range(20):
            k = K.random_mixed_kernel(
                rng, size, K.KERNEL_TYPES, (1,) * 6, (0.2, 3), (0.5, 4), (1, 2)
            )
            assert k.shape == (size, size)
            assert abs(k.sum() - 1) < 1e-12
            np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # point-symmetric
            assert np.unravel_index(k.argmax(), k.shape) == (size // 2, size // 2)
    s = K.sinc_kernel(21, np.pi / 3)
    assert abs(s.sum() - 1) < 1e-12 and s[10, 10] == s.max()


def test_iso_gaussian_matches_closed_form():
    k = K.gaussian_kernel(9, 1.3, 1.3, 0.0)
    ax = np.arange(9) - 4
    g = np.exp(-(ax**2) / (2 * 1.3**2))
    ref = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(k, ref, atol=1e-7)


def test_degrade_is_seeded_and_quantised():
    hr = np.random.default_rng(3).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    a = D.degrade(hr, np.random.default_rng([1, 2]))
    b = D.degrade(hr, np.random.default_rng([1, 2]))
    c = D.degrade(hr, np.random.default_rng([1, 3]))
    assert a.shape == (16, 12, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.round(a * 255), a * 255)
    assert a.min() >= 0 and a.max() <= 1


def test_degrade_rejects_sizes_not_divisible_by_scale():
    with pytest.raises(ValueError, match="multiple of the scale"):
        D.degrade(np.zeros((30, 32, 3), np.uint8), np.random.default_rng(0))


def test_gray_noise_is_equal_across_channels():
    img = np.full((8, 8, 3), 0.5)
    out = D.add_gaussian_noise(img, np.random.default_rng(0), 10.0, gray=True)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    assert out.std() > 0
