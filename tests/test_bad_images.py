"""Bad input images in `harness run` and `harness eval`: each is one line on stderr naming the
file, exit code 2, no traceback, refused before any work, nothing left in --out."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.errors import HarnessError
from harness.evaluate import check_sizes
from harness.imageio import MAX_PIXELS, check_png_chunks, image_info, write_png
from harness.metrics import METRICS
from harness.metrics.specs import MIN_SIZE

RNG = np.random.default_rng(11)


def _png(path: Path, h: int, w: int) -> None:
    write_png(path, RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _pairs(root: Path, names=("a", "b", "c"), size=(16, 16)) -> Path:
    """SR/ and HR/ folders of ``names``, the SR a slightly noisy copy of the HR."""
    for n in names:
        hr = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
        noise = RNG.integers(-8, 9, hr.shape)
        write_png(root / "HR" / f"{n}.png", hr)
        write_png(root / "SR" / f"{n}.png", np.clip(hr + noise, 0, 255).astype(np.uint8))
    return root


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG of a few bytes whose header claims ``w`` x ``h`` (a decompression bomb's shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _break_idat_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the stored CRC; the pixels are intact
    path.write_bytes(bytes(data))


def _eval(cli, root: Path, *args) -> int:
    return cli("eval", "--sr", root / "SR", "--hr", root / "HR", "--out", root / "out", *args)


def _run(cli, root: Path, *args) -> int:
    return cli("run", "--methods", "bicubic", "profile.enabled=false", "--datasets", root,
               "--out", root / "out", *args)  # fmt: skip


def _one_error(capsys) -> str:
    """The only stderr line: the error (no traceback, no warning, nothing else printed)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("harness: error: ")
    return lines[0]


# -- 1. images too small for a metric ---------------------------------------------------------


def test_every_metric_declares_a_minimum_size_at_least_the_floor():
    """Mutation caught: a metric entry without its own minimum below the floor, or a floor of
    1 (a 1x1 image scored)."""
    assert MIN_SIZE == 11
    for name in METRICS:
        assert METRICS.get(name).min_size >= MIN_SIZE, name
    wanted = {"ssim": 11, "lpips": 31, "clipiqa": 31, "musiq": 32, "niqe": 96, "maniqa": 224}
    assert {n: METRICS.get(n).min_size for n in wanted} == wanted


def test_ssim_minimum_is_its_window():
    """The declared minimum is what the SSIM code needs: it scores 11x11, fails at 10."""
    from harness.metrics.ssim import ssim_planes

    n = METRICS.get("ssim").min_size
    plane = RNG.random((n, n)) * 255
    assert 0 < ssim_planes(plane, plane * 0.9) <= 1
    with pytest.raises(ValueError):
        ssim_planes(plane[:-1, :-1], plane[:-1, :-1])


def test_check_sizes_names_the_image_and_the_binding_metrics():
    names = ["psnr", "ssim", "lpips"]
    check_sizes(names, {"ok.png": (31, 40)})
    with pytest.raises(HarnessError, match=r"^x.png: 20x40 is smaller than 31x31, .*c lpips sc"):
        check_sizes(names, {"ok.png": (64, 64), "x.png": (20, 40)})  # ssim's 11 it passes
    with pytest.raises(HarnessError, match=r"^y.png: 10x12 is smaller than 11x11, .*psnr, ssim "):
        check_sizes(["psnr", "ssim"], {"y.png": (10, 12)})
    with pytest.raises(HarnessError, match=r"^z.png: 1x1 is smaller than 11x11, .*c psnr sc"):
        check_sizes([METRICS.get("psnr")], {"z.png": (1, 1)})
    # without HR only the no-reference metrics score: lpips's minimum does not count
    check_sizes(["psnr", "lpips", "musiq"], {"w.png": (32, 40)}, has_hr=False)
    with pytest.raises(HarnessError, match="w.png: 31x40 .* metric musiq scores"):
        check_sizes(["psnr", "lpips", "musiq"], {"w.png": (31, 40)}, has_hr=False)


@pytest.mark.parametrize(
    ("metrics", "size", "needs"),
    [("psnr,ssim", (1, 1), "11x11, the smallest image metrics psnr, ssim score"),
     ("psnr", (1, 1), "11x11, the smallest image metric psnr scores"),
     ("psnr,niqe", (16, 16), "96x96, the smallest image metric niqe scores")],
)  # fmt: skip
def test_eval_refuses_an_image_too_small_for_a_metric(tmp_path, cli, capsys, metrics, size, needs):
    """Before: exit 0, the 1x1 pair scored (PSNR mean skewed, SSIM column n/a)."""
    root = _pairs(tmp_path, ("a", "b"), (96, 128))
    _pairs(tmp_path, ("tiny",), size)
    assert _eval(cli, root, "--metrics", metrics) == 2
    line = _one_error(capsys)
    assert f"SR/tiny.png: {size[0]}x{size[1]} is smaller than {needs}" in line
    assert not (root / "out").exists()


