"""The embedded set must be the same on every machine and run: its pixels are pinned here."""

import hashlib

import numpy as np

from harness.datasets import build_dataset
from harness.datasets import embedded as E
from harness.imageio import read_rgb

# sha256 (first 16 hex) of the raw uint8 pixels of (HR, LR). A change here changes every
# embedded result: bump embedded.VERSION and say so in the changelog.
PINNED = {
    "astronaut": ("a8c429c18afa7b0f", "aca31165f63cc573"),
    "immunohistochemistry": ("c5b3ef509a92f16d", "746a0952c68743fe"),
    "hubble_centre": ("a97595cb403f1edb", "5d533e309c0685a8"),
    "hubble_corner": ("937d3c113175f0af", "1196e04c85aaff0c"),
    "retina_centre": ("529f211bfce5238f", "fcadb73f2cc38e3c"),
    "retina_vessels": ("5f6bddaf61e33286", "304757bf46363804"),
}


def _h(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_embedded_pixels_are_pinned(cache_dir):
    ds = build_dataset({"name": "embedded", "type": "embedded"}, cache_dir)
    assert [s.name for s in ds] == sorted(PINNED)
    for s in ds:
        hr, lr = read_rgb(s.hr), read_rgb(s.lr)
        assert hr.shape == (512, 512, 3) and lr.shape == (128, 128, 3)
        assert (_h(hr), _h(lr)) == PINNED[s.name], s.name


def test_lr_does_not_depend_on_generation_order():
    names = list(E.CROPS)
    i = len(names) - 1
    first = E.lr_image(i, E.hr_image(names[i]))
    E.lr_image(0, E.hr_image(names[0]))  # draw something else in between
    np.testing.assert_array_equal(E.lr_image(i, E.hr_image(names[i])), first)


def test_incomplete_copy_is_rebuilt(tmp_path):
    folder = E.materialise(tmp_path)
    (folder / "manifest.json").unlink()  # as if killed before the end
    (folder / "LR" / "astronaut.png").unlink()
    E.materialise(tmp_path)
    assert (folder / "LR" / "astronaut.png").is_file()
