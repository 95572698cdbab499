"""Read result directories (``harness run``, ``eval`` or ``profile``) from their files alone.

A directory is read through its public files (ARCHITECTURE.md): ``summary.json``,
``per_image.csv``, ``manifest.json``, ``efficiency.csv`` (+ ``efficiency.json`` for the
environment). Nothing here imports the runner, the methods or the metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError

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


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not valid JSON ({e})") from None


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        # every cell as text first: image names such as 0001 must stay strings
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not a readable CSV ({e})") from None


def _numeric(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for c in columns:
        df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="raise")
    return df


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read one directory; a one-line error names a missing or malformed file."""
    path = Path(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: folder not found")
    summary = _json(path / "summary.json")
    efficiency = _csv(path / "efficiency.csv")
    if summary is None and efficiency is None:
        raise HarnessError(f"{path}: no summary.json (the run has not finished)")
    per_image = None
    if summary is not None:
        per_image = _csv(path / "per_image.csv")
        if per_image is None:
            raise HarnessError(f"{path}: summary.json without per_image.csv")
        if list(per_image.columns[:3]) != list(_KEYS):
            raise HarnessError(f"{path / 'per_image.csv'}: first columns must be {_KEYS}")
        try:
            per_image = _numeric(per_image, list(per_image.columns[3:]))
        except ValueError as e:
            raise HarnessError(f"{path / 'per_image.csv'}: a value is not a number ({e})") from None
    if efficiency is not None:
        cols = [c for c in efficiency.columns if c in _EFFICIENCY_NUMBERS]
        try:
            efficiency = _numeric(efficiency, cols)
        except ValueError as e:
            raise HarnessError(
                f"{path / 'efficiency.csv'}: a value is not a number ({e})"
            ) from None
    eff_json = _json(path / "efficiency.json")
    return RunData(
        path=path,
        name=name or path.resolve().name,
        summary=summary,
        manifest=_json(path / "manifest.json") or {},
        per_image=per_image,
        efficiency=efficiency,
        efficiency_env=(eff_json or {}).get("environment"),
    )


def load_runs(paths: list[str | Path]) -> list[RunData]:
    """Read every directory first (all errors before any work); names are the folder names,
    or the paths as given where two folders share a name."""
    if not paths:
        raise HarnessError("harness report needs at least one run directory")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise HarnessError("harness report: a run directory is given twice")
    names = [r.name for r in resolved]
    return [
        load_run(p, p_name if names.count(p_name) == 1 else str(p))
        for p, p_name in zip(paths, names)
    ]
