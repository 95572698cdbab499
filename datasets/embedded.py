"""The embedded default test set: made offline from photographs that ship with scikit-image.

HR: 512x512 crops of scikit-image's bundled RGB photographs. LR: 128x128, made from each HR by
the Real-ESRGAN second-order degradation with a per-image seed, so the set is identical on every
machine and run (``tests/test_embedded.py`` pins the pixel hashes). Materialised once into the
cache folder as ``{LR,HR}/*.png`` plus ``manifest.json``, which is written last and marks a
complete copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.datasets.base import ImageDataset, paired_folder
from harness.datasets.degradation import degrade_uint8
from harness.imageio import write_png, write_text

VERSION = 1
SEED = 20251126
HR_SIZE = 512
SCALE = 4

# name -> (scikit-image loader, top, left) of the 512x512 crop
CROPS: dict[str, tuple[str, int, int]] = {
    "astronaut": ("astronaut", 0, 0),
    "immunohistochemistry": ("immunohistochemistry", 0, 0),
    "hubble_centre": ("hubble_deep_field", 180, 244),
    "hubble_corner": ("hubble_deep_field", 0, 488),
    "retina_centre": ("retina", 449, 449),
    "retina_vessels": ("retina", 150, 750),
}


def hr_image(name: str) -> np.ndarray:
    """The uint8 512x512x3 HR crop called ``name``."""
    from skimage import data

    loader, top, left = CROPS[name]
    img = getattr(data, loader)()[..., :3]
    crop = img[top : top + HR_SIZE, left : left + HR_SIZE]
    assert crop.shape == (HR_SIZE, HR_SIZE, 3), (name, crop.shape)
    return np.ascontiguousarray(crop, dtype=np.uint8)


def lr_image(index: int, hr: np.ndarray) -> np.ndarray:
    """The LR image for the ``index``-th crop: seeded by (SEED, index), independent of order."""
    return degrade_uint8(hr, np.random.default_rng([SEED, index]))


def materialise(root: Path) -> Path:
    """Write the set under ``root/embedded-v{VERSION}`` unless a complete copy is there."""
    folder = root / f"embedded-v{VERSION}"
    if (folder / "manifest.json").is_file():
        return folder
    for i, name in enumerate(CROPS):
        hr = hr_image(name)
        write_png(folder / "HR" / f"{name}.png", hr)
        write_png(folder / "LR" / f"{name}.png", lr_image(i, hr))
    meta = {"version": VERSION, "seed": SEED, "images": list(CROPS), "scale": SCALE}
    write_text(folder / "manifest.json", json.dumps(meta, indent=2) + "\n")
    return folder


def embedded(cache_dir: str | Path, name: str = "embedded") -> ImageDataset:
    folder = materialise(Path(cache_dir).expanduser() / "datasets")
    return paired_folder(name, folder / "LR", folder / "HR", SCALE)
