"""Datasets: folders of LR (and HR) images, and the embedded default set.

``DATASET_TYPES`` maps the ``type`` key of a dataset config (``configs/dataset/*.yaml``) to a
builder ``(cfg, cache_dir) -> ImageDataset``. Named datasets (DRealSR, RealSR, ...) are configs,
not code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.datasets.base import ImageDataset, Sample, lr_folder, paired_folder
from harness.errors import HarnessError
from harness.registry import Registry

DatasetBuilder = Callable[[Mapping[str, Any], Path], ImageDataset]
DATASET_TYPES: Registry[DatasetBuilder] = Registry("dataset type")


def _require_folder(cfg: Mapping[str, Any], key: str) -> Path:
    path = Path(str(cfg[key])).expanduser()
    if not path.is_dir():
        source = cfg.get("source")
        hint = f"; get it from {source}" if source else ""
        raise HarnessError(
            f"dataset '{cfg['name']}': {key} folder {path} not found{hint} "
            f"(set data_root=DIR or HARNESS_DATA)"
        )
    return path


@DATASET_TYPES.register("paired")
def _paired(cfg: Mapping[str, Any], cache_dir: Path) -> ImageDataset:
    lr, hr = _require_folder(cfg, "lr_dir"), _require_folder(cfg, "hr_dir")
    return paired_folder(cfg["name"], lr, hr, int(cfg["scale"]))


@DATASET_TYPES.register("lr_only")
def _lr_only(cfg: Mapping[str, Any], cache_dir: Path) -> ImageDataset:
    return lr_folder(cfg["name"], _require_folder(cfg, "lr_dir"), int(cfg["scale"]))


@DATASET_TYPES.register("folder")
def _folder(cfg: Mapping[str, Any], cache_dir: Path) -> ImageDataset:
    """A user's folder (``--datasets PATH``): ``LR/`` with ``HR/`` pairs, ``LR/`` alone, or
    LR images directly in the folder."""
    root = _require_folder(cfg, "root")
    lr, hr, scale = root / "LR", root / "HR", int(cfg["scale"])
    if lr.is_dir():
        if hr.is_dir():
            return paired_folder(cfg["name"], lr, hr, scale)
        return lr_folder(cfg["name"], lr, scale)
    if hr.is_dir():
        raise HarnessError(f"{root}: has HR/ but no LR/ (expected LR/ and HR/, or LR images)")
    return lr_folder(cfg["name"], root, scale)


@DATASET_TYPES.register("embedded")
def _embedded(cfg: Mapping[str, Any], cache_dir: Path) -> ImageDataset:
    from harness.datasets.embedded import embedded

    return embedded(cache_dir, cfg["name"])


def build_dataset(cfg: Mapping[str, Any], cache_dir: Path) -> ImageDataset:
    return DATASET_TYPES.get(str(cfg.get("type", "paired")))(cfg, cache_dir)


__all__ = ["DATASET_TYPES", "ImageDataset", "Sample", "build_dataset"]
