"""The gate baseline: what a run must keep, and how much it may move.

A baseline is one JSON file (``"schema": "harness.gate-baseline/1"``, documented in
ARCHITECTURE.md) distilled from a finished run directory: metric means per (method, dataset),
the metric protocol they were computed under, the dataset manifest hashes, and per method the
parameters, MACs and median latency with the device and dtype they were measured on. Its
``tolerances`` are written once (``--update`` keeps them) and committed with it:

* ``metrics``: absolute tolerance per metric, in the metric's own unit. A metric without an
  entry gets half a unit of the last digit the report prints (``0.005`` dB for PSNR at 2
  decimals), i.e. the gate fails on a change a reader of the table could see.
* ``latency_relative``: e.g. ``0.10`` fails a median latency more than 10 % slower; ``null``
  means latency is not gated (the right choice on shared CPU runners).

Parameters and MACs have no tolerance: they are exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.gate.runview import RunView
from harness.imageio import write_text
from harness.runfiles import parse_json

SCHEMA = "harness.gate-baseline/1"
# Efficiency fields compared exactly (integers or null), and the setting they depend on.
EXACT_FIELDS = ("params", "macs_fvcore", "macs_fvcore_plus_attention")
SETTING_FIELDS = ("lr_size",)
DEFAULT_LATENCY_RELATIVE = 0.10
MAX_BYTES = 64 << 20
# not `impl`: an own implementation is held equal to pyiqa by tests (as in reports/drift.py)
_PROTOCOL_KEYS = ("pyiqa_id", "options", "reference", "lower_better", "per")


def default_tolerance(decimals: int) -> float:
    """Half a unit of the last printed digit: ``decimals=2`` -> 0.005."""
    return 0.5 * 10.0 ** (-int(decimals))


def from_run(
    run: RunView,
    tolerances: dict[str, Any] | None = None,
    metric_tolerances: dict[str, float] | None = None,
    latency_relative: float | None | str = "keep",
) -> dict[str, Any]:
    """A baseline from ``run``. ``tolerances`` are the previous baseline's (kept as they are);
    ``metric_tolerances`` and ``latency_relative`` override them (``"keep"`` leaves latency)."""
    old = tolerances or {}
    metric_tol: dict[str, float] = dict(old.get("metrics", {}))
    metrics: dict[str, Any] = {}
    quality: dict[str, dict[str, dict[str, float | None]]] = {}
    if run.summary is not None:
        for spec in run.summary["metrics"]:
            metrics[spec["name"]] = {k: spec.get(k) for k in _PROTOCOL_KEYS}
            metric_tol.setdefault(spec["name"], default_tolerance(spec.get("decimals", 4)))
        for r in run.summary["results"]:
            cell = quality.setdefault(r["method"], {}).setdefault(r["dataset"], {})
            for name, stats in r["metrics"].items():
                cell[name] = stats.get("mean")
    for name, tol in (metric_tolerances or {}).items():
        if name not in metrics:
            raise HarnessError(f"--tolerance {name}=...: the run has no metric '{name}'")
        metric_tol[name] = tol
    if latency_relative == "keep":
        latency_relative = old.get("latency_relative", DEFAULT_LATENCY_RELATIVE)

    efficiency: dict[str, Any] = {}
    for row in run.efficiency_rows():
        efficiency[row["method"]] = {
            k: row.get(k)
            for k in (*SETTING_FIELDS, *EXACT_FIELDS, "latency_median_s", "device", "dtype")
        }
    manifest = run.manifest or {}
    env = manifest.get("environment", {})
    return {
        "schema": SCHEMA,
        "source": {
            "command": manifest.get("command") or ("profile" if run.summary is None else None),
            "config_hash": manifest.get("config_hash"),
            "harness_version": manifest.get("harness_version"),
            "git_commit": env.get("git_commit"),
            "pyiqa_version": (run.summary or {}).get("pyiqa_version"),
        },
        "tolerances": {
            "metrics": {k: metric_tol[k] for k in metrics},
            "latency_relative": latency_relative,
        },
        "metrics": metrics,
        "datasets": run.dataset_hashes(),
        "quality": quality,
        "efficiency": efficiency,
    }


def read(path: str | Path) -> dict[str, Any]:
    """Load and check a baseline file: strict JSON (``harness.runfiles.parse_json``) and the
    type of every field the gate reads; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: baseline not found (write one with harness gate --update)")
    if path.stat().st_size > MAX_BYTES:
        raise HarnessError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a gate baseline")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        where = f"{e.reason} at byte {e.start}"
        raise HarnessError(f"{path}: not a valid baseline JSON ({where})") from None
    data = parse_json(text, path, "baseline JSON")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise HarnessError(f"{path}: schema is {str(found)[:40]!r}, expected {SCHEMA!r}")
    for key in ("tolerances", "metrics", "datasets", "quality", "efficiency"):
        if not isinstance(data.get(key), dict):
            raise HarnessError(f"{path}: '{key}' must be a JSON object")
    source = data.get("source", {})
    if not isinstance(source, dict):
        raise HarnessError(f"{path}: 'source' must be a JSON object")
    for key, v in source.items():
        if v is not None and not isinstance(v, str):
            raise HarnessError(f"{path}: source.{key} must be a string or null")
    tol = data["tolerances"]
    if not isinstance(tol.get("metrics", {}), dict):
        raise HarnessError(f"{path}: tolerances.metrics must be a JSON object")
    for name, value in tol.get("metrics", {}).items():
        if not _nonneg(value):
            raise HarnessError(f"{path}: tolerances.metrics.{name} must be a number >= 0")
    lat = tol.get("latency_relative")
    if lat is not None and not _nonneg(lat):
        raise HarnessError(f"{path}: tolerances.latency_relative must be a number >= 0 or null")
    for name, spec in data["metrics"].items():
        if not isinstance(spec, dict):
            raise HarnessError(f"{path}: metrics.{name} must be a JSON object")
        if not isinstance(spec.get("lower_better", False), (bool, type(None))):
            raise HarnessError(f"{path}: metrics.{name}.lower_better must be true or false")
    for ds, h in data["datasets"].items():
        if h is not None and not isinstance(h, str):
            raise HarnessError(f"{path}: datasets.{ds} must be a manifest hash (string) or null")
    for method, cells in data["quality"].items():
        if not isinstance(cells, dict):
            raise HarnessError(f"{path}: quality.{method} must be a JSON object")
        for dataset, values in cells.items():
            if not isinstance(values, dict):
                raise HarnessError(f"{path}: quality.{method}.{dataset} must be a JSON object")
            for metric, v in values.items():
                if v is not None and not _finite(v):
                    raise HarnessError(
                        f"{path}: quality.{method}.{dataset}.{metric} must be a number or null"
                    )
                if metric not in data["metrics"]:
                    raise HarnessError(f"{path}: quality names metric '{metric}' not in 'metrics'")
    for method, row in data["efficiency"].items():
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: efficiency.{method} must be a JSON object")
        for key in (*SETTING_FIELDS, *EXACT_FIELDS, "latency_median_s"):
            v = row.get(key)
            if v is not None and not _nonneg(v):
                raise HarnessError(
                    f"{path}: efficiency.{method}.{key} must be a number >= 0 or null"
                )
        for key in ("device", "dtype"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise HarnessError(f"{path}: efficiency.{method}.{key} must be a string or null")
    return data


def write(path: str | Path, baseline: dict[str, Any]) -> None:
    write_text(path, json.dumps(baseline, indent=2, sort_keys=False) + "\n")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _nonneg(v: Any) -> bool:
    return _finite(v) and v >= 0
