"""The results store: one run directory per run. Its files are the public API of the harness.

Layout of a run directory (schemas in ARCHITECTURE.md)::

    config.yaml     the resolved what-to-run (every option, every method/dataset config)
    manifest.json   environment and provenance: versions, git commit, device, seed, hashes
    rows.jsonl      the journal: one JSON object per scored image, appended and fsync'ed
    per_image.csv   method, dataset, image, then one column per metric (written at the end)
    summary.json    per (method, dataset) means with missing-value accounting (at the end)
    report.md       the markdown tables printed at the end of the run
    prompts.jsonl   per-image facts from the methods (the prompt each SR image was made with)

The journal makes runs resumable: a killed run leaves complete lines (a torn last line is
ignored), and the rerun scores only what is not in it. ``per_image.csv``, ``summary.json`` and
``report.md`` are written atomically from the journal once every image is scored, so a file
under one of those names is always complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.imageio import sweep_temporary, write_text
from harness.locking import file_lock, lock_fd
from harness.runfiles import mean_std

# The papers' row groups, in table order, from a method card as manifest.json records it
# (``family``, and ``steps`` for diffusion): reports and the leaderboard show them.
GROUPS = ("Classical", "GAN-based", "Diffusion, multi-step", "Diffusion, one-step")


def card_group(card: dict[str, Any] | None) -> str:
    """The table group of a recorded method card: one of GROUPS, or '' when it states none."""
    card = card or {}
    family = card.get("family", "")
    if family == "diffusion":
        return GROUPS[3] if card.get("steps") == 1 else GROUPS[2]
    return {"classical": GROUPS[0], "gan": GROUPS[1]}.get(family, "")


SUMMARY_SCHEMA = "harness.summary/1"
EFFICIENCY_SCHEMA = "harness.efficiency/1"
EFFICIENCY_COLUMNS = (
    "method", "steps", "lr_size", "sr_size", "weights", "params", "params_components",
    "macs_fvcore", "macs_attention", "macs_fvcore_plus_attention", "macs_flopcounter",
    "macs_ptflops", "ptflops_backend", "latency_median_s", "latency_p10_s", "latency_p90_s",
    "latency_iqr_s", "latency_runs", "latency_spread", "latency_unreliable", "warmup_runs",
    "timer", "wall_minus_event_s", "peak_memory_bytes", "added_memory_bytes",
    "added_memory_kind", "baseline_memory_bytes", "memory_kind", "reference",
    "latency_median_s_ratio", "macs_fvcore_ratio", "params_ratio", "device", "dtype", "torch",
    "notes", "fast_mode", "fast_latency_median_s", "fast_latency_p10_s", "fast_latency_p90_s",
    "fast_latency_runs", "fast_peak_memory_bytes", "fast_speedup", "fast_max_diff_levels",
)  # fmt: skip
MANIFEST_SCHEMA = "harness.manifest/1"

Key = tuple[str, str, str]  # (method, dataset, image)

# Entries Hydra puts in a job's folder before the job (a run) starts: ``.hydra/`` and the log.
_HYDRA_ENTRIES = (".hydra",)


def run_dir_marker(path: Path) -> str | None:
    """Why ``path`` (an existing folder) is a folder the harness may write into, or None.

    Ours: an empty folder; one whose ``manifest.json`` has the harness's schema (every run,
    eval and merge writes it when it claims the folder); a ``harness profile`` folder
    (``profile_config.yaml``); a launch's folder before its merge (``jobs/plan.yaml``); a
    Hydra job's folder before its run (``.hydra/`` and logs only). Anything else is a user's
    folder: writing there would overwrite their files and sweep their ``*.tmp`` files."""
    entries = list(path.iterdir())
    if not entries:
        return "empty"
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA:
            return "run"
    if (path / "profile_config.yaml").is_file():
        return "profile"
    if (path / "jobs" / "plan.yaml").is_file():
        return "launch"
    names = {e.name for e in entries}
    if ".hydra" in names and all(n in _HYDRA_ENTRIES or n.endswith(".log") for n in names):
        return "hydra job"
    return None


def check_out(path: str | Path) -> None:
    """Refuse, before any work, a run directory the harness must not or cannot write: an
    existing file, a folder of the user's (not empty, not a run directory: see
    :func:`run_dir_marker`), or a place where nothing can be created. Writes nothing but a
    probe file, removed at once."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise HarnessError(f"--out {path}: is a file, not a folder")
        if path.is_dir():
            if run_dir_marker(path) is None:
                shown = ", ".join(sorted(e.name for e in path.iterdir())[:3])
                raise HarnessError(
                    f"--out {path}: a folder that is not a harness run directory (it holds "
                    f"{shown}, ...); give a new or empty folder"
                )
            _probe(path, path)
            return
        parent = next(p for p in path.absolute().parents if p.exists())
        if not parent.is_dir():
            raise HarnessError(f"--out {path}: {parent} is a file, not a folder")
        _probe(path, parent)
    except OSError as e:
        raise HarnessError(f"--out {path}: cannot be used ({e.strerror or e})") from None


