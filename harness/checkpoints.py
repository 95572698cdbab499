"""Loading checkpoint files without ever running code from them.

* ``.safetensors``: read directly.
* PyTorch pickles (``.pth``, ``.pkl``, ``.ckpt``, ...), zip or legacy (raw pickle) format: read
  by ``torch.load`` with :mod:`harness.unpickle` as its pickle module, on every path -- the zip
  format's main object and the legacy format's header records, main object and storage keys.
  Tensors are rebuilt through checked calls of torch's rebuilders; any other object the file
  names becomes an inert record (Lightning checkpoints pickle training objects beside their
  weights). TorchScript archives (code by design) and the pre-1.0 tar format are refused
  before torch sees them.
* :func:`restricted_torch_load` is a drop-in for ``torch.load`` with the same guarantees:
  ``harness.weights.guard`` puts it in place while third-party libraries (pyiqa, torchvision,
  CLIP, timm) build their networks, so they never unpickle a file themselves.
* ``file_digest`` hashes a file and remembers the result in the user's own cache folder (never
  beside the file, where whoever can write the weights folder could forge it), keyed by the
  file's device, inode, size, mtime *and* ctime: a file copied over another with ``cp -p`` keeps
  size and mtime but not ctime, which nobody can set.
* ``save_checkpoint`` writes a PyTorch pickle (zip format) atomically: the writers of official
  layouts (tests, ``harness weights fabricate``) go through it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.hashing import sha256_file
from harness.imageio import write_bytes, write_text
from harness.unpickle import RestrictedUnpickler

# torch's own loader, kept before anything replaces ``torch.load`` (harness.weights.guard)
_TORCH_LOAD = torch.load


def _pickle_module(max_numel: int) -> Any:
    """A ``pickle_module`` for ``torch.load`` whose ``Unpickler`` and ``load`` (torch uses both)
    are restricted; no storage may declare more elements than the file has bytes."""

    class Unpickler(RestrictedUnpickler):
        pass

    Unpickler.max_numel = max_numel
    return types.SimpleNamespace(
        __name__="harness.unpickle",
        Unpickler=Unpickler,
        load=lambda file, **kwargs: Unpickler(file, **kwargs).load(),
    )


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path``, which appears only complete (temporary name, then
    rename); objects that share a tensor keep sharing one storage in the file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _map_location(map_location: Any) -> str | torch.device:
    # a device as given; torch's other forms (dicts, callables) only ever meant "keep on the CPU"
    # for the libraries that pass them, and a callable from a caller is not run on our data
    if isinstance(map_location, (str, torch.device)):
        return map_location
    return "cpu"


def load_tensors(
    path: str | Path | io.BytesIO, mmap: bool = False, map_location: Any = "cpu"
) -> Any:
    """The top-level object of a checkpoint file (a dict of tensors, or a dict holding one).

    ``path``: a file, or a ``BytesIO`` of a file's bytes. ``mmap``: map a zip-format file
    instead of reading it (tensors are paged in when used): for large files of which little is
    needed. Legacy-format files are read whole regardless. Every error is a one-line
    :class:`HarnessError` naming the file."""
    if isinstance(path, io.BytesIO):
        where, source, size = "checkpoint bytes", path, len(path.getbuffer())
    else:
        where = path = Path(path)
        if not path.is_file():
            raise HarnessError(f"{path}: checkpoint file not found")
        source, size = path, path.stat().st_size
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                return load_file(str(path), device=str(_map_location(map_location)))
            except Exception as e:  # safetensors raises its own error types
                raise HarnessError(
                    f"{path}: not a readable safetensors file ({_one_line(e)})"
                ) from None
    if size == 0:
        raise HarnessError(f"{where}: empty file, not a checkpoint")
    is_zip = zipfile.is_zipfile(source)
    if is_zip:
        try:
            with zipfile.ZipFile(source) as z:
                if any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in z.namelist()):
                    raise HarnessError(
                        f"{where}: a TorchScript archive (it holds code), not a checkpoint"
                    )
        except zipfile.BadZipFile as e:
            raise HarnessError(f"{where}: not a readable PyTorch checkpoint ({e})") from None
    elif isinstance(source, Path) and tarfile.is_tarfile(source):
        raise HarnessError(f"{where}: a tar-format checkpoint (PyTorch < 1.0): not supported")
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        return _TORCH_LOAD(
            source,
            map_location=_map_location(map_location),
            weights_only=False,  # torch's switch for "use the given pickle_module"
            pickle_module=_pickle_module(max_numel=size),
            mmap=bool(mmap and is_zip and isinstance(source, Path)),
        )
    except pickle.UnpicklingError as e:
        raise HarnessError(f"{where}: refused: {_one_line(e)}") from None
    except HarnessError:
        raise
    except Exception as e:  # torch reports a damaged file with many error types
        raise HarnessError(f"{where}: not a readable PyTorch checkpoint ({_one_line(e)})") from None


def restricted_torch_load(
    f: Any,
    map_location: Any = None,
    pickle_module: Any = None,
    *,
    weights_only: bool | None = None,
    mmap: bool | None = None,
    **pickle_load_args: Any,
) -> Any:
    """``torch.load``'s signature over :func:`load_tensors`: what third-party code gets while
    ``harness.weights.guard`` is active. Its ``pickle_module`` and ``weights_only`` are ignored
    (the restricted reader is always used); a file object is read from its start."""
    del pickle_module, weights_only, pickle_load_args
    if isinstance(f, (str, os.PathLike)):
        return load_tensors(Path(f), mmap=bool(mmap), map_location=map_location)
    name = getattr(f, "name", None)
    if isinstance(name, str) and Path(name).is_file() and f.tell() == 0:
        return load_tensors(Path(name), mmap=bool(mmap), map_location=map_location)
    return load_tensors(io.BytesIO(f.read()), map_location=map_location)


def tensors_only(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Keep the tensor entries of a state dict; error naming ``where`` if there are none."""
    if isinstance(obj, (dict, OrderedDict)):
        out = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
        if out:
            return out
    raise HarnessError(f"{where}: holds no state dict of tensors")


def _digest_record(path: Path) -> Path:
    """Where the digest of ``path`` is remembered: the user's cache folder, one file per path."""
    root = Path(os.environ.get("HARNESS_CACHE", "~/.cache/harness")).expanduser()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return root / "digests" / f"{key}.json"


def file_digest(path: str | Path) -> str:
    """sha256 of a file, remembered while its device, inode, size, mtime and ctime are unchanged.

    The record lives in the user's cache folder (``$HARNESS_CACHE/digests``), never beside the
    file; a record that does not match the file's identity, or cannot be read, is ignored."""
    path = Path(path)
    st = path.stat()
    identity = [str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                st.st_ctime_ns]  # fmt: skip
    record = _digest_record(path)
    try:
        cached = json.loads(record.read_text())
        if cached.get("identity") == identity and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError, RecursionError):
        pass  # absent or unreadable: hash again
    digest = sha256_file(path)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_text(record, json.dumps({"identity": identity, "sha256": digest}))
    except OSError:
        pass  # a read-only cache: hash again next time
    return digest
