"""Loading checkpoint files without ever running code from them.

* ``.safetensors``: read directly.
* PyTorch pickles (``.pth``, ``.pkl``, ``.ckpt``), zip or legacy (raw pickle) format:
  ``torch.load(weights_only=True)`` first. Some official files (PyTorch-Lightning checkpoints)
  also pickle training objects that the weights-only loader refuses; those are read with a
  restricted unpickler that rebuilds tensors through torch's own functions and turns every other
  class into an inert placeholder, so no function named in the file is ever called. torch's
  loaders unpickle through ``pickle_module.Unpickler`` (zip format, main object of the legacy
  format) *and* ``pickle_module.load`` (the legacy header records and storage keys): both are
  restricted here.
* ``weights_only_check``: whether a pickled file loads with nothing but tensors and containers
  -- the check that must pass before a third-party library (pyiqa, torchvision) unpickles a file
  whose full sha256 is not published.
* ``file_digest`` hashes a file once and remembers the result beside the file's size and mtime.
* ``save_checkpoint`` writes a PyTorch pickle (zip format) atomically: the writers of official
  layouts (tests, ``harness weights fabricate``) go through it.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.hashing import sha256_file
from harness.imageio import write_bytes, write_text

_TORCH_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
    ("torch", "device"),
    ("collections", "OrderedDict"),
}


class _Inert:
    """Stands in for any pickled class outside the allowlist; keeps its state as plain data."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in _TORCH_REBUILDERS:
            return super().find_class(module, name)
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        return _Inert


def _restricted_load(file, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose every unpickling path calls nothing but torch
    rebuilders (``Unpickler`` for the zip format, ``load`` for the legacy format's records)."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(_restricted_load)
    __name__ = "harness_restricted_pickle"


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path``, which appears only complete (temporary name, then
    rename); objects that share a tensor keep sharing one storage in the file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_tensors(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The top-level object of a checkpoint file (a dict of tensors, or a dict holding one).

    ``mmap``: map a zip-format file instead of reading it (tensors are paged in when used): for
    large files of which little is needed. Legacy-format files are read whole regardless."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    extra = {"mmap": True} if mmap and zipfile.is_zipfile(path) else {}
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **extra)
    except pickle.UnpicklingError:
        pass  # objects the weights-only loader refuses: read them as inert data instead
    except (RuntimeError, EOFError, OSError) as e:
        raise HarnessError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    try:
        return torch.load(
            path,
            map_location="cpu",
            weights_only=False,
            pickle_module=_RestrictedPickleModule,
            **extra,
        )
    except Exception as e:
        raise HarnessError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


def weights_only_check(path: str | Path) -> str | None:
    """None if torch's weights-only loader reads ``path`` (tensors and plain containers only);
    else why not, in one line. Safetensors and non-pickle files are not this function's job."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception as e:  # any refusal: the file holds more than weights
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"a weights-only load refuses it ({first[:160]})"
    return None


def tensors_only(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Keep the tensor entries of a state dict; error naming ``where`` if there are none."""
    if isinstance(obj, (dict, OrderedDict)):
        out = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
        if out:
            return out
    raise HarnessError(f"{where}: holds no state dict of tensors")


def _sidecar(path: Path) -> tuple[Path, dict[str, Any]]:
    """``<file>.sha256.json`` and its record, empty unless it matches the file's size and mtime."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    fresh = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text())
        if all(cached.get(k) == v for k, v in fresh.items()):
            return sidecar, cached
    except (OSError, ValueError, AttributeError):
        pass
    return sidecar, fresh


def _remember(sidecar: Path, record: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only weights folder: compute again next time
        write_text(sidecar, json.dumps(record))


def file_digest(path: str | Path) -> str:
    """sha256 of a file, cached in ``<file>.sha256.json`` keyed by size and mtime."""
    path = Path(path)
    sidecar, record = _sidecar(path)
    if "sha256" not in record:
        record["sha256"] = sha256_file(path)
        _remember(sidecar, record)
    return record["sha256"]


def weights_only_verdict(path: str | Path) -> str | None:
    """:func:`weights_only_check`, remembered beside the file digest (same size/mtime key)."""
    path = Path(path)
    sidecar, record = _sidecar(path)
    if "weights_only" not in record:
        record["weights_only"] = weights_only_check(path) or "ok"
        _remember(sidecar, record)
    return None if record["weights_only"] == "ok" else record["weights_only"]
