"""Which packages and data files the distribution holds, found on every build.

The metadata lives in ``pyproject.toml``; this file only maps the source folders into the
``harness`` namespace and lists their contents. Each top-level folder is installed under
``harness`` (``methods/`` as ``harness.methods``), never as a top-level package: pyiqa depends on
Hugging Face's ``datasets``, which a top-level ``datasets`` of ours would shadow. Every folder
below a mapped one is a package, and every file in it that is not Python source is package data
(configs, templates, static files), so a new subpackage or data file ships with no edit here.
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

# installed package -> source folder (relative to this file)
PACKAGE_DIR = {
    "harness": "harness",
    "harness.methods": "methods",
    "harness.datasets": "datasets",
    "harness.reports": "reports",
    "harness.gate": "gate",
    "harness.leaderboard": "leaderboard",
    "harness.configs": "configs",
}

# Never package data: Python (collected as modules), bytecode, temporary files of interrupted
# atomic writes, and weights (they never live in the sources; see .gitignore).
NOT_DATA = {".py", ".pyc", ".pyo", ".tmp", ".pth", ".pkl", ".ckpt", ".safetensors"}


def _kept(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix not in NOT_DATA


def discover(package_dir: dict[str, str], root: Path = HERE) -> tuple[list[str], dict]:
    """Every package below the mapped folders (folders holding a file, and their parents) and
    each package's data files. Hidden folders, ``__pycache__`` and folders whose name is not an
    identifier (not importable) are skipped."""
    packages: set[str] = set()
    data: dict[str, list[str]] = {}
    for name, folder in package_dir.items():
        base = root / folder
        for path, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if d.isidentifier() and d != "__pycache__"]
            rel = Path(path).relative_to(base).parts
            if not any(f.endswith(".py") or _kept(f) for f in files):
                continue
            packages.update(".".join((name, *rel[:i])) for i in range(len(rel) + 1))
            if found := sorted(f for f in files if _kept(f)):
                data[".".join((name, *rel))] = found
    return sorted(packages), data


packages, package_data = discover(PACKAGE_DIR)
setup(packages=packages, package_dir=PACKAGE_DIR, package_data=package_data)
