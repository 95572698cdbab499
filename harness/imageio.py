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
* Writes go to a temporary name in the same folder and are renamed into place, so a file under
  its final name is always complete.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.errors import HarnessError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name. Errors name the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: folder not found")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise HarnessError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
    return files


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise HarnessError(f"{path}: not a readable image ({e})") from None


def image_info(path: str | Path) -> tuple[tuple[int, int], tuple[str, ...]]:
    """((width, height), conversions) from the file header, without decoding the pixels.

    Conversions that ``read_rgb`` applies: ``grayscale`` (replicated to RGB), ``alpha``
    (dropped), ``16-bit`` (high byte kept), or another colour mode (``CMYK``...) converted to
    RGB. An 8-bit RGB or palette image without transparency has none.
    """
    try:
        with Image.open(path) as im:
            return im.size, _conversions(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise HarnessError(f"{path}: not a readable image ({e})") from None


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
    try:
        with Image.open(path) as im:
            im.load()  # decodes now, so a truncated file fails here
            return _to_rgb8(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
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
