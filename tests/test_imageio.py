import numpy as np
import pytest
from PIL import Image

from harness.errors import HarnessError
from harness.imageio import from_tensor, list_images, read_rgb, to_tensor, write_png


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_png_roundtrip_and_tensor_convention(tmp_path, rgb):
    write_png(tmp_path / "a.png", rgb)
    back = read_rgb(tmp_path / "a.png")
    assert back.dtype == np.uint8 and back.shape == (12, 10, 3)
    np.testing.assert_array_equal(back, rgb)
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 12, 10) and t.dtype.is_floating_point
    assert float(t.max()) <= 1.0
    np.testing.assert_array_equal(from_tensor(t[0]), rgb)


def test_write_leaves_no_temporary_files(tmp_path, rgb):
    write_png(tmp_path / "a.png", rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_grayscale_is_replicated(tmp_path, rgb):
    Image.fromarray(rgb[:, :, 0], mode="L").save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (12, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], rgb[:, :, 0])


def test_rgba_drops_alpha(tmp_path, rgb):
    alpha = np.full((12, 10, 1), 7, dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], 2), mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)


def test_16bit_gray_keeps_high_byte(tmp_path, rgb):
    v16 = rgb[:, :, 1].astype(np.uint16) * 257  # an 8-bit image stored in 16 bits
    Image.fromarray(v16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = read_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[:, :, 0], rgb[:, :, 1])


def test_corrupt_and_truncated_png_name_the_file(tmp_path, rgb):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(HarnessError, match="bad.png: cannot decode"):
        read_rgb(tmp_path / "bad.png")
    write_png(tmp_path / "t.png", rgb)
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(HarnessError, match="t.png: cannot decode"):
        read_rgb(tmp_path / "t.png")


def test_list_images_errors(tmp_path):
    with pytest.raises(HarnessError, match="folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HarnessError, match="no images"):
        list_images(tmp_path)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """Temporary files are private (0600); the renamed result must not stay so."""
    import os

    from harness.imageio import write_png, write_text

    write_text(tmp_path / "a.txt", "x")
    write_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    for name in ("a.txt", "a.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
