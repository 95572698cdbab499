"""Killing `harness run` midway and rerunning gives the same per_image.csv as one clean run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cmd(out: Path) -> list[str]:
    # the classical methods: the resume logic is the same for every method, and they are fast
    return [sys.executable, "-m", "harness", "run", "--methods", "bicubic,lanczos",
            "--out", str(out), "profile.enabled=false"]  # fmt: skip


def _env(cache: Path) -> dict[str, str]:
    return os.environ | {"HARNESS_CACHE": str(cache), "HARNESS_NO_PROGRESS": "1"}


def _kill_when(out: Path, cache: Path, ready) -> None:
    proc = subprocess.Popen(
        _cmd(out), env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "per_image.csv").exists()  # nothing final-looking from a killed run


def _finish(out: Path, cache: Path) -> str:
    subprocess.run(_cmd(out), env=_env(cache), check=True, capture_output=True)
    return (out / "per_image.csv").read_text()


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0


def test_kill_and_resume_gives_same_results(tmp_path):
    clean = _finish(tmp_path / "clean", tmp_path / "cache_clean")
    assert clean.count("\n") == 13

    # killed while scoring: some rows journaled
    out, cache = tmp_path / "k1", tmp_path / "cache_k1"
    _kill_when(out, cache, lambda: _lines(out / "rows.jsonl") >= 2)
    journaled = _lines(out / "rows.jsonl")
    assert 2 <= journaled < 12
    assert _finish(out, cache) == clean
    assert _lines(out / "rows.jsonl") == 12  # resumed: nothing scored twice

    # killed while upscaling: some SR images cached, none scored
    out, cache = tmp_path / "k2", tmp_path / "cache_k2"
    _kill_when(out, cache, lambda: any((cache / "sr").rglob("*.png")))
    assert _finish(out, cache) == clean
