"""Advisory file locks between processes (``fcntl.flock``), for read-modify-write of shared files.

Files that several processes may write are written atomically (``harness.imageio``: temporary
name, then rename), so a reader never sees a torn file. A lock is needed only where two
processes would otherwise lose each other's update: appending to a run's journal and updating
``set_scores.json``. Locks are advisory, released when the holder exits (also on SIGKILL), and
work on local file systems and NFSv4; on Windows (no ``fcntl``) they are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def lock_fd(fd: int) -> None:
    """Block until this process holds the exclusive lock of an open file."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (created if absent, never removed: removing a lock
    file while another process waits on it would let a third one take a different lock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        lock_fd(fd)
        yield
    finally:
        os.close(fd)  # closing releases the lock
