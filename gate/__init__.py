"""Performance gate: compare a finished run with a committed baseline (reads the store only).

``baseline.py`` the versioned baseline file; ``compare.py`` the rules and the diff;
``runview.py`` the run directory's files it reads; ``cli.py`` ``harness gate``.
"""

from harness.gate.baseline import SCHEMA, from_run, read, write
from harness.gate.compare import Check, compare, failed, render_markdown, render_text
from harness.gate.runview import RunView

__all__ = [
    "SCHEMA",
    "Check",
    "RunView",
    "compare",
    "failed",
    "from_run",
    "read",
    "render_markdown",
    "render_text",
    "write",
]
