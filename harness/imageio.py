"""Reading and writing images, with the conventions every other module relies on.

Conventions
-----------
* In memory an image is a ``numpy.uint8`` array of shape ``(H, W, 3)``, RGB.
* As a tensor it is ``float32`` in ``[0, 1]``, shape ``(N, 3, H, W)`` (``to_tensor``).
* Conversions on read (documented, never silent about failure):
  - grayscale (``L``, ``1``, ``I;16``...) is replicated to three channels;
  - an alpha channel (``RGBA``, ``LA``, palette transparency) is dropped, as
    ``PIL.Image.convert('RGB')`` does in the papers' evaluation scripts;
  - 16-bit images keep their high byte (``v >> 8``), which is how Pillow decodes 16-bit RGB PNGs;
    it maps an 8-bit image stored as ``v * 257`` back to ``v`` exactly.
  ``conversions`` names them from the file header, so a run can say what it converted.
* Inputs are checked whole before any work (``image_info``): at most ``MAX_PIXELS`` pixels
  (a decompression bomb is refused from its header); a PNG's chunks all present with right
  CRCs (PIL checks none of the image data's); other formats decoded once. File and folder
  names must be valid UTF-8: they name rows of UTF-8 results files.
* Writes go to a temporary name in the same folder and are renamed into place, so a file under
  its final name is always complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.errors import HarnessError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# PIL's own decompression-bomb threshold (its default MAX_IMAGE_PIXELS, 2**30 // 4 // 3: it warns
# above it and refuses at twice it), made a refusal. 89.5 MP is 9459x9459, far above any Real-ISR
# test image or x4 output (DRealSR's 512x512; full-size RealSR/DRealSR HR photos are 1.5-12 MP),
# and one image that large already takes ~1 GB as the float32 tensor the metrics score (several
# GB in SSIM's float64 planes) per image in flight. A constant here: a library that changes
# PIL's global cannot move it.
MAX_PIXELS = 89_478_485

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, zlib.error,
                  struct.error, Image.DecompressionBombError)  # fmt: skip


def shown(path: str | Path) -> str:
    """``path`` for a message: bytes that are not UTF-8 (which Python keeps as surrogate
    escapes) written as ``\\xff``, so that the message can be printed and stored."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _require_utf8(path: Path) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise HarnessError(
            f"{shown(path)}: name is not valid UTF-8 (results files are UTF-8); rename it"
        ) from None


def check_folder(folder: str | Path) -> Path:
    """``folder`` as a Path if it is a folder with a UTF-8 path; else a one-line error naming
    it: not found, not a folder, a symlink loop, no permission."""
    folder = Path(folder)
    try:
        mode = folder.stat().st_mode
    except FileNotFoundError:
        raise HarnessError(f"{shown(folder)}: folder not found") from None
    except OSError as e:
        why = "symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise HarnessError(f"{shown(folder)}: cannot open folder ({why})") from None
    if not stat.S_ISDIR(mode):
        raise HarnessError(f"{shown(folder)}: not a folder")
    _require_utf8(folder)
    _require_utf8(folder.resolve())  # the resolved path is what results files record
    return folder


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name. Errors name the folder, or a
    file whose name is not valid UTF-8 (it would name a row of the UTF-8 results files)."""
    folder = check_folder(folder)
    try:
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    except OSError as e:
        raise HarnessError(f"{folder}: cannot list folder ({e.strerror or e})") from None
    if not files:
        raise HarnessError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
    for p in files:
        _require_utf8(p)
    return files


def _too_large(path: Path, size: tuple[int, int] | None) -> HarnessError:
    what = f"{size[0]}x{size[1]} is {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return HarnessError(f"{path}: {what}, over the limit of {MAX_PIXELS:,} (a decompression bomb?)")


@contextlib.contextmanager
def _open(path: Path, f: BinaryIO | None = None, quiet: bool = True) -> Iterator[Image.Image]:
    """PIL's lazy open (the header only), refusing more than ``MAX_PIXELS`` pixels. ``quiet``
    silences PIL's bomb warning for the refusal instead; it swaps the process's warning filters,
    so threads (the decoders of the metric stage) open with ``quiet=False``."""
    with warnings.catch_warnings() if quiet else contextlib.nullcontext():
        if quiet:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(f if f is not None else path)
        except Image.DecompressionBombError:  # over twice PIL's limit, before it tells the size
            raise _too_large(path, _png_size(path)) from None
    with im:
        if im.size[0] * im.size[1] > MAX_PIXELS:
            raise _too_large(path, im.size)
        yield im


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR; None for another format."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with _open(path) as im:
            return im.size
    except _DECODE_ERRORS as e:
        raise HarnessError(f"{path}: not a readable image ({e})") from None


def image_info(path: str | Path) -> tuple[tuple[int, int], tuple[str, ...]]:
    """((width, height), conversions) of an input image, checked whole so that a damaged
    input fails before any work, never halfway through scoring.

    Size and conversions come from the header; more than ``MAX_PIXELS`` pixels is refused from
    it. A PNG's chunks are walked in one streaming pass, each one's CRC checked (0.3 ms for a
    512x512 PNG, 5% of decoding it); other formats have no checksums over their data
    and are decoded once.

    Conversions that ``read_rgb`` applies: ``grayscale`` (replicated to RGB), ``alpha``
    (dropped), ``16-bit`` (high byte kept), or another colour mode (``CMYK``...) converted to
    RGB. An 8-bit RGB or palette image without transparency has none.
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; PIL reads the header through it)
    except OSError as e:
        raise HarnessError(f"{path}: not a readable image ({e.strerror or e})") from None
    with f:
        try:
            with _open(path, f) as im:
                size, kinds, fmt = im.size, _conversions(im), im.format
                if fmt != "PNG":
                    im.load()
        except _DECODE_ERRORS as e:
            raise HarnessError(f"{path}: not a readable image ({e})") from None
        if fmt == "PNG":
            try:
                check_png_chunks(f)
            except (OSError, ValueError) as e:
                raise HarnessError(f"{path}: cannot decode image ({e})") from None
    return size, kinds


