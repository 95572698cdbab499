"""Reports: tables, statistics and figures from result directories' files (never the runner's
objects): ``harness report RUN_DIR...``."""

from harness.reports.report import FIGURES, FORMATS, Request, make_report

__all__ = ["FIGURES", "FORMATS", "Request", "make_report"]
