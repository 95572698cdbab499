"""Every command in the README works as written.

The lines of the README's ```bash blocks are extracted (comments dropped, ``&&`` chains split)
and, in README order, in a sandbox folder holding tiny copies of the named test sets under
``data/`` (the default data root), SR outputs under ``results/osediff`` and
``results/s3diff``, and a ``my_photos`` folder:

* ``run``: executed as written (in-process, the ``harness`` entry point's ``main``);
* ``auto`` (``harness run|eval|profile``): dry-run first; executed when no selected method or
  metric needs a weight file, otherwise the dry run is the check;
* ``dry-run``: executed with ``--dry-run`` (every option and key is checked, nothing is done);
* ``help``: its subcommand's ``--help`` (a ``python script.py`` command: the script's ``--help``);
* ``skip: why``: not run, with the reason.

A command matching no rule in ``RULES`` gets ``auto``/``run``/``dry-run``/``help`` by its
``harness`` subcommand (``DEFAULTS``; ``help`` when unlisted). A command that is not ``harness``
and matches no rule fails with a message asking for a rule, as does a ``harness`` subcommand that
does not exist. Absolute placeholder paths (``/data/...``, ``/path/to/...``) are mapped into the
sandbox (``PLACEHOLDERS``).
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.imageio import write_png

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# (regex on the command, treatment); the first match wins
RULES: list[tuple[str, str]] = [
    (r"^harness .*--help\b", "run"),  # help is offline everywhere
    (r"^python3? -m venv |^\. \.venv/bin/activate$|^pip install ",
     "skip: installs the package into a fresh venv, which .ci/run does on every CI run"),
    (r"^python3\.\d+ -m venv \.\./envs/|^\.\./envs/\S+/bin/pip install ",
     "skip: an official implementation's own environment (downloads its pinned packages)"),
    (r"^git clone ", "skip: fetches an official repository (network)"),
    (r"^python3? tools/\S+\.py\b", "help"),  # equivalence scripts need an official checkout
    (r"^pytest\b", "skip: the test suite itself (this test is part of it)"),
    (r"^harness weights (list|check)\b", "run"),
    (r"^harness weights fetch\b", "dry-run"),
    (r"^harness train\b", "dry-run"),  # a training run takes minutes
    (r"^torchrun .*-m harness ", "dry-run"),  # multi-process launch: the harness part
    (r"^python3? benchmarks/\S+\.py\b", "help"),  # benchmarks take minutes and ../shared data
    # fan-outs: no cluster here, and worker processes take long; Hydra composes and checks the
    # launcher's config in the dry run (tests/test_scaleout.py runs the joblib fan-out)
    (r"^harness run .*--launcher ", "dry-run"),
]  # fmt: skip
# treatment of a harness subcommand that no rule names
DEFAULTS = {"run": "auto", "eval": "auto", "profile": "auto", "list": "run", "report": "run",
            "train": "dry-run"}  # fmt: skip
PLACEHOLDERS = {"/data/realisr": "data", "/data/": "data/", "/path/to/": "placeholders/"}
SHELL_SYNTAX = re.compile(r"[|;<>`]|\$\(")


def readme_commands(text: str) -> list[str]:
    """The command lines of the README's ```bash blocks, comments dropped, chains split."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            line = _strip_comment(line).strip()
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def _strip_comment(line: str) -> str:
    """``line`` up to its first ``#`` that starts a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def subcommands() -> set[str]:
    from harness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def classify(command: str) -> str:
    """The treatment of one README command (see the module docstring)."""
    if SHELL_SYNTAX.search(command):
        raise AssertionError(
            f"README command {command!r} uses shell syntax (| ; < > $( `) that this test cannot "
            "run: write one command per line"
        )
    for pattern, how in RULES:
        if re.search(pattern, command):
            return how
    argv = shlex.split(command)
    if argv[0] != "harness":
        raise AssertionError(
            f"README command {command!r} is not a harness command and no rule in "
            "tests/test_readme.py RULES says how to check it: add one (run, dry-run, help, "
            "or 'skip: why')"
        )
    known = subcommands()
    if len(argv) < 2 or argv[1] not in known:
        sub = argv[1] if len(argv) > 1 else ""
        raise AssertionError(
            f"README command {command!r}: 'harness {sub}' is not a subcommand "
            f"(known: {', '.join(sorted(known))})"
        )
    return DEFAULTS.get(argv[1], "help")


def _harness_argv(command: str, sandbox: Path) -> list[str]:
    for old, new in PLACEHOLDERS.items():
        command = command.replace(old, f"{sandbox}/{new}")
    argv = shlex.split(command)
    if argv[0] == "torchrun":
        argv = ["harness", *argv[argv.index("harness") + 1 :]]
    return argv[1:]


def _main(argv: list[str]) -> tuple[int, str, str]:
    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # --help and argparse errors
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def _needs_weights(config: dict) -> list[str]:
    from harness.methods import METHODS
    from harness.metrics import METRICS

    names = [m for m in config.get("methods", []) if METHODS.get(m).card.weights]
    return names + [m for m in config.get("metrics", []) if METRICS.get(m).weights]


def _script_help(command: str) -> tuple[int, str]:
    path = ROOT / shlex.split(command)[1]
    out = io.StringIO()
    old = sys.argv
    sys.argv = [str(path), "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(str(path), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    return code, out.getvalue()


def check(command: str, sandbox: Path) -> str:
    """Run one README command as its treatment says; returns what was done."""
    how = classify(command)
    if how.startswith("skip:"):
        return how
    if command.startswith("python"):
        code, text = _script_help(command)
        assert code == 0 and "usage:" in text, f"{command} --help failed (exit {code}): {text}"
        return "help"
    argv = _harness_argv(command, sandbox)
    if how == "help":
        code, out, err = _main([argv[0], "--help"])
        assert code == 0 and "usage:" in out, f"harness {argv[0]} --help: exit {code} {err}"
        return how
    if how in ("dry-run", "auto"):
        code, out, err = _main([*argv, "--dry-run"])
        assert code == 0, f"README command {command!r} --dry-run: exit {code}: {err.strip()}"
        if how == "dry-run":
            return how
        blockers = _needs_weights(yaml.safe_load(out) or {})
        if blockers:
            return f"dry-run (needs weights: {', '.join(blockers)})"
    code, out, err = _main(argv)
    assert code == 0, f"README command {command!r}: exit {code}: {err.strip()[-2000:]}"
    return "run"


# ----------------------------------------------------------------------------- the sandbox


def _pairs(folder: Path, names: tuple[str, ...], hr: bool = True, lr_dir: str = "LR") -> None:
    rng = np.random.default_rng(len(str(folder)))
    for n in names:
        write_png(folder / lr_dir / f"{n}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
        if hr:
            write_png(folder / "HR" / f"{n}.png", rng.integers(0, 256, (32, 32, 3), np.uint8))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("readme")
    for name in ("DRealSR", "RealSR", "DIV2K-Val"):
        _pairs(root / "data" / name, ("p1", "p2"))
    _pairs(root / "data" / "RealSet65", ("r1",), hr=False, lr_dir=".")
    _pairs(root / "my_photos", ("m1", "m2"))
    for n in ("p1", "p2"):
        for method in ("osediff", "s3diff"):
            write_png(root / "results" / method / f"{n}.png", np.zeros((32, 32, 3), np.uint8))
    (root / "placeholders" / "downloads").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("HARNESS_DATA", raising=False)  # the README's default data root: ./data
        yield root


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command(command, sandbox):
    check(command, sandbox)


def test_readme_has_commands_and_runs_some_for_real():
    hows = [classify(c) for c in COMMANDS]
    assert len(COMMANDS) >= 15 and hows.count("run") + hows.count("auto") >= 8


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("harness frobnicate --x", "'harness frobnicate' is not a subcommand"),
        ("make all", "no rule in tests/test_readme.py RULES"),
        ("harness list methods|datasets", "uses shell syntax"),
    ],
)
def test_unknown_commands_fail_with_a_clear_message(command, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        classify(command)


def test_a_drifted_option_fails(sandbox):
    """Mutation caught: a README command whose option was renamed (the old test-free README
    kept `harness list methods|datasets|metrics` and a `fetch psnr` that exits 2)."""
    with pytest.raises(AssertionError, match="exit 2"):
        check("harness run --methods bicubic --metric psnr", sandbox)
    with pytest.raises(AssertionError, match="exit 2"):
        check("harness profile --methods adcsr --lr-sizes 128", sandbox)


def test_extraction():
    text = "x\n```bash\na --b 'c # d'  # note\ne && f \\\n  g\n# only a comment\n```\n"
    assert readme_commands(text) == ["a --b 'c # d'", "e", "f g"]