def check_png_chunks(f: BinaryIO, block: int = 1 << 20) -> None:
    """Walk the PNG in ``f`` from its start: every chunk whole and its CRC (zlib.crc32 over type
    and data) the stored one, up to IEND. Reads ``block`` bytes at a time, so a chunk that
    claims gigabytes costs no memory. A ``ValueError`` says what is wrong and where."""
    f.seek(0)
    if f.read(8) != _PNG_SIGNATURE:
        raise ValueError("no PNG signature")
    offset = 8
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"file ends at byte {offset + len(head)}, before the IEND chunk")
        length, kind = struct.unpack(">I4s", head)
        name = kind.decode("latin-1")
        if length > 0x7FFFFFFF:  # the PNG specification's limit
            raise ValueError(f"chunk {name!r} at byte {offset}: length {length} is invalid")
        crc, left = zlib.crc32(kind), length
        while left:
            data = f.read(min(left, block))
            if not data:
                break
            crc, left = zlib.crc32(data, crc), left - len(data)
        stored = f.read(4)
        if len(stored) < 4:  # the data ran out first, or the CRC is cut
            raise ValueError(f"file ends inside chunk {name!r} at byte {offset}")
        if int.from_bytes(stored, "big") != crc:
            raise ValueError(f"chunk {name!r} at byte {offset}: CRC mismatch, the file is damaged")
        if kind == b"IEND":
            return
        offset += 12 + length


def _conversions(im: Image.Image) -> tuple[str, ...]:
    mode = im.mode
    raw = im.tile[0][3] if im.tile else ""
    raw = raw[0] if isinstance(raw, tuple) and raw else raw
    kinds = []
    if mode in ("1", "L", "LA", "La", "F") or mode in _SIXTEEN_BIT_MODES:
        kinds.append("grayscale")
    if mode in _SIXTEEN_BIT_MODES or ";16" in str(raw):
        kinds.append("16-bit")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        kinds.append("alpha")
    if not kinds and mode not in ("RGB", "P"):
        kinds.append(mode)
    return tuple(kinds)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to a uint8 ``(H, W, 3)`` RGB array (see module conventions)."""
    path = Path(path)
    try:
        with _open(path, quiet=False) as im:  # inputs were checked (image_info) before the work
            im.load()  # decodes now, so a truncated file fails here
            return _to_rgb8(im)
    except _DECODE_ERRORS as e:
        raise HarnessError(f"{path}: cannot decode image ({e})") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:
        a = (np.asarray(im).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)


def _umask_mode() -> int:
    """The mode ``open()`` gives a new file (mkstemp's are 0600). Read once, at import, while
    the process is single-threaded: reading the umask means setting it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write a uint8 RGB array as PNG atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(rgb, mode="RGB").save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STALE_SECONDS = 60.0  # an atomic write takes far less: an older temporary file is orphaned


def sweep_temporary(folder: str | Path, older_than: float = STALE_SECONDS) -> int:
    """Delete the temporary files (``.<name>.*.tmp``) that a killed atomic write left in
    ``folder``, if older than ``older_than`` seconds; returns how many were removed."""
    folder, removed, now = Path(folder), 0, time.time()
    for p in folder.glob(".*.tmp") if folder.is_dir() else ():
        try:
            if now - p.stat().st_mtime > older_than:
                p.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished, or another process swept it
            pass
    return removed


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(1, 3, H, W)`` in [0, 1] (exactly ``v / 255``)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0


def from_tensor(x: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``: clamp, x255, round half-even."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return x.permute(1, 2, 0).numpy()
