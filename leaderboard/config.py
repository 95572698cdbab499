"""The leaderboard config (``leaderboard.yaml``): what is ranked and which protocol is accepted.

Schema ``harness.leaderboard-config/1`` (every key optional; unknown keys are refused)::

    schema: harness.leaderboard-config/1
    title: Real-ISR x4 leaderboard
    version: "2025.1"            # the leaderboard's own version, stamped on the page
    datasets: [drealsr, realsr]  # one table each, in this order (default: every dataset found)
    metrics: [psnr, ssim, lpips] # columns, in this order (default: every metric found)
    rank_by: lpips               # one of `metrics` (default: the first); direction from its spec
    efficiency: [params, macs_fvcore, latency_median_s, peak_memory_bytes]
    protocol:                    # what a submission must match (`harness leaderboard protocol`)
      harness_versions: ["0.1.0"]  # default: this harness's version
      pyiqa_version: "0.1.16"      # default: the installed pyiqa's version
      metrics_autocast: false
      metrics: {psnr: {pyiqa_id: psnr, options: {...}, impl: pyiqa, ...}}
      datasets: {drealsr: <dataset manifest hash>}
      weights: {adcsr: <weights digest recorded in manifest.json>}

Unpinned parts of the protocol are still checked for consistency inside each bundle, and the
build refuses to rank entries whose protocols differ.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.leaderboard.bundle import Rejected, parse_yaml

SCHEMA = "harness.leaderboard-config/1"
EFFICIENCY_COLUMNS = (
    "params",
    "macs_fvcore",
    "macs_fvcore_plus_attention",
    "latency_median_s",
    "peak_memory_bytes",
)
# not `impl`: an own implementation is held equal to pyiqa by tests (as in reports/drift.py)
METRIC_PROTOCOL_KEYS = (
    "pyiqa_id",
    "options",
    "reference",
    "lower_better",
    "per",
    "weights",
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_KEYS = ("schema", "title", "version", "datasets", "metrics", "rank_by", "efficiency", "protocol")
_PROTOCOL_KEYS = (
    "harness_versions",
    "pyiqa_version",
    "metrics_autocast",
    "metrics",
    "datasets",
    "weights",
)


@dataclass(frozen=True)
class Protocol:
    """What a submission must match. ``None``: not pinned (only checked for consistency)."""

    harness_versions: tuple[str, ...]
    pyiqa_version: str | None
    metrics_autocast: bool | None = None
    metrics: dict[str, dict[str, Any]] | None = None
    datasets: dict[str, str] | None = None
    weights: dict[str, str] | None = None


@dataclass(frozen=True)
class LeaderboardConfig:
    title: str = "Real-ISR leaderboard"
    version: str = "unversioned"
    datasets: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None
    rank_by: str | None = None
    efficiency: tuple[str, ...] = EFFICIENCY_COLUMNS
    protocol: Protocol | None = None

    @property
    def accepted(self) -> Protocol:
        return self.protocol or default_protocol()


def default_protocol() -> Protocol:
    """The versions of this installation: a submission must come from the same harness/pyiqa."""
    try:
        pyiqa = metadata.version("pyiqa")
    except metadata.PackageNotFoundError:
        pyiqa = None
    return Protocol(harness_versions=(__version__,), pyiqa_version=pyiqa)


def load_config(path: str | Path | None) -> LeaderboardConfig:
    """Read and validate a config file; ``None`` gives the defaults. Errors name file and key."""
    if path is None:
        return LeaderboardConfig(protocol=default_protocol())
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: leaderboard config not found")
    if path.stat().st_size > 1 << 20:
        raise HarnessError(f"{path}: larger than 1 MiB; not a leaderboard config")
    try:
        data = parse_yaml(path.read_bytes(), str(path))
    except Rejected as e:
        raise HarnessError(str(e)) from None
    return parse_config(data, str(path))


def parse_config(data: Any, where: str) -> LeaderboardConfig:
    if data is None:
        data = {}
    _mapping(data, where, _KEYS)
    if "schema" in data and data["schema"] != SCHEMA:
        raise HarnessError(f"{where}: schema {data['schema']!r}, expected {SCHEMA!r}")
    metrics = _names(data.get("metrics"), f"{where}: metrics")
    rank_by = data.get("rank_by")
    if rank_by is not None:
        if not isinstance(rank_by, str):
            raise HarnessError(f"{where}: rank_by must be a metric name")
        if metrics is not None and rank_by not in metrics:
            raise HarnessError(
                f"{where}: rank_by '{rank_by}' is not one of metrics {list(metrics)}"
            )
    eff = data.get("efficiency", list(EFFICIENCY_COLUMNS))
    eff = _names(eff, f"{where}: efficiency") or ()
    for col in eff:
        if col not in EFFICIENCY_COLUMNS:
            raise HarnessError(
                f"{where}: efficiency column '{col}' is not one of {', '.join(EFFICIENCY_COLUMNS)}"
            )
    return LeaderboardConfig(
        title=_string(data.get("title", LeaderboardConfig.title), f"{where}: title", 200),
        version=_string(
            str(data.get("version", LeaderboardConfig.version)), f"{where}: version", 64
        ),
        datasets=_names(data.get("datasets"), f"{where}: datasets"),
        metrics=metrics,
        rank_by=rank_by,
        efficiency=tuple(eff),
        protocol=_protocol(data.get("protocol"), f"{where}: protocol"),
    )


def _protocol(data: Any, where: str) -> Protocol:
    base = default_protocol()
    if data is None:
        return base
    _mapping(data, where, _PROTOCOL_KEYS)
    versions = data.get("harness_versions")
    if versions is None:
        versions = base.harness_versions
    elif isinstance(versions, str):
        versions = (versions,)
    if not isinstance(versions, (list, tuple)) or not all(isinstance(v, str) for v in versions):
        raise HarnessError(f"{where}.harness_versions: a list of version strings")
    pyiqa = data.get("pyiqa_version", base.pyiqa_version)
    if pyiqa is not None and not isinstance(pyiqa, str):
        raise HarnessError(f"{where}.pyiqa_version: a version string (quote it)")
    autocast = data.get("metrics_autocast")
    if autocast is not None and not isinstance(autocast, bool):
        raise HarnessError(f"{where}.metrics_autocast: true or false")
    metrics = data.get("metrics")
    if metrics is not None:
        _mapping(metrics, f"{where}.metrics", None)
        for name, spec in metrics.items():
            _mapping(spec, f"{where}.metrics.{name}", METRIC_PROTOCOL_KEYS)
            if "options" in spec and not isinstance(spec["options"], dict):
                raise HarnessError(f"{where}.metrics.{name}.options: a mapping")
    datasets = _hashes(data.get("datasets"), f"{where}.datasets", exact=True)
    weights = _hashes(data.get("weights"), f"{where}.weights", exact=False)
    return Protocol(tuple(versions), pyiqa, autocast, metrics, datasets, weights)


def _hashes(data: Any, where: str, exact: bool) -> dict[str, str] | None:
    if data is None:
        return None
    _mapping(data, where, None)
    for k, v in data.items():
        ok = isinstance(v, str) and (_HEX64.match(v) if exact else re.match(r"^[0-9a-f+]*$", v))
        if not ok:
            what = "64 lowercase hex digits" if exact else "a weights digest (hex, '+')"
            raise HarnessError(f"{where}.{k}: expected {what}")
    return dict(data)


def _mapping(data: Any, where: str, allowed: tuple[str, ...] | None) -> None:
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise HarnessError(f"{where}: key {key!r} is not a string")
        if allowed is not None and key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=2)
            hint = f" (did you mean {' or '.join(near)}?)" if near else ""
            raise HarnessError(f"{where}: unknown key '{key}'{hint}; keys: {', '.join(allowed)}")


def _names(data: Any, where: str) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list) or not data:
        raise HarnessError(f"{where}: a non-empty list of names")
    for n in data:
        if not isinstance(n, str) or not _NAME.match(n):
            raise HarnessError(f"{where}: {n!r} is not a valid name")
    if len(set(data)) != len(data):
        raise HarnessError(f"{where}: names repeat")
    return tuple(data)


def _string(v: Any, where: str, limit: int) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        raise HarnessError(f"{where}: a non-empty string of at most {limit} characters")
    return v
