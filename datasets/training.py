"""Training batches from a folder of HR images: random crops, flips and the Real-ESRGAN
degradation, a pure function of (seed, step).

``TrainPairs.batch(step)`` returns the same tensors for the same step on any run, so training
resumes exactly without saving data-loader state, and batches do not depend on worker count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.datasets.degradation import DegradationParams, degrade
from harness.errors import HarnessError
from harness.imageio import IMAGE_SUFFIXES, read_rgb


def hr_files(root: str | Path) -> list[Path]:
    """Image files under ``root``, recursively, sorted (directories never count as images)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise HarnessError(f"{root}: training folder not found")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise HarnessError(f"{root}: no images for training")
    return files


class TrainPairs:
    """Deterministic (LR, HR) batches: ``crop`` x ``crop`` HR, ``crop/scale`` LR, in [0, 1]."""

    def __init__(self, root: str | Path, crop: int, batch_size: int, seed: int = 0,
                 degrade_lr: bool = True, hflip: bool = True, fixed_batch: bool = False,
                 params: DegradationParams | None = None) -> None:  # fmt: skip
        self.files = hr_files(root)
        self.crop, self.batch_size, self.seed = crop, batch_size, seed
        self.degrade_lr, self.hflip, self.fixed_batch = degrade_lr, hflip, fixed_batch
        self.params = params or DegradationParams()
        if crop % self.params.scale:
            raise HarnessError(f"train crop {crop} is not a multiple of scale {self.params.scale}")
        self._cache: dict[Path, np.ndarray] = {}

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            img = read_rgb(path)
            if min(img.shape[:2]) < self.crop:
                raise HarnessError(f"{path}: smaller than the {self.crop}px training crop")
            if len(self._cache) < 64:  # small sets stay decoded
                self._cache[path] = img
            return img
        return self._cache[path]

    def sample(self, step: int, slot: int) -> tuple[np.ndarray, np.ndarray | None]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed_batch else step, slot])
        img = self._image(self.files[int(rng.integers(len(self.files)))])
        top = int(rng.integers(img.shape[0] - self.crop + 1))
        left = int(rng.integers(img.shape[1] - self.crop + 1))
        hr = img[top : top + self.crop, left : left + self.crop]
        if self.hflip and rng.uniform() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        lr = degrade(hr, rng, self.params) if self.degrade_lr else None
        return hr, lr

    def batch(
        self, step: int, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(LR or None, HR) float32 NCHW in [0, 1] for ``step`` (this rank's share)."""
        hrs, lrs = [], []
        for i in range(self.batch_size):
            hr, lr = self.sample(step, rank + i * world)
            hrs.append(torch.from_numpy(hr.transpose(2, 0, 1).copy()).float() / 255)
            if lr is not None:
                lrs.append(torch.from_numpy(lr.transpose(2, 0, 1).copy()).float())
        return (torch.stack(lrs) if lrs else None), torch.stack(hrs)