def test_run_refuses_an_lr_whose_sr_output_is_too_small(cache_dir, tmp_path, cli, capsys):
    """A 2x2 LR's x4 output is 8x8, under SSIM's window: refused before the SR stage (which
    would log a line). Before: exit 0, the SSIM column n/a."""
    for n, s in (("a", 8), ("tiny", 2)):
        _png(tmp_path / "LR" / f"{n}.png", s, s)
        _png(tmp_path / "HR" / f"{n}.png", 4 * s, 4 * s)
    assert _run(cli, tmp_path) == 2
    line = _one_error(capsys)
    want = "LR/tiny.png (x4 SR output): 8x8 is smaller than 11x11, the smallest image metrics"
    assert f"{want} psnr, ssim score" in line
    assert not (tmp_path / "out").exists()


# -- 2. decompression bombs -------------------------------------------------------------------


@pytest.mark.parametrize("side", [20000, 10000])  # PIL refuses the first, only warns on the other
def test_eval_refuses_a_decompression_bomb(tmp_path, cli, capsys, side):
    root = _pairs(tmp_path, ("a",))
    _png_header_only(root / "SR" / "big.png", side, side)
    _png_header_only(root / "HR" / "big.png", side, side)
    assert _eval(cli, root) == 2
    line = _one_error(capsys)
    assert f"SR/big.png: {side}x{side} is {side * side:,} pixels, over the limit" in line
    assert not (root / "out").exists()


def test_run_refuses_a_decompression_bomb_and_an_output_over_the_limit(
    cache_dir, tmp_path, cli, capsys
):
    _png(tmp_path / "LR" / "a.png", 8, 8)
    _png(tmp_path / "HR" / "a.png", 32, 32)
    _png_header_only(tmp_path / "LR" / "big.png", 5000, 5000)
    _png_header_only(tmp_path / "HR" / "big.png", 20000, 20000)
    assert _run(cli, tmp_path) == 2
    assert "HR/big.png: 20000x20000 is 400,000,000 pixels" in _one_error(capsys)
    assert not (tmp_path / "out").exists()
    # LR only: the LR itself is allowed, its x4 output is not
    lr_only = tmp_path / "lr_only"
    _png_header_only(lr_only / "big.png", 5000, 5000)
    assert _run(cli, lr_only) == 2
    assert "big.png: its x4 SR output would be 20000x20000" in _one_error(capsys)
    assert not (lr_only / "out").exists()


def test_the_pixel_limit_is_pils_warning_threshold():
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485


# -- 3. a symlink loop as a folder -------------------------------------------------------------


def test_eval_sr_symlink_loop(tmp_path, cli, capsys):
    root = _pairs(tmp_path, ("a",))
    os.symlink(root / "loop", root / "loop")
    assert cli("eval", "--sr", root / "loop", "--hr", root / "HR", "--out", root / "out") == 2
    assert "loop: cannot open folder (symlink loop)" in _one_error(capsys)
    assert not (root / "out").exists()


@pytest.mark.parametrize("which", ["--sr", "--hr"])
def test_eval_symlink_loop_as_a_named_folder(tmp_path, cli, capsys, which):
    """Before: a loop was 'folder not found' (is_dir() swallows ELOOP) or a traceback."""
    root = _pairs(tmp_path, ("a",))
    os.symlink(root / "loop", root / "loop")
    folders = {"--sr": root / "SR", "--hr": root / "HR"} | {which: root / "loop"}
    assert cli("eval", "--sr", folders["--sr"], "--hr", folders["--hr"], "--name", "m",
               "--out", root / "out") == 2  # fmt: skip
    assert f"{root / 'loop'}: cannot open folder (symlink loop)" in _one_error(capsys)
    assert not (root / "out").exists()


# -- 4. file names that are not UTF-8 ---------------------------------------------------------


def _bad_name(folder: Path, stem: bytes) -> Path:
    path = Path(os.fsdecode(os.fsencode(folder) + b"/" + stem + b".png"))
    try:
        path.touch()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    return path


def test_eval_refuses_a_file_name_that_is_not_utf8(tmp_path, cli, capsys):
    """Before: exit 1 with a UnicodeEncodeError after scoring, rows.jsonl without a summary."""
    root = _pairs(tmp_path, ("a", "b"))
    for sub in ("SR", "HR"):
        _bad_name(root / sub, b"bad\xff").write_bytes((root / sub / "a.png").read_bytes())
    assert _eval(cli, root) == 2
    line = _one_error(capsys)
    assert "HR/bad\\xff.png: name is not valid UTF-8" in line
    assert not (root / "out").exists()


