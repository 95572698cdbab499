"""Reading a results bundle without trusting it.

A *bundle* is what a leaderboard accepts: a run directory's files, as a folder or as a ``.zip``
(the files at the archive's root or inside one top folder). Read are only the files named in
:data:`FILES` and PNG figures under a ``figures/`` folder; anything else is listed as ignored and
never opened. Nothing is executed, unpickled or extracted to disk: JSON is parsed strictly (no
NaN/Infinity, no duplicate keys), CSV as text, YAML with the safe loader and without aliases
(no billion-laughs expansion). Limits: file sizes (:data:`FILES`, :data:`MAX_FIGURE_BYTES`),
total size, entry count, nesting depth. Paths that leave the bundle (``..``, absolute, drive
letters, backslashes), symbolic links and encrypted zip entries reject the whole bundle.

Members are read in chunks, and every limit is checked on the bytes actually read, as they
arrive (a zip's declared sizes are checked first, but may lie): size per member, total size,
expansion ratio of a compressed member (:data:`MAX_RATIO`), and for CSV the number of lines and
the length of a line (:data:`CSV_LINES`, :data:`MAX_LINE_BYTES`). So a small zip that inflates
to millions of empty lines is rejected after reading a bounded prefix, in a fraction of a
second, naming the member; nothing is parsed before its member has been read within limits.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from harness.errors import HarnessError

MiB = 1 << 20
# name -> (kind, required, size limit in bytes)
FILES: dict[str, tuple[str, bool, int]] = {
    "manifest.json": ("json", True, 16 * MiB),  # dataset file lists: ~200 bytes per image
    "summary.json": ("json", True, 4 * MiB),
    "config.yaml": ("yaml", True, 256 * 1024),
    "per_image.csv": ("csv", True, 64 * MiB),
    "efficiency.json": ("json", False, 4 * MiB),
    "efficiency.csv": ("csv", False, 1 * MiB),
    "report.md": ("text", False, 1 * MiB),
}
MAX_FIGURE_BYTES = 8 * MiB
MAX_FIGURES = 100
MAX_TOTAL_BYTES = 256 * MiB
MAX_ENTRIES = 20_000  # files listed in a bundle, read or not
MAX_DEPTH = 64  # JSON/YAML nesting
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHUNK = 64 * 1024
# Expansion of a compressed member, checked once it passes RATIO_FLOOR bytes: the store's files
# deflate 2-5x; a bomb of repeated bytes ~1000x.
MAX_RATIO = 100
RATIO_FLOOR = 1 * MiB
# lines per CSV (per_image.csv: methods x datasets x images) and bytes per line
CSV_LINES = {"per_image.csv": 250_000, "efficiency.csv": 10_000}
MAX_LINE_BYTES = 64 * 1024


class Rejected(HarnessError):
    """A bundle that does not pass; the message is the one-line reason (``file: what``)."""


@dataclass
class Bundle:
    """The readable content of a bundle: known files' bytes, figures' bytes, ignored names."""

    source: str
    files: dict[str, bytes]
    figures: dict[str, bytes] = field(default_factory=dict)  # path inside the bundle -> PNG
    ignored: list[str] = field(default_factory=list)

    def json(self, name: str) -> Any:
        return parse_json(self.files[name], name)

    def yaml(self, name: str) -> Any:
        return parse_yaml(self.files[name], name)

    def csv(self, name: str) -> list[list[str]]:
        return parse_csv(self.files[name], name)


def open_bundle(path: str | Path) -> Bundle:
    """Read a bundle folder or zip; :class:`Rejected` names the first problem."""
    path = Path(path)
    if path.is_symlink():
        raise Rejected(f"{path}: a symbolic link; give the bundle itself")
    if path.is_dir():
        entries = _dir_entries(path)
    elif path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return _read(str(path), _zip_entries(zf))
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise Rejected(f"{path.name}: unreadable zip ({e})") from None
    elif path.exists():
        raise Rejected(f"{path}: neither a folder nor a zip archive")
    else:
        raise HarnessError(f"{path}: bundle not found")
    return _read(str(path), entries)


# An entry: (name inside the bundle, declared size, compressed size or None, opener() -> a
# binary file object)
_Entry = tuple[str, int, int | None, Any]


def _read(source: str, entries: list[_Entry]) -> Bundle:
    if len(entries) > MAX_ENTRIES:
        raise Rejected(f"more than {MAX_ENTRIES} entries")
    names = [_safe_name(n) for n, _, _, _ in entries]
    prefix = _common_top(names)
    bundle = Bundle(source, {})
    total = 0
    budget = _Budget()
    for (_, size, packed, opener), name in zip(entries, names):
        rel = name[len(prefix) :] if prefix else name
        total += size
        if total > MAX_TOTAL_BYTES:
            raise Rejected(f"larger than {MAX_TOTAL_BYTES // MiB} MiB in all")
        if rel in FILES:
            limit = FILES[rel][2]
            if size > limit:
                raise Rejected(f"{rel}: {size} bytes (limit {limit})")
            if rel in bundle.files:
                raise Rejected(f"{rel}: present twice")
            bundle.files[rel] = _limited(opener, limit, rel, packed, budget, CSV_LINES.get(rel))
        elif _is_figure(rel):
            if size > MAX_FIGURE_BYTES:
                raise Rejected(f"{rel}: {size} bytes (limit {MAX_FIGURE_BYTES} per figure)")
            if len(bundle.figures) >= MAX_FIGURES:
                raise Rejected(f"more than {MAX_FIGURES} figures")
            data = _limited(opener, MAX_FIGURE_BYTES, rel, packed, budget)
            if not data.startswith(PNG_MAGIC):
                raise Rejected(f"{rel}: not a PNG file (wrong signature)")
            bundle.figures[rel] = data
        else:
            bundle.ignored.append(rel)
    for name, (_, required, _) in FILES.items():
        if required and name not in bundle.files:
            raise Rejected(f"{name}: missing (a bundle holds a finished run directory's files)")
    return bundle


def _is_figure(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return rel.lower().endswith(".png") and "figures" in parts[:-1]


def _safe_name(name: str) -> str:
    """The entry name if it stays inside the bundle; otherwise the bundle is rejected."""
    bad = (
        not name
        or "\\" in name
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)  # NUL, terminal escapes
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
        or any(p in ("..", "") for p in name.rstrip("/").split("/"))
        or len(name) > 1024
    )
    if bad:
        raise Rejected(f"entry {name[:80]!r}: path leaves the bundle or is malformed")
    return name


def _common_top(names: list[str]) -> str:
    """'top/' when every entry is inside one folder and manifest.json is not at the root."""
    if "manifest.json" in names or not names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return f"{tops.pop()}/"
    return ""


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


@dataclass
class _Budget:
    """Bytes actually read from every member so far (a zip's declared sizes may lie)."""

    read: int = 0

    def take(self, n: int) -> None:
        self.read += n
        if self.read > MAX_TOTAL_BYTES:
            raise Rejected(f"larger than {MAX_TOTAL_BYTES // MiB} MiB in all (uncompressed)")


def _limited(
    opener, limit: int, name: str, packed: int | None, budget: _Budget, lines: int | None = None
) -> bytes:
    """The member's bytes, read in chunks with every limit checked as they arrive: ``limit``
    bytes, the bundle's total, ``MAX_RATIO`` times its compressed size ``packed`` (zip), and
    with ``lines``: at most that many lines of at most ``MAX_LINE_BYTES`` each."""
    chunks: list[bytes] = []
    n = n_lines = tail = 0  # bytes, newlines, length of the line still open
    try:
        with opener() as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
                if n > limit:  # the declared size lied (zip) or the file grew
                    raise Rejected(f"{name}: larger than its limit of {limit} bytes")
                budget.take(len(chunk))
                if packed is not None and n > RATIO_FLOOR and n > MAX_RATIO * max(packed, 1):
                    raise Rejected(
                        f"{name}: expands more than {MAX_RATIO} times ({packed} bytes compressed, "
                        f"{n} read so far): a compression bomb"
                    )
                if lines is not None:
                    n_lines += chunk.count(b"\n")
                    if n_lines > lines:
                        raise Rejected(f"{name}: more than {lines} lines")
                    parts = chunk.split(b"\n")
                    longest = max([tail + len(parts[0]), *(len(p) for p in parts[1:])])
                    tail = len(parts[-1]) if len(parts) > 1 else tail + len(parts[0])
                    if longest > MAX_LINE_BYTES:
                        raise Rejected(f"{name}: a line longer than {MAX_LINE_BYTES} bytes")
                chunks.append(chunk)
    except Rejected:
        raise
    except _READ_ERRORS as e:
        raise Rejected(f"{name}: unreadable ({str(e)[:120]})") from None
    return b"".join(chunks)


def _dir_entries(root: Path) -> list[_Entry]:
    out: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                raise Rejected(f"{Path(dirpath, d).relative_to(root)}: symbolic link")
        for f in filenames:
            p = Path(dirpath) / f
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise Rejected(f"{rel}: symbolic link")
            if not stat.S_ISREG(st.st_mode):
                raise Rejected(f"{rel}: not a regular file")
            out.append((rel, st.st_size, None, _file_opener(p)))
        if len(out) > MAX_ENTRIES:
            raise Rejected(f"more than {MAX_ENTRIES} entries")
    return sorted(out, key=lambda e: e[0])


def _file_opener(p: Path):
    return lambda: open(p, "rb")


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    out: list[_Entry] = []
    for info in zf.infolist():
        if info.is_dir():
            _safe_name(info.filename)
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise Rejected(f"{info.filename}: symbolic link")
        if info.flag_bits & 0x1:
            raise Rejected(f"{info.filename}: encrypted entry")
        out.append((info.filename, info.file_size, info.compress_size, _zip_opener(zf, info)))
    return out


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    return lambda: zf.open(info)


# ----------------------------------------------------------------------------- parsers


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes, name: str) -> Any:
    text = _text(data, name)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise Rejected(
            f"{name}: invalid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    except (ValueError, RecursionError) as e:
        raise Rejected(f"{name}: invalid JSON ({str(e)[:120] or 'nested too deeply'})") from None
    _check_depth(value, name)
    return value


class _SafeNoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses anchors and aliases (the store never writes them)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("anchors and aliases are not allowed")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.YAMLError("anchors and aliases are not allowed")
        return super().compose_node(parent, index)


def parse_yaml(data: bytes, name: str) -> Any:
    text = _text(data, name)
    try:
        value = yaml.load(text, Loader=_SafeNoAliasLoader)  # noqa: S506 (safe loader subclass)
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Rejected(f"{name}: invalid YAML ({first[:160]})") from None
    _check_depth(value, name)
    return value


def parse_csv(data: bytes, name: str) -> list[list[str]]:
    text = _text(data, name)
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise Rejected(f"{name}: invalid CSV ({e})") from None


def _check_depth(value: Any, name: str) -> None:
    from harness.runfiles import too_deep

    if too_deep(value, MAX_DEPTH):
        raise Rejected(f"{name}: nested deeper than {MAX_DEPTH} levels")


def walk(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a parsed document with its path (``results[0].metrics.psnr.mean``);
    dict keys are yielded as leaves too (``<key>`` suffix), so no string escapes a check."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{where}.{k}" if where else str(k)
            yield f"{sub} <key>", k
            yield from walk(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{where}[{i}]")
    else:
        yield where, value
