"""Parts of a run: which (method, dataset, shard) a job computes, and in which stage.

A run's config (``configs/run.yaml``) says what the whole run is; three keys say what one job of
a fan-out does with it (``harness run --launcher``, ``harness/launch/``):

* ``shards: N`` splits every dataset into N shards by image name: the names sorted, shard ``i``
  holds those at positions ``i, i+N, i+2N, ...`` (deterministic, sizes differ by at most one,
  independent of file order on disk);
* ``part: {method, dataset, shard}`` selects one method, one dataset and one shard (null: all);
* ``stage: sr|score|all``: upscale only (SR images into the cache), score cached images only,
  or both.

A shard keeps the identity of its whole dataset (file list and manifest hash): the SR cache key
and the run manifest are those of the whole dataset, so every shard writes into the same cache
folder and ``harness merge`` can check that the shards cover the dataset exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.datasets import ImageDataset
from harness.errors import HarnessError

STAGES = ("sr", "score", "all")


def shard_names(names: Sequence[str], index: int, count: int) -> list[str]:
    """The names of shard ``index`` of ``count`` (0-based), in sorted order."""
    if count < 1 or not 0 <= index < count:
        raise HarnessError(f"shard {index} of {count}: needs 0 <= shard < shards")
    return sorted(names)[index::count]


class Shard(ImageDataset):
    """The samples of one shard, with the identity (manifest, hash, HR presence) of the whole
    dataset. ``len`` and iteration cover the shard only."""

    def __init__(self, whole: ImageDataset, index: int, count: int) -> None:
        keep = set(shard_names([s.name for s in whole], index, count))
        samples = [s for s in whole if s.name in keep]
        super().__init__(whole.name, samples, whole.scale, whole.conversions)
        self.whole = whole
        self.index, self.count = index, count

    @property
    def has_hr(self) -> bool:
        return self.whole.has_hr

    def manifest(self) -> list[dict]:
        return self.whole.manifest()


def check_part(cfg: Mapping[str, Any]) -> None:
    """One-line errors for inconsistent scale-out keys (before any work)."""
    stage, shards = cfg.get("stage", "all"), cfg.get("shards", 1)
    part = cfg.get("part") or {}
    if stage not in STAGES:
        raise HarnessError(f"stage={stage} (--stage): must be one of {', '.join(STAGES)}")
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise HarnessError(f"shards={shards} (--shards): must be an integer >= 1")
    for key, names in (("method", cfg["methods"]), ("dataset", cfg["datasets"])):
        value = part.get(key)
        if value is not None and value not in names:
            raise HarnessError(
                f"part.{key}={value}: not among the selected {key}s ({', '.join(names)})"
            )
    shard = part.get("shard")
    if shard is not None and (
        not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < shards
    ):
        raise HarnessError(f"part.shard={shard}: must be an integer in 0..{shards - 1} (shards)")


def selected(cfg: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(methods, datasets) this job computes, in the run's order."""
    part = cfg.get("part") or {}
    methods = [m for m in cfg["methods"] if part.get("method") in (None, m)]
    datasets = [d for d in cfg["datasets"] if part.get("dataset") in (None, d)]
    return methods, datasets


def shard_of(ds: ImageDataset, cfg: Mapping[str, Any]) -> ImageDataset:
    """The part of ``ds`` this job computes: a :class:`Shard` when the run is sharded."""
    shards = int(cfg.get("shards", 1))
    shard = (cfg.get("part") or {}).get("shard")
    if shards == 1 and shard in (None, 0):
        return ds
    if shard is None:  # a sharded run's job without a shard computes every shard
        return ds
    return Shard(ds, int(shard), shards)


def dataset_entry(ds: ImageDataset) -> dict[str, Any]:
    """What the run manifest adds for a shard: the whole count, and the shard's images."""
    if not isinstance(ds, Shard):
        return {}
    return {
        "n_images": len(ds.whole),
        "shard": {"index": ds.index, "of": ds.count, "images": [s.name for s in ds]},
    }


def is_partial(ds: ImageDataset) -> bool:
    """Whether ``ds`` is a proper part of its dataset (set-level metrics need all of it)."""
    return isinstance(ds, Shard) and len(ds) < len(ds.whole)


def profiles_here(cfg: Mapping[str, Any]) -> bool:
    """Whether this job profiles its methods: in a fan-out, only the jobs holding the first
    dataset's shard 0 do (one efficiency row per method); never the scoring stage."""
    if cfg.get("stage", "all") == "score":
        return False
    part = cfg.get("part") or {}
    first = cfg["datasets"][0]
    return part.get("dataset") in (None, first) and part.get("shard") in (None, 0)
