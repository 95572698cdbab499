"""Fixtures of the hot-path benchmark suite (pytest-benchmark): fixed images, a device option.

Run it apart from the tests (``pytest benchmarks``); README "Benchmarks" has the commands for
saving baselines and failing on a regression (GPU runners) or checking values only (CPU CI).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--bench-device",
        default="cpu",
        help="device for the metric stage and the method forward: cpu, cuda or auto",
    )


@pytest.fixture(scope="session")
def device(request):
    from harness.envinfo import resolve_device

    return resolve_device(request.config.getoption("--bench-device"))


@pytest.fixture(scope="session")
def embedded_pairs():
    """The embedded set (6 LR 128x128 / HR 512x512 pairs, pinned pixels) and bicubic SR images
    of it, in a session folder: ``(dataset, {image name: SR path})``."""
    from harness.datasets.embedded import embedded
    from harness.imageio import from_tensor, read_rgb, to_tensor, write_png
    from harness.methods import METHODS

    root = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    try:
        ds = embedded(root)
        bicubic = METHODS.get("bicubic")({"name": "bicubic", "scale": 4})
        srs = {}
        for s in ds:
            srs[s.name] = root / "sr" / f"{s.name}.png"
            write_png(srs[s.name], from_tensor(bicubic.upscale(to_tensor(read_rgb(s.lr)))[0]))
        yield ds, srs
    finally:
        shutil.rmtree(root, ignore_errors=True)
