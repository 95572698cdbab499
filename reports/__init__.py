"""Reports: read a run directory's files, never the runner's objects."""

from harness.reports.markdown import render

__all__ = ["render"]
