"""Third-party libraries never unpickle a file themselves.

pyiqa, torchvision, CLIP, LPIPS and timm read their weights with ``torch.load`` (full pickle
in several of them) and CLIP's archives with ``torch.jit.load``. While :func:`guarded` is
active:

* ``torch.load`` is :func:`harness.checkpoints.restricted_torch_load`: the same restricted
  reader as the harness's own checkpoints, whatever the caller asked for;
* ``torch.jit.load`` (a TorchScript archive holds code that runs when it is loaded) loads a
  file only if its full sha256, computed on this call, equals a full sha256 of the weights
  manifest. Nothing is taken from a cache: a file swapped in after a check is caught.

The guard is re-entrant and process-wide (it replaces module attributes): the CLI holds it for
the whole command, and :class:`harness.metrics.suite.MetricSuite` takes it while building
metrics for library users.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.jit
import torch.serialization

from harness.checkpoints import restricted_torch_load
from harness.errors import HarnessError
from harness.hashing import sha256_file

_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}


def _trusted_digests() -> set[str]:
    from harness.weights.manifest import load_manifest

    return {e.sha256 for e in load_manifest().values() if e.sha256}


def _archive_path(f: Any) -> Path:
    if isinstance(f, (str, Path)):
        return Path(f)
    name = getattr(f, "name", None)
    if isinstance(name, str) and Path(name).is_file():
        return Path(name)
    raise HarnessError("a TorchScript archive is only loaded from a file of the weights manifest")


def checked_jit_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.jit.load`` for files whose full sha256 (hashed now) the manifest publishes."""
    path = _archive_path(f)
    digest = sha256_file(path)
    if digest not in _trusted_digests():
        raise HarnessError(
            f"{path}: a TorchScript archive runs code when loaded, and its sha256 "
            f"{digest[:16]}... is not a published one of the weights manifest; not loaded"
        )
    return _saved["jit_load"](f, *args, **kwargs)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Route ``torch.load`` and ``torch.jit.load`` through the checks above for the block."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved["load"], _saved["jit_load"] = torch.load, torch.jit.load
            torch.load = torch.serialization.load = restricted_torch_load
            torch.jit.load = checked_jit_load
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                torch.load = torch.serialization.load = _saved["load"]
                torch.jit.load = _saved["jit_load"]
