"""Loading checkpoint files without ever running code from them.

* ``.safetensors``: read directly.
* PyTorch pickles (``.pth``, ``.pkl``, ``.ckpt``): ``torch.load(weights_only=True)`` first. Some
  official files (PyTorch-Lightning checkpoints) also pickle training objects that the
  weights-only loader refuses; those are read with a restricted unpickler that rebuilds tensors
  through torch's own functions and turns every other class into an inert placeholder, so no
  function named in the file is ever called.
* ``file_digest`` hashes a file once and remembers the result beside the file's size and mtime.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.hashing import sha256_file
from harness.imageio import write_text

_TORCH_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
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


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose unpickler calls nothing but torch rebuilders."""

    Unpickler = _RestrictedUnpickler
    load = pickle.load
    __name__ = "harness_restricted_pickle"


def load_tensors(path: str | Path) -> dict[str, Any]:
    """The top-level object of a checkpoint file (a dict of tensors, or a dict holding one)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # objects the weights-only loader refuses: read them as inert data instead
    except (RuntimeError, EOFError, OSError) as e:
        raise HarnessError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule
        )
    except Exception as e:
        raise HarnessError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


def tensors_only(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Keep the tensor entries of a state dict; error naming ``where`` if there are none."""
    if isinstance(obj, (dict, OrderedDict)):
        out = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
        if out:
            return out
    raise HarnessError(f"{where}: holds no state dict of tensors")


def file_digest(path: str | Path) -> str:
    """sha256 of a file, cached in ``<file>.sha256.json`` keyed by size and mtime."""
    path = Path(path)
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    try:
        cached = json.loads(sidecar.read_text())
        if cached["size"] == stat.st_size and cached["mtime_ns"] == stat.st_mtime_ns:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only weights folder: hash again next time
        write_text(sidecar, json.dumps(record))
    return digest
