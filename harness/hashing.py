"""Stable content hashes for cache keys and manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of the canonical JSON form (sorted keys, no spaces) of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# Keys of a resolved run/eval config that do not change results (where to write, whether to
# recompute, how many threads): left out of the config hash. Readers of run directories
# (leaderboard validation) recompute the hash with the same list.
# `stage` is excluded too: the SR stage and the scoring stage of one run share its directory.
CONFIG_HASH_EXCLUDES = ("out", "force", "cache_dir", "metric_workers", "stage")

# Scale-out keys (harness.shards) left out while they hold these values: an unsharded run keeps
# the hash it had before they existed, and a merged run (`harness merge`) the hash of the same
# run done in one process.
CONFIG_HASH_NEUTRAL: dict[str, Any] = {
    "shards": 1,
    "part": {"method": None, "dataset": None, "shard": None},
}


def config_hash(cfg: dict[str, Any]) -> str:
    """The config hash of ``summary.json`` / ``manifest.json``: sha256 of the resolved config
    without :data:`CONFIG_HASH_EXCLUDES` and neutral scale-out keys."""
    return sha256_json(
        {
            k: v
            for k, v in cfg.items()
            if k not in CONFIG_HASH_EXCLUDES
            and not (k in CONFIG_HASH_NEUTRAL and v == CONFIG_HASH_NEUTRAL[k])
        }
    )
