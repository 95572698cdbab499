"""Weights management: the manifest of files and the manager that finds, verifies and fetches
them (``harness weights list|check|fetch|import``)."""

from harness.weights.manager import (
    Status,
    configure_environment,
    fetch,
    install,
    location_dir,
    path_of,
    require,
    status,
    weights_root,
)
from harness.weights.manifest import WeightEntry, load_manifest

__all__ = [
    "Status", "WeightEntry", "configure_environment", "fetch", "install", "load_manifest",
    "location_dir", "path_of", "require", "status", "weights_root",
]  # fmt: skip
