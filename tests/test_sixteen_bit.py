"""16-bit inputs keep their high byte: a 16-bit copy of an 8-bit dataset scores exactly as the
8-bit original (README "Input conversions", harness/imageio.py).

The 16-bit test images carry a low byte that differs from the high byte in (almost) every pixel,
so reading the low byte, or rounding ``v / 257``, gives other pixels and other scores.
"""

import csv
import json
import struct
import zlib

import numpy as np

from harness.imageio import image_info, read_rgb, write_png

RNG = np.random.default_rng(1607)


def _png16(path, a: np.ndarray) -> None:
    """Write a 16-bit PNG (grayscale ``(H, W)`` or RGB ``(H, W, 3)`` uint16) byte by byte:
    Pillow writes no 16-bit RGB PNG."""
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    rows = a.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)  # fmt: skip

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _widen(v8: np.ndarray) -> np.ndarray:
    """8-bit values as 16-bit ones with that high byte and an unrelated low byte."""
    low = RNG.integers(0, 256, v8.shape).astype(np.uint16)
    low[low == v8] ^= 0x80  # never equal to the high byte: v * 257 would hide a low-byte read
    v16 = v8.astype(np.uint16) << 8 | low
    assert ((v16 & 0xFF) != (v16 >> 8)).all()
    assert (np.round(v16 / 257) != v8).any()  # rounding to the nearest 8-bit level differs too
    return v16


def test_16bit_gray_and_rgb_read_as_their_high_byte(tmp_path):
    """Mutations caught: the low byte kept (``& 0xFF``); ``round(v / 257)``."""
    rgb = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    _png16(tmp_path / "rgb16.png", _widen(rgb))
    _png16(tmp_path / "g16.png", _widen(rgb[:, :, 1]))
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgb16.png"), rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "g16.png"), np.repeat(rgb[:, :, 1:2], 3, 2))
    assert image_info(tmp_path / "rgb16.png")[1] == ("16-bit",)
    assert image_info(tmp_path / "g16.png")[1] == ("grayscale", "16-bit")


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_16bit_copy_scores_as_the_8bit_original(cache_dir, tmp_path, cli, capsys):
    """The same pairs as 8-bit PNGs and as 16-bit ones (RGB and grayscale, LR and HR): the same
    per-image PSNR and SSIM to the last digit, and the 16-bit files listed as converted.
    Mutations caught: the low byte kept; 16-bit RGB not detected as converted."""
    lr = {n: RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8) for n in "ab"}
    lr["b"][:] = lr["b"][:, :, :1]  # a gray image (its 16-bit copy is a 1-channel PNG)
    hr = {n: RNG.integers(0, 256, (32, 24, 3), dtype=np.uint8) for n in "ab"}
    eight, sixteen = tmp_path / "8" / "photos", tmp_path / "16" / "photos"
    for n in "ab":
        write_png(eight / "LR" / f"{n}.png", lr[n])
        write_png(eight / "HR" / f"{n}.png", hr[n])
    _png16(sixteen / "LR" / "a.png", _widen(lr["a"]))
    _png16(sixteen / "LR" / "b.png", _widen(lr["b"][:, :, 0]))
    _png16(sixteen / "HR" / "a.png", _widen(hr["a"]))
    write_png(sixteen / "HR" / "b.png", hr["b"])

    rows = {}
    for name, root in (("8", eight), ("16", sixteen)):
        out = tmp_path / f"run{name}"
        argv = ("run", "--methods", "bicubic", "--datasets", root, "--out", out)
        assert cli(*argv, "profile.enabled=false") == 0
        rows[name] = _rows(out / "per_image.csv")
    assert len(rows["8"]) == 2 and all(float(r["psnr"]) < 40 for r in rows["8"])
    assert rows["16"] == rows["8"]
    conv = json.loads((tmp_path / "run16" / "manifest.json").read_text())["datasets"]["photos"]
    assert conv["conversions"] == {
        "16-bit": ["LR/a.png", "HR/a.png", "LR/b.png"],
        "grayscale": ["LR/b.png"],
    }
    assert "3 16-bit" in capsys.readouterr().err
