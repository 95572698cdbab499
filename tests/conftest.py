"""Shared fixtures. Tests run offline on tiny inputs; ../shared data is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "drealsr"

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One SR cache (and embedded set) for the whole session, outside the user's home."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["HARNESS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def drealsr() -> Path:
    if not (SHARED / "HR").is_dir():
        pytest.skip(f"{SHARED} is absent (the DRealSR pairs ship only with the workplace)")
    return SHARED


@pytest.fixture
def cli():
    """Call the CLI in-process: ``cli("run", "--out", d)`` returns the exit code."""
    from harness.cli import main

    return lambda *argv: main([str(a) for a in argv])
