"""The distributions as users install them: the wheel holds every package and data file of the
source folders under ``harness`` (and no top-level ``datasets`` or ``methods``), the sdist holds
the sources and builds the same wheel, and the wheel imports and runs outside the checkout.

Built once per module from a copy of the working tree (nothing is written into the checkout),
with the installed setuptools (no build isolation, no network)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# source folder -> where the wheel installs it (stated here independently of setup.py)
MAPPED = {
    "harness": "harness",
    "methods": "harness/methods",
    "datasets": "harness/datasets",
    "reports": "harness/reports",
    "gate": "harness/gate",
    "leaderboard": "harness/leaderboard",
    "configs": "harness/configs",
}
# Files the code opens at run time (configs through harness.config.CONFIG_DIR, Jinja2's
# PackageLoader, importlib.resources, Path(__file__)): named so the walk below cannot pass empty.
RUNTIME_DATA = [
    "harness/configs/run.yaml",
    "harness/configs/eval.yaml",
    "harness/configs/launch.yaml",
    "harness/configs/dataset/_folder.yaml",
    "harness/configs/dataset/embedded.yaml",
    "harness/configs/method/bicubic.yaml",
    "harness/configs/suite/default.yaml",
    "harness/configs/train/adcsr_tiny.yaml",
    "harness/configs/hydra/launcher/slurm.yaml",
    "harness/leaderboard/templates/index.html.j2",
    "harness/leaderboard/static/sort.js",
    "harness/leaderboard/static/style.css",
    "harness/reports/published.yaml",
]
# never shipped: bytecode, temporary files of interrupted writes, weights (see setup.py)
NOT_SHIPPED = {".pyc", ".pyo", ".tmp", ".pth", ".pkl", ".ckpt", ".safetensors"}
# tracked files that are not part of a source release
NOT_IN_SDIST = (".ci/", ".github/", ".gitignore")
# the working tree's build outputs and local data, never copied into the build
SKIP_AT_ROOT = {"build", "dist", "runs", "data"}

BUILD_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}


def _copy_ignore(folder: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__"}
    if Path(folder) == ROOT:
        skip |= {n for n in names if n.startswith(".") or n in SKIP_AT_ROOT}
        skip |= {n for n in names if n.endswith(".egg-info")}
    return skip


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, env=BUILD_ENV, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"


def _pip_wheel(src: Path, dest: Path) -> Path:
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(dest), "."], src)  # fmt: skip
    (wheel,) = dest.glob("*.whl")
    return wheel


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist, the wheel built from the tree, and the wheel built from the sdist."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_copy_ignore)
    sdist_dir = tmp / "sdist"
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
          "b.build_sdist(sys.argv[1])", str(sdist_dir)], src)  # fmt: skip
    (sdist,) = sdist_dir.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        # the "data" filter (no links out, no absolute paths) where Python has it (3.10.12+)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp / "unpacked", **safe)
    (unpacked,) = (tmp / "unpacked").iterdir()
    return {
        "tmp": tmp,
        "sdist": sdist,
        "wheel": _pip_wheel(src, tmp / "wheel"),
        "wheel_from_sdist": _pip_wheel(unpacked, tmp / "wheel_from_sdist"),
    }


def _expected_in_wheel() -> set[str]:
    """Every file of the mapped source folders at its installed path: the modules of every
    package folder and every data file next to them."""
    out = set()
    for folder, target in MAPPED.items():
        for path in (ROOT / folder).rglob("*"):
            rel = path.relative_to(ROOT / folder)
            hidden = any(p.startswith(".") or p == "__pycache__" for p in rel.parts)
            if path.is_file() and not hidden and path.suffix not in NOT_SHIPPED:
                out.add(f"{target}/{rel.as_posix()}")
    return out


def test_wheel_holds_every_package_and_data_file(built):
    names = _names(built["wheel"])
    expected = _expected_in_wheel()
    assert set(RUNTIME_DATA) <= expected, "a file the code reads is missing from the sources"
    # one module per subpackage at least (bsrgan, swinir, femasr were once left out)
    for sub in ("bsrgan", "swinir", "femasr", "realesrgan", "common"):
        assert f"harness/methods/{sub}/__init__.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_installs_only_the_harness_namespace(built):
    names = _names(built["wheel"])
    top = {n.split("/", 1)[0] for n in names}
    (dist_info,) = [t for t in top if t.endswith(".dist-info")]
    # no top-level `datasets` (Hugging Face's, a pyiqa dependency) or `methods` package
    assert top == {"harness", dist_info}
    with zipfile.ZipFile(built["wheel"]) as z:
        assert z.read(f"{dist_info}/top_level.txt").decode().split() == ["harness"]
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "harness = harness.cli:main" in entry_points


def test_sdist_holds_the_sources_and_builds_the_same_wheel(built):
    assert _names(built["wheel_from_sdist"]) == _names(built["wheel"])
    with tarfile.open(built["sdist"]) as tar:
        in_sdist = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "constraints.txt"):
        assert name in in_sdist
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    sources = {
        f
        for f in tracked.stdout.splitlines()
        if not f.startswith(NOT_IN_SDIST) and (ROOT / f).is_file()
    }
    missing = sorted(sources - in_sdist)
    assert not missing, f"tracked files not in the sdist: {missing}"


def test_wheel_imports_and_runs_outside_the_checkout(built):
    """The unpacked wheel alone on the path (no site: the editable install's finder, which maps
    the checkout, is never loaded), the dependencies from this environment's site-packages."""
    tmp = built["tmp"]
    site = tmp / "site"
    with zipfile.ZipFile(built["wheel"]) as z:
        z.extractall(site)
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), *deps]),
        "HARNESS_CACHE": str(tmp / "cache"),
    }
    code = """if True:
        import sys
        from importlib import resources

        import jinja2

        from harness.cli import main

        assert main(["list", "methods"]) in (0, None)
        assert main(["run", "--dry-run"]) in (0, None)  # every config, composed by Hydra
        # the leaderboard's template and static files, opened as site.py opens them
        loader = jinja2.PackageLoader("harness.leaderboard", "templates")
        loader.get_source(jinja2.Environment(), "index.html.j2")
        assert (resources.files("harness.leaderboard") / "static" / "sort.js").is_file()
        from harness.reports import published

        assert published.DATA.is_file()
        # every harness module came from the wheel (namespace packages have no __file__)
        files = {n: getattr(m, "__file__", None) for n, m in sys.modules.items()}
        outside = [n for n, f in files.items() if n.split(".")[0] == "harness"
                   and f is not None and not f.startswith(sys.argv[1])]
        assert not outside, outside
    """
    work = tmp / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-S", "-c", code, str(site)], cwd=work, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "bsrgan" in res.stdout and "femasr" in res.stdout and "swinir" in res.stdout
