"""Leaderboard: a static site from result bundles, and the validation of submitted bundles.

Reads the store's files only (never the runner, methods or metrics). ``bundle.py`` reads a
folder or zip without trusting it; ``validate.py`` checks schema, consistency and protocol;
``config.py`` the ``leaderboard.yaml`` schema; ``site.py`` renders ``templates/`` (Jinja2,
autoescaped) and copies ``static/``; ``cli.py`` ``harness leaderboard``.
"""

from harness.leaderboard.bundle import Bundle, Rejected, open_bundle
from harness.leaderboard.config import LeaderboardConfig, Protocol, load_config
from harness.leaderboard.validate import Submission, validate

__all__ = [
    "Bundle",
    "LeaderboardConfig",
    "Protocol",
    "Rejected",
    "Submission",
    "load_config",
    "open_bundle",
    "validate",
]
