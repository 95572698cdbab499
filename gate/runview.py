"""The files of a finished run directory that the gate reads (the store's public formats only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.runfiles import read_results


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
        """Read and check the run's files (``harness.runfiles``: types, strict JSON, and
        summary.json's means recomputed from per_image.csv); one-line errors name the file."""
        files = read_results(path)
        view = cls(files.path, files.summary, files.manifest, files.efficiency)
        path = files.path
        if view.summary is None and (view.efficiency is None or files.is_run):
            raise HarnessError(
                f"{path}: no summary.json (not a finished run directory)"
                if files.is_run
                else f"{path}: no summary.json or efficiency.json (not a finished run directory)"
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
