"""Reading a run directory's result files without trusting them (reports, the gate).

A run directory may have been edited by hand, cut short or tampered with. Everything here reads
the store's public files only (``summary.json``, ``manifest.json``, ``efficiency.json``,
``per_image.csv``; formats in ARCHITECTURE.md) and turns anything malformed into one
:class:`~harness.errors.HarnessError` naming the file and what is wrong, before a reader uses a
value:

* JSON is parsed strictly: no NaN/Infinity, no number that overflows a float (``1e999``), no
  integer longer than :data:`MAX_INT_DIGITS` digits, at most :data:`MAX_DEPTH` levels of
  nesting (a deeper document raises ``RecursionError`` inside ``json``: caught here), files of
  at most :data:`MAX_JSON_BYTES`; each document must be an object;
* the fields the readers use are checked for their types (a mean is a finite number or null);
* ``per_image.csv`` must have the key columns and a column for every per-image metric, every
  cell a finite number (at most :data:`MAX_VALUE` in size) or empty;
* ``summary.json`` must agree with ``per_image.csv``: each mean, standard deviation and count
  is recomputed from the per-image values with the store's rules (``harness.store.summarise``:
  a mean only when every image has a value) and a difference beyond float noise is refused,
  naming the method, dataset and metric. So a hand-edited mean cannot pass the gate.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SUMMARY_SCHEMA = "harness.summary/1"
MAX_JSON_BYTES = 256 << 20  # a manifest lists ~200 bytes per image
MAX_CSV_BYTES = 1 << 30
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_DECIMALS = 12
# No metric's score is anywhere near this; larger values are edits, and would overflow the
# squares of the standard deviation and the bootstrap downstream.
MAX_VALUE = 1e12
# summary.json holds fsum(values) / n of the values per_image.csv holds in repr: equal up to
# the last bit; the tolerance only absorbs a summation in another order.
REL_TOL = ABS_TOL = 1e-9
KEYS = ("method", "dataset", "image")


# ----------------------------------------------------------------------------- JSON


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"the number {text[:24]} overflows a float")
    return v


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def parse_json(text: str, path: Path | str, what: str = "JSON") -> Any:
    """A JSON document parsed strictly (see the module docstring); errors name ``path`` and
    call the document ``what`` ("not a valid <what>")."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as e:
        raise HarnessError(
            f"{path}: not a valid {what} (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    except RecursionError:
        raise HarnessError(f"{path}: not a valid {what} (nested too deeply)") from None
    except ValueError as e:
        raise HarnessError(f"{path}: not a valid {what} ({str(e)[:120]})") from None
    _check_depth(value, path)
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether parsed JSON ``value`` nests dicts/lists more than ``limit`` levels (iteratively:
    no recursion limit to hit on a hostile document)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(v, dict):
            stack += [(x, depth + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, depth + 1) for x in v]
    return False


def _check_depth(value: Any, path: Path | str) -> None:
    if too_deep(value):
        raise HarnessError(f"{path}: nested deeper than {MAX_DEPTH} levels")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file."""
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_JSON_BYTES:
        raise HarnessError(f"{path}: larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e.strerror or e})") from None
    data = parse_json(text, path)
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object, found {_kind(data)}")
    return data


# ----------------------------------------------------------------------------- type checks


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string"}.get(
        type(v), "an integer" if isinstance(v, int) else "a number"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(path: Path, where: str, want: str, got: Any) -> HarnessError:
    shown = repr(got)[:40] if not isinstance(got, (dict, list)) else _kind(got)
    return HarnessError(f"{path}: {where}: expected {want}, found {shown}")


def _obj(v: Any, path: Path, where: str) -> dict:
    if not isinstance(v, dict):
        raise _fail(path, where, "an object", v)
    return v


def _list(v: Any, path: Path, where: str) -> list:
    if not isinstance(v, list):
        raise _fail(path, where, "a list", v)
    return v


def _str(v: Any, path: Path, where: str, nullable: bool = False) -> str | None:
    if not (isinstance(v, str) or (nullable and v is None)):
        raise _fail(path, where, "a string" + (" or null" if nullable else ""), v)
    return v


def _count(v: Any, path: Path, where: str) -> int:
    if not _is_int(v) or v < 0:
        raise _fail(path, where, "a non-negative integer", v)
    return v


def _value(v: Any, path: Path, where: str, bounded: bool = True) -> float | None:
    """A metric value: null, or a finite number (no larger than MAX_VALUE if ``bounded``)."""
    if v is None:
        return None
    if not _is_number(v) or (bounded and abs(v) > MAX_VALUE):
        limit = f" (|x| <= {MAX_VALUE:g})" if bounded else ""
        raise _fail(path, where, f"a finite number{limit} or null", v)
    return float(v)


def _optional(d: dict, key: str, check, path: Path, where: str) -> None:
    if key in d:
        check(d[key], path, f"{where}.{key}" if where else key)


# ----------------------------------------------------------------------------- summary.json


def check_summary(s: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields of ``summary.json`` that reports and the gate read, checked for type."""
    if s.get("schema", SUMMARY_SCHEMA) != SUMMARY_SCHEMA:  # absent: written by hand or a test
        found = str(s.get("schema"))[:40]
        raise HarnessError(f"{path}: schema {found!r}, expected {SUMMARY_SCHEMA!r}")
    _optional(s, "pyiqa_version", lambda v, p, w: _str(v, p, w, True), path, "")
    _optional(s, "unavailable_metrics", _obj, path, "")
    names: list[str] = []
    per: dict[str, str] = {}
    for i, spec in enumerate(_list(s.get("metrics"), path, "metrics")):
        w = f"metrics[{i}]"
        _obj(spec, path, w)
        names.append(_str(spec.get("name"), path, f"{w}.name") or "")
        if not isinstance(spec.get("lower_better"), bool):
            raise _fail(path, f"{w}.lower_better", "true/false", spec.get("lower_better"))
        dec = spec.get("decimals", 4)
        if not _is_int(dec) or not 0 <= dec <= MAX_DECIMALS:
            raise _fail(path, f"{w}.decimals", f"an integer from 0 to {MAX_DECIMALS}", dec)
        per[names[-1]] = spec.get("per", "image")
        if per[names[-1]] not in ("image", "set"):
            raise _fail(path, f"{w}.per", "'image' or 'set'", spec.get("per"))
        _optional(spec, "options", _obj, path, w)
        _optional(spec, "weights", _list, path, w)
        for key in ("pyiqa_id", "reference", "impl"):
            _optional(spec, key, lambda v, p, ww: _str(v, p, ww, True), path, w)
    if len(set(names)) != len(names):
        raise HarnessError(f"{path}: metrics: a metric is listed twice")
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(_list(s.get("results"), path, "results")):
        w = f"results[{i}]"
        _obj(r, path, w)
        key = (
            _str(r.get("method"), path, f"{w}.method"),
            _str(r.get("dataset"), path, f"{w}.dataset"),
        )
        if key in seen:
            raise HarnessError(f"{path}: {w}: {key[0]} on {key[1]} appears twice")
        seen.add(key)  # type: ignore[arg-type]
        _count(r.get("n_images"), path, f"{w}.n_images")
        for name, st in _obj(r.get("metrics"), path, f"{w}.metrics").items():
            wm = f"{w}.metrics.{name}"
            if name not in names:
                raise HarnessError(f"{path}: {wm}: metric '{name}' is not in 'metrics'")
            _obj(st, path, wm)
            # per-image means are recomputed from per_image.csv (bounded there): a wrong one
            # is named as a disagreement; a set-level value has nothing to agree with
            bounded = per[name] == "set"
            _value(st.get("mean"), path, f"{wm}.mean", bounded)
            _value(st.get("std"), path, f"{wm}.std", bounded)
            for k in ("n", "missing"):
                _optional(st, k, _count, path, wm)
            for k in ("reason", "cause"):
                _optional(st, k, lambda v, p, ww: _str(v, p, ww, True), path, wm)
    return s


# ----------------------------------------------------------------------------- manifest.json


def check_manifest(m: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields of ``manifest.json`` that reports and the gate read, checked for type."""
    for key in ("harness_version", "command", "config_hash", "finished"):
        _optional(m, key, lambda v, p, w: _str(v, p, w, True), path, "")
    if "environment" in m:
        env = _obj(m["environment"], path, "environment")
        _optional(env, "git_commit", lambda v, p, w: _str(v, p, w, True), path, "environment")
    for ds, entry in _obj(m.get("datasets", {}), path, "datasets").items():
        w = f"datasets.{ds}"
        _obj(entry, path, w)
        _optional(entry, "manifest_hash", lambda v, p, ww: _str(v, p, ww, True), path, w)
        if entry.get("scale") is not None and not _is_int(entry["scale"]):
            raise _fail(path, f"{w}.scale", "an integer or null", entry["scale"])
        for key in ("lr_dir", "hr_dir"):
            _optional(entry, key, lambda v, p, ww: _str(v, p, ww, True), path, w)
        for i, f in enumerate(_list(entry.get("files", []), path, f"{w}.files")):
            wf = f"{w}.files[{i}]"
            _obj(f, path, wf)
            _str(f.get("name"), path, f"{wf}.name")
            for key in ("lr_sha256", "hr_sha256"):
                _optional(f, key, lambda v, p, ww: _str(v, p, ww, True), path, wf)
    for name, entry in _obj(m.get("methods", {}), path, "methods").items():
        w = f"methods.{name}"
        _obj(entry, path, w)
        _optional(entry, "card", _obj, path, w)
        for key in ("sr_cache", "sr_dir"):
            if key in entry:
                for ds, folder in _obj(entry[key], path, f"{w}.{key}").items():
                    _str(folder, path, f"{w}.{key}.{ds}", nullable=True)
    return m


# ----------------------------------------------------------------------------- efficiency.json

# columns compared or divided by the gate and drawn by the reports
EFFICIENCY_NUMBERS = (
    "lr_size", "params", "macs_fvcore", "macs_fvcore_plus_attention", "latency_median_s",
    "peak_memory_bytes",
)  # fmt: skip


def check_efficiency(e: dict[str, Any], path: Path) -> dict[str, Any]:
    """``efficiency.json``: rows (objects with a method name), numbers where the gate reads them."""
    for i, row in enumerate(_list(e.get("rows", []), path, "rows")):
        w = f"rows[{i}]"
        _obj(row, path, w)
        _str(row.get("method"), path, f"{w}.method")
        for key in EFFICIENCY_NUMBERS:
            v = row.get(key)
            if v is not None and (not _is_number(v) or v < 0):
                raise _fail(path, f"{w}.{key}", "a finite number >= 0 or null", v)
        for key in ("device", "dtype"):
            _optional(row, key, lambda v, p, ww: _str(v, p, ww, True), path, w)
    _optional(e, "environment", _obj, path, "")
    return e


# ----------------------------------------------------------------------------- per_image.csv


@dataclass
class PerImage:
    """``per_image.csv``: its header and rows (three key strings, then a float or None per
    metric column)."""

    columns: list[str]
    rows: list[tuple]


def read_per_image(path: Path) -> PerImage:
    """Parse ``per_image.csv``: the key columns, then metric columns; each cell a finite
    number of at most MAX_VALUE or empty. Errors name the file, the line and the column."""
    if not path.is_file():
        raise HarnessError(f"{path}: missing (summary.json needs its per-image values)")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise HarnessError(f"{path}: larger than {MAX_CSV_BYTES >> 20} MiB")
    rows: list[tuple] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise HarnessError(f"{path}: empty (no header line)")
            if tuple(header[:3]) != KEYS:
                raise HarnessError(
                    f"{path}: header {','.join(header)[:80]!r}: must start with {','.join(KEYS)}"
                )
            metrics = header[3:]
            if len(set(header)) != len(header):
                raise HarnessError(f"{path}: header: a column is named twice")
            for line, cells in enumerate(reader, 2):
                if len(cells) != len(header):
                    raise HarnessError(
                        f"{path}: line {line}: {len(cells)} fields, expected {len(header)}"
                    )
                vals = [_cell(path, line, m, t) for m, t in zip(metrics, cells[3:])]
                rows.append((*cells[:3], *vals))
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise HarnessError(f"{path}: not a readable CSV ({e})") from None
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e.strerror or e})") from None
    return PerImage(header, rows)


def _cell(path: Path, line: int, metric: str, text: str) -> float | None:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or abs(v) > MAX_VALUE:
        raise HarnessError(
            f"{path}: line {line}, {metric}: {text[:40]!r} is not a finite number "
            f"(|x| <= {MAX_VALUE:g}) or empty"
        )
    return v


def check_agreement(summary: dict[str, Any], table: PerImage, folder: Path) -> None:
    """``summary.json`` against ``per_image.csv`` of ``folder`` (both already checked for
    type): the same (method, dataset) pairs and image counts, a column per per-image metric,
    and each mean, std, n and missing recomputed from the values as
    ``harness.store.summarise`` does."""
    csv_path = folder / "per_image.csv"
    columns = table.columns[3:]
    image_metrics = [s["name"] for s in summary["metrics"] if s.get("per", "image") == "image"]
    for name in image_metrics:
        if name not in columns:
            raise HarnessError(f"{csv_path}: no column for metric {name} (summary.json has it)")
    index = {name: 3 + columns.index(name) for name in image_metrics}
    by_pair: dict[tuple[str, str], list[tuple]] = {}
    for row in table.rows:
        by_pair.setdefault((row[0], row[1]), []).append(row)
    pairs = {(r["method"], r["dataset"]) for r in summary["results"]}
    extra = sorted(set(by_pair) - pairs)
    if extra:
        raise HarnessError(
            f"{csv_path}: rows for {extra[0][0]} on {extra[0][1]}, absent from summary.json"
        )
    for r in summary["results"]:
        method, dataset = r["method"], r["dataset"]
        mine = by_pair.get((method, dataset), [])
        if len(mine) != r["n_images"]:
            raise HarnessError(
                f"{csv_path}: {len(mine)} rows for {method} on {dataset}; "
                f"summary.json says {r['n_images']} images"
            )
        images = [row[2] for row in mine]
        if len(set(images)) != len(images):
            raise HarnessError(f"{csv_path}: an image is listed twice for {method} on {dataset}")
        for name in image_metrics:
            st = r["metrics"].get(name)
            if st is not None:
                values = [row[index[name]] for row in mine]
                problem = _disagreement(st, values)
                if problem:
                    raise HarnessError(
                        f"{folder}: summary.json and per_image.csv disagree on the {problem[0]} "
                        f"of {name} for {method} on {dataset} ({problem[1]})"
                    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """The mean and population standard deviation of a summary cell, as the store writes them
    (``math.fsum``: exact sums, so the order of the images does not matter)."""
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _disagreement(st: dict[str, Any], values: list[float | None]) -> tuple[str, str] | None:
    """What of ``st`` (one summary cell) differs from ``values`` (its per-image column):
    (field, 'summary.json's value vs the recomputed one'), or None when they agree."""
    good = [v for v in values if v is not None]
    missing = len(values) - len(good)
    for key, want in (("n", len(good)), ("missing", missing)):
        if st.get(key, want) != want:
            return key, f"{st.get(key)!r} vs {want} values counted"
    mean = st.get("mean")
    if missing or not good:
        if mean is not None:  # a mean is given only when every image has a value
            return "mean", f"{mean!r} vs none: {missing} of {len(values)} values are empty"
        return None
    want, want_std = mean_std(good)
    if mean is None:
        return "mean", f"null vs {want!r}: every image has a value"
    if not math.isclose(mean, want, rel_tol=REL_TOL, abs_tol=ABS_TOL):
        return "mean", f"{mean!r} vs {want!r} recomputed"
    std = st.get("std")
    if std is not None and not math.isclose(std, want_std, rel_tol=1e-6, abs_tol=ABS_TOL):
        return "std", f"{std!r} vs {want_std!r} recomputed"
    return None


@dataclass
class Results:
    """A run directory's checked result files; each None when absent."""

    path: Path
    summary: dict[str, Any] | None
    manifest: dict[str, Any] | None
    efficiency: dict[str, Any] | None
    per_image: PerImage | None

    @property
    def is_run(self) -> bool:
        """Written by ``harness run`` or ``eval`` (not a ``harness profile`` folder, which
        holds efficiency files alone)."""
        return any((self.path / n).exists() for n in ("manifest.json", "config.yaml", "rows.jsonl",
                                                       "per_image.csv"))  # fmt: skip


def read_results(path: str | Path) -> Results:
    """Read and check ``summary.json`` (with ``per_image.csv``, which it must agree with),
    ``manifest.json`` and ``efficiency.json`` of one directory. Nothing is required here:
    callers decide what a missing file means."""
    path = Path(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: run directory not found")
    summary = read_json(path / "summary.json")
    per_image = None
    if summary is not None:
        check_summary(summary, path / "summary.json")
        per_image = read_per_image(path / "per_image.csv")
        check_agreement(summary, per_image, path)
    manifest = read_json(path / "manifest.json")
    if manifest is not None:
        check_manifest(manifest, path / "manifest.json")
    efficiency = read_json(path / "efficiency.json")
    if efficiency is not None:
        check_efficiency(efficiency, path / "efficiency.json")
    return Results(path, summary, manifest, efficiency, per_image)
