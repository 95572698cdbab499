"""Bad --out folders, interpolations, option ranges and weights files: each is one line naming
the option or file, exit 2, no traceback, found before any work, and nothing left behind."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from harness.imageio import write_png

RNG = np.random.default_rng(22)


def _img(shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _err(capsys) -> str:
    """The one line printed on stderr (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err), err
    return err[-1]


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A two-pair x4 folder dataset of 8x8 LR images."""
    root = tmp_path / "tiny"
    for n in ("a", "b"):
        write_png(root / "LR" / f"{n}.png", _img((8, 8, 3)))
        write_png(root / "HR" / f"{n}.png", _img((32, 32, 3)))
    return root


def _run(cli, tiny, out, *args):
    return cli("run", "--methods", "bicubic", "--datasets", tiny, "--metrics", "psnr",
               "profile.enabled=false", "--out", out, *args)  # fmt: skip


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- 1. --out on a folder that is not a run directory ------------------------------------------


def test_out_on_a_users_folder_is_refused_and_left_untouched(cache_dir, tmp_path, tiny, cli,
                                                             capsys):  # fmt: skip
    """Mutation caught: claim without the run-directory check (the user's config.yaml and
    report.md overwritten, their old .x.tmp deleted)."""
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: config\n")
    (mine / "report.md").write_text("# my report\n")
    old = mine / ".draft.tmp"
    old.write_text("keep me")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    before = _tree(mine)
    assert _run(cli, tiny, mine) == 2
    line = _err(capsys)
    assert f"--out {mine}: a folder that is not a harness run directory" in line
    assert _tree(mine) == before


def test_out_root_is_refused():
    """`--out /` (checked directly: on code without the check a run would write into /).
    Mutation caught: check_out accepting any existing folder."""
    from harness.errors import HarnessError
    from harness.store import check_out

    with pytest.raises(HarnessError, match="--out /: a folder that is not a harness run"):
        check_out("/")


@pytest.mark.parametrize(
    "layout",
    [
        {},  # empty
        {".hydra/config.yaml": "a: 1\n", "job.log": ""},  # a launcher's job folder
        {"jobs/plan.yaml": "a: 1\n"},  # a launch's folder before its merge
        {"profile_config.yaml": "methods: [bicubic]\n"},
        {"manifest.json": json.dumps({"schema": "harness.manifest/1"}), "config.yaml": "x\n"},
    ],
    ids=["empty", "hydra-job", "launch", "profile", "killed-run"],
)
def test_out_on_a_harness_folder_is_accepted(cache_dir, tmp_path, tiny, cli, layout):
    """The folders the harness itself leaves are still written into (regression guard for the
    check above). Mutation caught: run_dir_marker refusing one of these kinds."""
    out = tmp_path / "o"
    out.mkdir()
    for rel, text in layout.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    assert _run(cli, tiny, out) == 0
    assert (out / "summary.json").is_file()


def test_a_manifest_of_another_program_does_not_make_a_run_directory(tmp_path, tiny, cli,
                                                                     capsys):  # fmt: skip
    """Mutation caught: any manifest.json taken as the mark of a run directory."""
    out = tmp_path / "webapp"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my app", "icons": []}')
    before = _tree(out)
    assert _run(cli, tiny, out) == 2
    assert "not a harness run directory" in _err(capsys)
    assert _tree(out) == before


def test_a_run_directory_is_resumed_and_a_killed_one_too(cache_dir, tmp_path, tiny, cli, capsys):
    """Resuming keeps working; a run killed right after claiming its folder left a manifest,
    so the folder is recognised. Mutation caught: claim writing config.yaml before manifest."""
    out = tmp_path / "o"
    assert _run(cli, tiny, out) == 0
    assert _run(cli, tiny, out) == 0  # resumed: everything already scored
    assert "2 images already scored" in capsys.readouterr().err
    from harness.store import RunStore

    killed = tmp_path / "killed"
    RunStore(killed).claim("x: 1\n", "0" * 64)  # what a kill after the claim leaves
    assert sorted(p.name for p in killed.iterdir()) == ["config.yaml", "manifest.json"]
    assert _run(cli, tiny, killed, "seed=1") == 0  # another config, but an unfinished claim


# -- 2. --out that is a file or where nothing can be written ---------------------------------


def test_out_naming_a_file(tmp_path, tiny, cli, capsys):
    """Mutation caught: no file check (FileExistsError from mkdir, exit 1)."""
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert _run(cli, tiny, f) == 2
    assert f"--out {f}: is a file, not a folder" in _err(capsys)
    assert f.read_text() == "mine"


def test_out_under_a_file(tmp_path, tiny, cli, capsys):
    """Mutation caught: the nearest existing parent not checked to be a folder."""
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert _run(cli, tiny, f / "run") == 2
    assert f"{f} is a file, not a folder" in _err(capsys)


@pytest.mark.parametrize("command", ["eval", "profile"])
def test_out_naming_a_file_in_eval_and_profile(tmp_path, tiny, cli, capsys, command):
    """Mutation caught: the check left out of evaluate() / profile()."""
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    if command == "eval":
        argv = ["eval", "--sr", tiny / "HR", "--hr", tiny / "HR", "--metrics", "psnr"]
    else:
        argv = ["profile", "--methods", "bicubic", "--runs", "1"]
    assert cli(*argv, "--out", f) == 2
    assert f"--out {f}: is a file, not a folder" in _err(capsys)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_out_where_nothing_can_be_created(tmp_path, tiny, cli, capsys):
    """procfs takes no new entries, not even from root. Mutation caught: a writability check by
    permission bits (os.access says yes to root) instead of a probe."""
    out = Path("/proc/harness-test-run")
    assert _run(cli, tiny, out) == 2
    assert f"--out {out}: cannot write in /proc" in _err(capsys)


@pytest.mark.parametrize("where", ["parent", "folder"])
def test_out_read_only(tmp_path, tiny, cli, capsys, where):
    """Mutation caught: no writability probe (PermissionError from mkdir or write, exit 1)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / "run" if where == "parent" else ro
    ro.chmod(0o555)
    try:
        try:
            (ro / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("this user writes into read-only folders (root with CAP_DAC_OVERRIDE)")
        assert _run(cli, tiny, out) == 2
        assert f"--out {out}: cannot write" in _err(capsys)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# -- 3. interpolations that cannot be resolved -------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data_root=${oc.env:HARNESS_TEST_NO_SUCH_VAR}",
            "data_root=${oc.env:HARNESS_TEST_NO_SUCH_VAR}: Environment variable "
            "'HARNESS_TEST_NO_SUCH_VAR' not found",
        ),
        (
            "dataset.root=${oc.env:HARNESS_TEST_NO_SUCH_VAR}",
            "dataset.tiny.root=${oc.env:HARNESS_TEST_NO_SUCH_VAR}: Environment variable",
        ),
        ("method.batch_size=${oc.env:HARNESS_TEST_NO_SUCH_VAR}", "method.bicubic.batch_size="),
        ("seed=${nosuchkey}", "seed=${nosuchkey}: Interpolation key 'nosuchkey' not found"),
        ("seed=${seed}", "seed=${seed}: Recursive interpolation detected"),
        ("data_root=${nosuchresolver:x}", "Unsupported interpolation type nosuchresolver"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_bad_interpolation(monkeypatch, tmp_path, tiny, cli, capsys, override, message, dry_run):
    """Mutation caught: OmegaConf.resolve unguarded at compose time (InterpolationResolutionError
    with a traceback, exit 1)."""
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_VAR", raising=False)
    out = tmp_path / "o"
    assert _run(cli, tiny, out, override, *(["--dry-run"] if dry_run else [])) == 2
    assert message in _err(capsys)
    assert not out.exists()


def test_bad_interpolation_in_eval(monkeypatch, tmp_path, tiny, cli, capsys):
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_VAR", raising=False)
    argv = ["eval", "--sr", tiny / "HR", "--hr", tiny / "HR", "--metrics", "psnr"]
    assert cli(*argv, "out=${oc.env:HARNESS_TEST_NO_SUCH_VAR}") == 2
    assert "out=${oc.env:HARNESS_TEST_NO_SUCH_VAR}: Environment variable" in _err(capsys)


# -- 4. numbers out of range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("profile.max_time=inf", "profile.max_time=inf (--max-time): must be a finite number"),
        ("profile.max_time=nan", "profile.max_time=nan (--max-time): must be a finite number"),
        ("profile.max_time=-inf", "profile.max_time=-inf (--max-time): must be a finite number"),
        ("profile.max_time=-1", "profile.max_time=-1 (--max-time): must be >= 0"),
        ("profile.unreliable_spread=nan", "profile.unreliable_spread=nan: must be a finite"),
    ],
)
def test_non_finite_numbers_are_refused(cache_dir, tmp_path, tiny, cli, capsys, override,
                                        message):  # fmt: skip
    """Mutation caught: the float type check without isfinite (inf accepted, then an
    OverflowError after the SR stage with the run directory left behind)."""
    out = tmp_path / "o"
    argv = ["run", "--methods", "bicubic", "--datasets", tiny, "--metrics", "psnr"]
    assert cli(*argv, "--out", out, override) == 2
    assert message in _err(capsys)
    assert not out.exists()


