"""The files of a finished run directory that the gate reads (the store's public formats only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


@dataclass
class RunView:
    """``summary.json``, ``manifest.json`` and ``efficiency.json`` of one run, each None when
    absent. A ``harness profile`` directory has efficiency only; an eval run has no efficiency."""

    path: Path
    summary: dict[str, Any] | None
    manifest: dict[str, Any] | None
    efficiency: dict[str, Any] | None

    @classmethod
    def open(cls, path: str | Path) -> RunView:
        path = Path(path)
        if not path.is_dir():
            raise HarnessError(f"{path}: run directory not found")
        view = cls(
            path,
            _json(path / "summary.json"),
            _json(path / "manifest.json"),
            _json(path / "efficiency.json"),
        )
        if view.summary is None and view.efficiency is None:
            raise HarnessError(
                f"{path}: no summary.json or efficiency.json (not a finished run directory)"
            )
        if view.manifest is not None and view.manifest.get("finished", True) is None:
            raise HarnessError(f"{path}: the run has not finished (manifest.json 'finished' null)")
        return view

    def efficiency_rows(self) -> list[dict[str, Any]]:
        return list((self.efficiency or {}).get("rows", []))

    def dataset_hashes(self) -> dict[str, str | None]:
        """Dataset name -> manifest hash, for every dataset in the results (None: not recorded)."""
        recorded = (self.manifest or {}).get("datasets") or {}
        names = [r["dataset"] for r in (self.summary or {}).get("results", [])]
        return {n: (recorded.get(n) or {}).get("manifest_hash") for n in dict.fromkeys(names)}


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object")
    return data