def _probe(path: Path, folder: Path) -> None:
    """Create and remove a file in ``folder``: the only sure test that a run can write there
    (permission bits say nothing for root, ACLs or a read-only mount). A probe left by a kill
    is swept like any temporary file (``.<name>.*.tmp``)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".harness-probe.", suffix=".tmp", dir=folder)
    except OSError as e:
        where = "in it" if folder == path else f"in {folder}"
        raise HarnessError(f"--out {path}: cannot write {where} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(name)


@dataclass
class Row:
    """Scores of one SR image. ``values[m]`` is None exactly when ``missing[m]`` says why."""

    method: str
    dataset: str
    image: str
    sr_key: str
    values: dict[str, float | None]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.method, self.dataset, self.image)


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fresh = False  # created (or found empty) by this process's ``claim``

    # -- config ------------------------------------------------------------------------------
    def claim(self, config_yaml: str, config_hash: str) -> None:
        """Create or resume the run directory for this config; refuse another run's directory
        and a folder that is not a run directory (``check_out``). Orphaned temporary files of
        a killed run are removed. A new directory gets its manifest first, so a run killed at
        any point leaves a folder that is recognisably a run directory."""
        check_out(self.path)
        self.fresh = not self.path.is_dir() or not any(self.path.iterdir())
        existing = self._read_json_or_none("manifest.json")
        if existing and not self.journal.exists() and not existing.get("finished"):
            existing = None  # a claim killed before scoring anything: nothing to keep
        if existing and existing.get("config_hash") not in (None, config_hash):
            raise HarnessError(
                f"{self.path}: holds a run of another config (hash "
                f"{str(existing['config_hash'])[:12]} != {config_hash[:12]}); choose another --out"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            sweep_temporary(self.path)
            if existing is None:
                self.write_manifest({"config_hash": config_hash, "finished": None})
            write_text(self.path / "config.yaml", config_yaml)
        except OSError as e:
            self.discard()
            raise HarnessError(f"--out {self.path}: cannot write ({e.strerror or e})") from None

    def read_manifest(self) -> dict[str, Any] | None:
        return self._read_json_or_none("manifest.json")

    def discard(self) -> None:
        """Remove a directory this process created when its run failed before scoring anything
        (a failed validation leaves nothing behind); a directory with results is kept."""
        if self.fresh and not self.journal.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        data = {"schema": MANIFEST_SCHEMA, "harness_version": __version__} | manifest
        write_text(self.path / "manifest.json", json.dumps(data, indent=2, default=str) + "\n")

    # -- journal -----------------------------------------------------------------------------
    @property
    def journal(self) -> Path:
        return self.path / "rows.jsonl"

    def read_journal(self) -> dict[Key, Row]:
        """Rows written so far, last one per key winning; a torn last line is skipped."""
        rows: dict[Key, Row] = {}
        if not self.journal.is_file():
            return rows
        with open(self.journal, encoding="utf-8") as f:
            for line in f:
                try:
                    row = Row(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue  # a line cut by a kill: its image is simply scored again
                rows[row.key] = row
        return rows

    def reset_journal(self) -> None:
        self.journal.unlink(missing_ok=True)

    def append(self, rows: Iterable[Row]) -> None:
        """Append rows as whole lines. Under the journal's lock: another process appending to
        the same journal (two runs into one directory) never interleaves with these lines."""
        with open(self.journal, "a", encoding="utf-8") as f:
            lock_fd(f.fileno())  # released when the file is closed
            f.seek(0, os.SEEK_END)
            if f.tell() and not self._ends_with_newline():
                f.write("\n")  # isolate a torn line left by a kill
            for row in rows:
                f.write(json.dumps(row.__dict__, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.journal, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    # -- final tables ------------------------------------------------------------------------
    def write_per_image(self, rows: Sequence[Row], metrics: Sequence[str]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "dataset", "image", *metrics])
        for r in rows:
            w.writerow([r.method, r.dataset, r.image, *(_fmt(r.values.get(m)) for m in metrics)])
        write_text(self.path / "per_image.csv", buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")

    def write_efficiency(self, rows: Sequence[dict[str, Any]], env: dict[str, Any]) -> None:
        """``efficiency.csv`` (flat, one row per method) and ``efficiency.json`` (everything)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(EFFICIENCY_COLUMNS)
        for r in rows:
            cells = []
            for col in EFFICIENCY_COLUMNS:
                v = r.get(col)
                if col == "params_components":
                    v = ";".join(f"{k}={n}" for k, n in (v or {}).items())
                cells.append(_fmt(v) if isinstance(v, float) else ("" if v is None else v))
            w.writerow(cells)
        data = {"schema": EFFICIENCY_SCHEMA, "environment": env, "rows": list(rows)}
        write_text(self.path / "efficiency.json", json.dumps(data, indent=2, default=str) + "\n")
        write_text(self.path / "efficiency.csv", buf.getvalue())

    def write_prompts(self, rows: Sequence[dict[str, Any]]) -> None:
        """``prompts.jsonl``: one JSON object per (method, dataset, image), atomically."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_text(self.path / "prompts.jsonl", text)

    def read_set_scores(self) -> dict[str, Any]:
        return self._read_json_or_none("set_scores.json") or {}

    def write_set_scores(self, data: dict[str, Any]) -> None:
        """Add ``data``'s entries to ``set_scores.json`` (read, update, write under a lock, so
        entries another process wrote meanwhile are kept)."""
        with file_lock(self.path / ".set_scores.lock"):
            merged = self.read_set_scores() | data
            write_text(self.path / "set_scores.json", json.dumps(merged, indent=2) + "\n")

    def read_efficiency(self) -> dict[str, Any] | None:
        return self._read_json_or_none("efficiency.json")

    def read_summary(self) -> dict[str, Any]:
        data = self._read_json_or_none("summary.json")
        if data is None:
            raise HarnessError(f"{self.path}: no summary.json (the run has not finished)")
        return data

    def _read_json_or_none(self, name: str) -> dict[str, Any] | None:
        p = self.path / name
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise HarnessError(f"{p}: not valid JSON ({e})") from None


def _fmt(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def summarise(
    rows: Sequence[Row],
    groups: Sequence[tuple[str, str, int]],
    metric_specs: Sequence[dict[str, Any]],
    applicable: dict[str, list[str]],
    sets: dict[tuple[str, str], tuple[dict, dict]] | None = None,
) -> list[dict[str, Any]]:
    """Per (method, dataset) statistics.

    A mean is reported only when every image has a value; otherwise it is ``null`` with the
    count and the first reason, so a partial average can never pass for a full one.
    ``applicable[dataset]`` lists the metrics that apply (no FR metric without HR).
    """
    out = []
    for method, dataset, n_images in groups:
        mine = [r for r in rows if r.method == method and r.dataset == dataset]
        stats: dict[str, Any] = {}
        for spec in metric_specs:
            name = spec["name"]
            if name not in applicable[dataset]:
                stats[name] = {
                    "mean": None,
                    "std": None,
                    "n": 0,
                    "missing": n_images,
                    "reason": "needs HR images; this dataset has none",
                }
                continue
            if spec.get("per") == "set":
                values, missing = (sets or {}).get((method, dataset), ({}, {}))
                v = values.get(name)
                stats[name] = {
                    "mean": v,
                    "std": None,
                    "n": n_images if v is not None else 0,
                    "missing": 0 if v is not None else n_images,
                    "per": "set",
                    "reason": None if v is not None else missing.get(name, "not computed"),
                }
                continue
            vals = [r.values.get(name) for r in mine]
            good = [v for v in vals if v is not None]
            missing = n_images - len(good)
            reasons = [r.missing[name] for r in mine if name in r.missing]
            entry: dict[str, Any] = {"n": len(good), "missing": missing}
            if missing == 0 and good:
                mean, std = mean_std(good)
                entry |= {"mean": mean, "std": std, "reason": None}
            else:
                why = reasons[0] if reasons else "not scored"
                entry |= {
                    "mean": None,
                    "std": None,
                    "reason": f"{missing} of {n_images} images missing: {why}",
                    # the same cause across cells (a missing weight file) is one report footnote
                    "cause": why if not good else f"{missing} of {n_images} images: {why}",
                }
            stats[name] = entry
        out.append({"method": method, "dataset": dataset, "n_images": n_images, "metrics": stats})
    return out