def test_non_finite_max_time_in_profile(tmp_path, cli, capsys):
    out = tmp_path / "o"
    assert cli("profile", "--methods", "bicubic", "--max-time", "inf", "--out", out) == 2
    assert "profile.max_time=inf (--max-time): must be a finite number" in _err(capsys)
    assert not out.exists()


def test_non_finite_number_in_a_method_node(tmp_path, tiny, cli, capsys):
    """Keys typed by their YAML default (a float) refuse inf too."""
    argv = ["run", "--methods", "s3diff", "--datasets", tiny, "--dry-run"]
    assert cli(*argv, "method.guidance_scale=inf") == 2
    assert "method.s3diff.guidance_scale=inf: must be a finite number" in _err(capsys)


# -- 5. malformed weights files ----------------------------------------------------------------


def _bad_weights(tmp_path: Path, kind: str) -> Path:
    if kind == "one-byte":
        path = tmp_path / "one.pth"
        path.write_bytes(b"x")
    else:  # a safetensors header that claims 16 bytes and holds 8 of no JSON
        path = tmp_path / "bad.safetensors"
        path.write_bytes((16).to_bytes(8, "little") + b"not json")
    return path


def _realesrgan(cli, tiny, out, weights):
    return cli("run", "--methods", "realesrgan", "--datasets", tiny, "--metrics", "psnr",
               "profile.enabled=false", "method.arch=tiny", f"method.weights={weights}",
               "--out", out)  # fmt: skip


