"""Read result directories (``harness run``, ``eval`` or ``profile``) from their files alone.

A directory is read through its public files (ARCHITECTURE.md): ``summary.json``,
``per_image.csv``, ``manifest.json``, ``efficiency.csv`` (+ ``efficiency.json`` for the
environment), checked by ``harness.runfiles`` before any value is used. Nothing here imports
the runner, the methods or the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.runfiles import PerImage, read_results

_KEYS = ("method", "dataset", "image")
_EFFICIENCY_NUMBERS = {
    "steps", "lr_size", "sr_size", "params", "macs_fvcore", "macs_attention",
    "macs_fvcore_plus_attention", "macs_flopcounter", "macs_ptflops", "latency_median_s",
    "latency_p10_s", "latency_p90_s", "latency_iqr_s", "latency_runs", "warmup_runs",
    "wall_minus_event_s", "peak_memory_bytes", "baseline_memory_bytes", "added_memory_bytes",
    "latency_spread", "fast_latency_median_s", "fast_latency_p10_s", "fast_latency_p90_s",
    "fast_latency_runs", "fast_peak_memory_bytes", "fast_speedup", "fast_max_diff_levels",
    "latency_median_s_ratio", "macs_fvcore_ratio", "params_ratio",
}  # fmt: skip


@dataclass
class RunData:
    """One result directory. ``name`` tells it apart from the others in labels and notes."""

    path: Path
    name: str
    summary: dict[str, Any] | None
    manifest: dict[str, Any]
    per_image: pd.DataFrame | None  # columns method, dataset, image, <metric>... (NaN = missing)
    efficiency: pd.DataFrame | None  # efficiency.csv's rows
    efficiency_env: dict[str, Any] | None

    def specs(self) -> list[dict[str, Any]]:
        return list(self.summary["metrics"]) if self.summary else []

    def spec(self, metric: str) -> dict[str, Any] | None:
        return next((s for s in self.specs() if s["name"] == metric), None)

    def results(self, dataset: str) -> list[dict[str, Any]]:
        if not self.summary:
            return []
        return [r for r in self.summary["results"] if r["dataset"] == dataset]

    def values(self, method: str, dataset: str, metric: str) -> pd.Series | None:
        """Per-image values indexed by image name (NaN where missing); None without a column."""
        df = self.per_image
        if df is None or metric not in df.columns:
            return None
        mine = df[(df["method"] == method) & (df["dataset"] == dataset)]
        return mine.set_index("image")[metric]

    def sr_folder(self, method: str, dataset: str) -> Path | None:
        """Where the SR images of ``method`` on ``dataset`` are: the SR cache folder of a run,
        the ``--sr`` folder of an eval."""
        entry = self.manifest.get("methods", {}).get(method, {})
        folder = (entry.get("sr_cache") or {}).get(dataset) or (entry.get("sr_dir") or {}).get(
            dataset
        )
        return Path(folder) if folder else None

    def dataset_entry(self, dataset: str) -> dict[str, Any] | None:
        return self.manifest.get("datasets", {}).get(dataset)


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        # every cell as text first: image names such as 0001 must stay strings
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise HarnessError(f"{path}: empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not a readable CSV ({str(e).strip()[:120]})") from None


def _efficiency(path: Path) -> pd.DataFrame | None:
    """``efficiency.csv`` with its number columns as numbers; each a finite number or empty."""
    frame = _csv(path)
    if frame is None:
        return None
    if "method" not in frame.columns:
        raise HarnessError(f"{path}: no 'method' column")
    for col in [c for c in frame.columns if c in _EFFICIENCY_NUMBERS]:
        text = frame[col]
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = (values.isna() & (text != "")) | ~np.isfinite(values.fillna(0.0))
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            cell = str(text[bad].iloc[0])[:40]
            raise HarnessError(f"{path}: line {line}, {col}: {cell!r} is not a finite number")
        frame[col] = values
    return frame


def _per_image_frame(table: PerImage) -> pd.DataFrame:
    """The checked ``per_image.csv`` as a frame: keys as text, metrics as floats (NaN: missing)."""
    frame = pd.DataFrame.from_records(table.rows, columns=table.columns)
    for c in table.columns[3:]:
        frame[c] = frame[c].astype(float)
    for c in _KEYS:
        frame[c] = frame[c].astype(str)
    return frame


def load_run(
    path: str | Path,
    name: str | None = None,
    allow_partial: bool = False,
    left_out: list[str] | None = None,
) -> RunData:
    """Read one directory; a one-line error names a missing or malformed file. The files are
    checked by ``harness.runfiles`` (types, strict JSON, summary.json's means recomputed from
    per_image.csv). A run or eval directory without ``summary.json`` has no quality tables: an
    error, unless ``allow_partial``, which reads what there is and appends to ``left_out``
    what the report leaves out and why."""
    path = Path(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: folder not found")
    files = read_results(path)
    efficiency = _efficiency(path / "efficiency.csv")
    if files.summary is None:
        if efficiency is None:
            raise HarnessError(f"{path}: no summary.json (the run has not finished)")
        if files.is_run:
            if not allow_partial:
                raise HarnessError(
                    f"{path}: no summary.json, so no quality tables (the run has not finished "
                    "or the file was removed); --allow-partial reports the rest"
                )
            if left_out is not None:
                left_out.append(
                    f"{path}: the quality tables (no summary.json: the run has not finished "
                    "or the file was removed)"
                )
    per_image = _per_image_frame(files.per_image) if files.per_image is not None else None
    return RunData(
        path=path,
        name=name or path.resolve().name,
        summary=files.summary,
        manifest=files.manifest or {},
        per_image=per_image,
        efficiency=efficiency,
        efficiency_env=(files.efficiency or {}).get("environment"),
    )


def load_runs(
    paths: list[str | Path], allow_partial: bool = False, left_out: list[str] | None = None
) -> list[RunData]:
    """Read every directory first (all errors before any work); names are the folder names,
    or the paths as given where two folders share a name. ``allow_partial``, ``left_out``:
    as in :func:`load_run`."""
    if not paths:
        raise HarnessError("harness report needs at least one run directory")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise HarnessError("harness report: a run directory is given twice")
    names = [r.name for r in resolved]
    return [
        load_run(p, p_name if names.count(p_name) == 1 else str(p), allow_partial, left_out)
        for p, p_name in zip(paths, names)
    ]