def test_run_refuses_a_file_name_that_is_not_utf8(cache_dir, tmp_path, cli, capsys):
    """Before: exit 1, a UnicodeEncodeError from the SR stage's per-image seed."""
    _png(tmp_path / "LR" / "a.png", 8, 8)
    _png(tmp_path / "HR" / "a.png", 32, 32)
    for sub in ("LR", "HR"):
        _bad_name(tmp_path / sub, b"b\xfe").write_bytes((tmp_path / sub / "a.png").read_bytes())
    assert _run(cli, tmp_path) == 2
    assert "LR/b\\xfe.png: name is not valid UTF-8" in _one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_non_image_file_with_such_a_name_is_ignored(tmp_path, cli, capsys):
    root = _pairs(tmp_path, ("a", "b"))
    Path(os.fsdecode(os.fsencode(root / "SR") + b"/notes\xff.txt")).write_text("x")
    assert _eval(cli, root) == 0


# -- 5. a damaged image among good ones -------------------------------------------------------


def test_eval_truncated_sr_among_good_ones_leaves_nothing(tmp_path, cli, capsys):
    """Before: exit 2 after 'a' was scored, leaving config.yaml, manifest.json and rows.jsonl."""
    root = _pairs(tmp_path, ("a", "b", "c"), (64, 64))
    data = (root / "SR" / "b.png").read_bytes()
    (root / "SR" / "b.png").write_bytes(data[: len(data) // 2])
    assert _eval(cli, root, "metric_workers=1") == 2
    assert "SR/b.png: cannot decode image (file ends inside chunk 'IDAT'" in _one_error(capsys)
    assert not (root / "out").exists()


def test_eval_truncated_jpeg_among_good_ones_leaves_nothing(tmp_path, cli, capsys):
    """JPEG has no checksums: it is decoded once before any work."""
    root = _pairs(tmp_path, ("a", "c"), (64, 64))
    img = Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    img.save(root / "HR" / "b.png")
    img.save(root / "SR" / "b.jpg", quality=95)
    data = (root / "SR" / "b.jpg").read_bytes()
    (root / "SR" / "b.jpg").write_bytes(data[: len(data) // 2])
    assert _eval(cli, root, "metric_workers=1") == 2
    assert "SR/b.jpg: not a readable image" in _one_error(capsys)
    assert not (root / "out").exists()


# -- 6. PNG chunk CRCs ------------------------------------------------------------------------


def test_eval_refuses_a_png_whose_idat_crc_is_wrong(tmp_path, cli, capsys):
    """Before: exit 0 (PIL checks no IDAT CRC), the damaged file scored."""
    root = _pairs(tmp_path, ("a", "b"))
    _break_idat_crc(root / "SR" / "b.png")
    assert _eval(cli, root) == 2
    assert "SR/b.png: cannot decode image (chunk 'IDAT' at byte 33: CRC mismatch" in _one_error(
        capsys
    )
    assert not (root / "out").exists()


def test_run_refuses_an_lr_png_whose_idat_crc_is_wrong(cache_dir, tmp_path, cli, capsys):
    _png(tmp_path / "LR" / "a.png", 8, 8)
    _png(tmp_path / "HR" / "a.png", 32, 32)
    _break_idat_crc(tmp_path / "LR" / "a.png")
    assert _run(cli, tmp_path) == 2
    assert "LR/a.png: cannot decode image (chunk 'IDAT'" in _one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_every_chunk_is_checked_not_only_the_first(tmp_path):
    """Several IDAT chunks, the last one's CRC wrong; bytes after IEND are ignored, as decoders
    ignore them."""
    path = tmp_path / "multi.png"
    rgb = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in rgb)
    data = zlib.compress(raw)
    parts = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    body = b"".join(_chunk(b"IDAT", p) for p in parts)
    good = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + body + _chunk(b"IEND", b"")
    path.write_bytes(good + b"trailing")
    assert image_info(path) == ((64, 64), ())
    assert np.array_equal(np.asarray(Image.open(path)), rgb)
    bad = bytearray(good)
    bad[-13] ^= 1  # the last byte of the last IDAT's CRC (IEND is the last 12 bytes)
    path.write_bytes(bytes(bad))
    with open(path, "rb") as f, pytest.raises(ValueError, match="'IDAT' at byte .*CRC mismatch"):
        check_png_chunks(f)
    with pytest.raises(HarnessError, match="multi.png: cannot decode image"):
        image_info(path)


@pytest.mark.parametrize(
    ("length", "message"),
    [(0x7FFFFFFF, "file ends inside chunk 'IDAT' at byte 33"),
     (0x80000000, "chunk 'IDAT' at byte 33: length 2147483648 is invalid")],
)  # fmt: skip
def test_a_chunk_claiming_more_bytes_than_the_file_holds(tmp_path, length, message):
    path = tmp_path / "long.png"
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    path.write_bytes(head + struct.pack(">I", length) + b"IDAT" + b"\0" * 10)
    with open(path, "rb") as f, pytest.raises(ValueError, match=message):
        check_png_chunks(f, block=4)