@pytest.mark.parametrize("kind", ["one-byte", "bad-safetensors"])
def test_a_malformed_weights_file_leaves_no_run_directory(cache_dir, tmp_path, tiny, cli, kind):
    """Whatever the loader raises, a run that fails before scoring anything removes the
    directory it created (before the loader named every failure, a bad safetensors header
    escaped as SafetensorError and the directory stayed)."""
    out = tmp_path / "o"
    try:
        rc = _realesrgan(cli, tiny, out, _bad_weights(tmp_path, kind))
    except Exception:  # a loader that does not yet turn every failure into one line
        rc = 1
    assert rc != 0
    assert not out.exists()


@pytest.mark.parametrize("kind", ["one-byte", "bad-safetensors"])
def test_a_malformed_weights_file_is_one_line_naming_it(cache_dir, tmp_path, tiny, cli, capsys,
                                                        kind):  # fmt: skip
    """The loader's errors (harness/checkpoints.py) reach the user as one line naming the file."""
    path = _bad_weights(tmp_path, kind)
    out = tmp_path / "o"
    assert _realesrgan(cli, tiny, out, path) == 2
    assert str(path) in _err(capsys)
    assert not out.exists()


def test_a_crash_before_scoring_leaves_no_run_directory(cache_dir, tmp_path, tiny, cli,
                                                        monkeypatch):  # fmt: skip
    """Not only a HarnessError: any failure after the claim and before the first scored image
    removes the directory. Mutation caught: run() discarding only on HarnessError."""
    import harness.runner

    def boom(*args, **kwargs):
        raise RuntimeError("a crash in the SR stage")

    monkeypatch.setattr(harness.runner, "sr_stage", boom)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        _run(cli, tiny, out)
    assert not out.exists()


def test_a_failing_profile_leaves_no_folder(tmp_path, cli, monkeypatch):
    """Mutation caught: profile() removing its folder only on HarnessError."""
    import harness.runner

    def boom(*args, **kwargs):
        raise RuntimeError("a crash while profiling")

    monkeypatch.setattr(harness.runner, "_profile", boom)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        cli("profile", "--methods", "bicubic", "--out", out)
    assert not out.exists()


# -- 6. what the profiler says it loads ----------------------------------------------------------


def test_profile_of_a_method_without_weights_says_so(tmp_path, cli, capsys):
    """Mutation caught: "loading (loaded weights)" printed (and weights=loaded recorded) for a
    method that has no network."""
    out = tmp_path / "o"
    assert cli("profile", "--methods", "bicubic", "--runs", "1", "--out", out) == 0
    err = capsys.readouterr().err
    assert "profiling bicubic: preparing (no network, no weights)" in err
    assert "loaded weights" not in err
    rows = json.loads((out / "efficiency.json").read_text())["rows"]
    assert rows[0]["weights"] == "none"


def test_an_image_too_small_for_a_method_stops_the_run_before_any_work(tmp_path, cli, capsys):
    """FeMaSR cannot take an LR side below 8 pixels: the run names the image before it
    upscales anything (bicubic, first in the list, included) and leaves nothing behind.
    Mutation caught: runner not calling each method's check_input_size on the LR sizes."""
    root = tmp_path / "small"
    write_png(root / "LR" / "ok.png", _img((16, 16, 3)))
    write_png(root / "HR" / "ok.png", _img((64, 64, 3)))
    write_png(root / "LR" / "small.png", _img((12, 6, 3)))
    write_png(root / "HR" / "small.png", _img((48, 24, 3)))
    out = tmp_path / "o"
    rc = cli("run", "--methods", "bicubic,femasr", "--datasets", root, "--metrics", "psnr",
             "profile.enabled=false", "method.femasr.arch=tiny", "method.femasr.weights=x.pth",
             "--out", out)  # fmt: skip
    assert rc == 2
    line = _err(capsys)
    assert str(root / "LR" / "small.png") in line and "below 8 pixels" in line, line
    assert not out.exists()


def test_merge_checks_out_before_reading_the_parts(tmp_path, cli, capsys):
    """Mutation caught: merge checking --out only when it claims (after reading the parts,
    which here do not exist: the error would name them instead)."""
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert cli("merge", tmp_path / "no-such-part", "--out", f) == 2
    assert f"--out {f}: is a file, not a folder" in _err(capsys)
    assert f.read_text() == "mine"
