"""Where weight files live, whether they are right, and how they get there.

``status`` finds and verifies files, ``install`` copies one in from a folder (air-gapped
clusters), ``fetch`` downloads with resume and hash verification. A file only ever appears under
its final name complete and verified: downloads go to ``<name>.part`` (kept for resuming after a
cut connection, deleted on a hash mismatch) and copies to a temporary name, then ``os.replace``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.checkpoints import file_digest
from harness.errors import HarnessError
from harness.hashing import sha256_file
from harness.weights.manifest import WeightEntry

CHUNK = 1 << 20


def configure_environment() -> None:
    """Point every consumer library at the managed folders; call before importing pyiqa.

    With ``HARNESS_WEIGHTS`` set, ``TORCH_HOME`` and ``HF_HOME`` default to folders inside it,
    so one shared folder serves torchvision, pyiqa, CLIP and timm. ``HF_HUB_OFFLINE`` is set: the
    harness downloads files itself (``harness weights fetch``), libraries never reach out -- a
    missing file is reported at once instead of after a retry loop.
    """
    root = os.environ.get("HARNESS_WEIGHTS")
    if root:
        os.environ.setdefault("TORCH_HOME", str(Path(root).expanduser() / "torch"))
        os.environ.setdefault("HF_HOME", str(Path(root).expanduser() / "huggingface"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def weights_root() -> Path:
    return Path(os.environ.get("HARNESS_WEIGHTS", "~/.cache/harness/weights")).expanduser()


def _torch_hub() -> Path:
    home = os.environ.get("TORCH_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "torch" / "hub"


def _hf_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def location_dir(entry: WeightEntry, data_root: str | Path | None = None) -> Path:
    """The folder the consumer of ``entry`` reads it from."""
    loc = entry.location
    if loc == "torchvision":
        return _torch_hub() / "checkpoints"
    if loc in ("pyiqa", "clip"):
        return _torch_hub() / loc
    if loc.startswith("hf:"):
        repo = _hf_cache() / ("models--" + loc[3:].replace("/", "--"))
        ref = repo / "refs" / "main"
        rev = ref.read_text().strip() if ref.is_file() else "harness"
        return repo / "snapshots" / rev
    if loc.startswith("harness:"):
        return weights_root() / loc.split(":", 1)[1]
    if loc == "data":
        return Path(str(data_root or os.environ.get("HARNESS_DATA", "data"))).expanduser()
    raise HarnessError(f"weights manifest: entry {entry.id} has unknown location '{loc}'")


def path_of(entry: WeightEntry, data_root: str | Path | None = None) -> Path:
    return location_dir(entry, data_root) / entry.name


_PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin", ".tar")


def protection(entry: WeightEntry) -> str:
    """What stands between this file and code execution when it is loaded.

    * ``not pickled``: safetensors, .mat, zips of images -- no code can be named in them;
    * ``restricted loader``: a pickle, read only through ``harness/checkpoints.py`` (the
      harness's own loading, and third-party libraries' ``torch.load`` while
      ``harness.weights.guard`` is active);
    * ``sha256 each load``: a TorchScript archive (CLIP's), which holds code: loaded only when
      its full sha256, computed at that load, is the manifest's.
    """
    if entry.unpack or not entry.name.endswith(_PICKLE_SUFFIXES):
        return "not pickled"
    if entry.location == "clip":
        return "sha256 each load"
    return "restricted loader"


@dataclass
class Status:
    entry: WeightEntry
    path: Path
    state: str  # ok | unverified | missing | bad_hash
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "unverified")

    @property
    def protection(self) -> str:
        return protection(self.entry)


def _hash_problem(entry: WeightEntry, digest: str) -> str | None:
    if entry.sha256 and digest != entry.sha256:
        return f"sha256 {digest[:16]}... differs from the manifest's {entry.sha256[:16]}..."
    if not entry.sha256 and entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        return f"sha256 {digest[:16]}... does not start with {entry.sha256_prefix}"
    return None


def _installed(entry: WeightEntry) -> Path | None:
    """Where the distribution ``entry.installed_as`` is installed, at that version; else None.
    (Its consumer reads the files from there and checks their own hashes.)"""
    if not entry.installed_as:
        return None
    from importlib import metadata

    dist, version = entry.installed_as.split("==")
    try:
        found = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    return Path(str(found.locate_file(""))) if found.version == version else None


def status(entry: WeightEntry, data_root: str | Path | None = None) -> Status:
    path = path_of(entry, data_root)
    if entry.unpack:
        folder = path.with_suffix("")
        if folder.is_dir() and any(folder.iterdir()):
            return Status(entry, folder, "ok", "unpacked")
        return Status(entry, folder, "missing")
    if not path.is_file():
        where = _installed(entry)
        if where is not None:
            return Status(entry, where, "ok", f"installed package {entry.installed_as}")
        return Status(entry, path, "missing")
    if entry.sha256 or entry.sha256_prefix:
        problem = _hash_problem(entry, file_digest(path))
        if problem:
            return Status(entry, path, "bad_hash", problem)
    if not (entry.sha256 or entry.sha256_prefix):
        return Status(entry, path, "unverified", "no published hash: presence checked only")
    return Status(entry, path, "ok")


def require(entries: list[WeightEntry], consumer: str) -> str | None:
    """None when all files are usable; else one line naming the file and how to get it."""
    for e in entries:
        st = status(e)
        if st.state == "missing":
            return (f"missing {e.name} (expected at {st.path}); get it with "
                    f"`harness weights fetch {consumer}`")  # fmt: skip
        if st.state == "bad_hash":
            return (f"{st.path}: {st.detail}; replace it with "
                    f"`harness weights fetch {consumer} --force`")  # fmt: skip
    return None


def _finish(tmp: Path, entry: WeightEntry, dest: Path) -> Path:
    """Verify ``tmp`` against the manifest, then move it to ``dest`` (and unpack a zip)."""
    problem = _hash_problem(entry, sha256_file(tmp))
    if problem:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"{entry.name}: {problem}; the file was not installed")
    os.replace(tmp, dest)
    if entry.unpack:
        _unzip(dest, dest.parent)
    if entry.location.startswith("hf:"):
        # the hub resolves "main" through refs/main: point it at the snapshot we filled
        # (names may hold a folder inside the snapshot, e.g. unet/...safetensors)
        snapshot = dest.parents[len(Path(entry.name).parts) - 1]
        ref = snapshot.parents[1] / "refs" / "main"
        if not ref.is_file():
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(snapshot.name)
    return dest


def _unzip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        root = into.resolve()
        for member in z.namelist():
            target = (root / member).resolve()
            if root not in target.parents and target != root:
                raise HarnessError(f"{archive}: member {member} would unpack outside {root}")
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=into))
        try:
            z.extractall(tmp)
            for child in tmp.iterdir():
                final = into / child.name
                if final.exists():
                    shutil.rmtree(final) if final.is_dir() else final.unlink()
                os.replace(child, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def install(src: Path, entry: WeightEntry, data_root: str | Path | None = None) -> Path:
    """Copy ``src`` into place for ``entry`` after verifying it."""
    dest = path_of(entry, data_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(src, tmp)
        return _finish(tmp, entry, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    entry: WeightEntry,
    data_root: str | Path | None = None,
    mirror: str | None = None,
    on_progress=None,
    timeout: float = 60.0,
) -> Path:
    """Download ``entry`` (from ``mirror/<name>`` if given), resuming a ``.part`` file."""
    url = f"{mirror.rstrip('/')}/{entry.name}" if mirror else entry.url
    if not url.startswith(("http://", "https://")):
        raise HarnessError(f"{entry.name}: only http(s) downloads are supported, not {url}")
    dest = path_of(entry, data_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if have and resp.status != 206:
                have = 0  # the server ignored the range: start over
            total = resp.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with open(part, "ab" if have else "wb") as f:
                done = have
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)
            if total is not None and done < total:
                raise HarnessError(
                    f"{entry.name}: connection closed after {done} of {total} bytes; "
                    "rerun the same command to resume"
                )
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range past the end: the .part is complete
            return _finish(part, entry, dest)
        raise HarnessError(f"{entry.name}: download from {url} failed (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        kept = part.stat().st_size if part.is_file() else 0
        raise HarnessError(
            f"{entry.name}: download from {url} failed ({getattr(e, 'reason', e)}); "
            f"{kept} bytes kept in {part.name}, rerun to resume"
        ) from None
    return _finish(part, entry, dest)
