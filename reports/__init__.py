"""Reports: read a run directory's files, never the runner's objects."""

from harness.reports.markdown import render, render_efficiency

__all__ = ["render", "render_efficiency"]
