"""Scale-out: shards, stages, `harness merge`, Hydra multirun launchers, kills and concurrency.

Two tiny paired datasets (drealsr, realsr: 5 random 16x16 -> 64x64 pairs each, written into a
temporary data root) and the classical methods (bicubic, lanczos): every claim below concerns
the orchestration, which is the same for every method.

Equality is byte equality of ``per_image.csv`` with a run done in one process. Metric values are
float32 reductions whose last bit depends on torch's thread count (PSNR differs by 1 ulp between
1 and 2 threads), so every process here computes with one thread, as joblib's workers do.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.imageio import read_rgb, write_png

METHODS, DATASETS = "bicubic,lanczos", "drealsr,realsr"
NAMES = ("a1", "b2", "c3", "d4", "e5")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scaleout-data")
    rng = np.random.default_rng(7)
    for folder in ("DRealSR", "RealSR"):
        for n in NAMES:
            hr = rng.integers(0, 256, (64, 64, 3), np.uint8)
            write_png(root / folder / "HR" / f"{n}.png", hr)
            write_png(root / folder / "LR" / f"{n}.png", hr[::4, ::4])
    return root


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, data_root):
    """One torch thread here and in every child process (see the module docstring)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HARNESS_DATA", str(data_root))
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--methods", METHODS, "--datasets", DATASETS, "--out", str(out),
            "--cache-dir", str(cache), "profile.enabled=false", *extra]  # fmt: skip


@contextlib.contextmanager
def _setting(data_root: Path):
    """What ``one_thread`` sets, for module-scoped fixtures."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_DATA", str(data_root))
        mp.setenv("HARNESS_NO_PROGRESS", "1")
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root) -> Path:
    """The whole run in one process."""
    from harness.cli import main

    out = tmp_path_factory.mktemp("reference") / "run"
    with _setting(data_root):
        assert main(_args(out, out.parent / "cache")) == 0
    assert (out / "per_image.csv").read_text().count("\n") == 1 + 2 * 2 * len(NAMES)
    return out


def _same_run(a: Path, b: Path) -> None:
    assert (a / "per_image.csv").read_bytes() == (b / "per_image.csv").read_bytes()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa == sb  # means, protocol and the config hash


# ----------------------------------------------------------------------------- shards


def test_shards_are_disjoint_balanced_and_independent_of_order():
    from harness.shards import shard_names

    names = [f"img{i:03d}" for i in range(23)]
    parts = [shard_names(names, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(names)  # every name exactly once
    assert {len(p) for p in parts} == {5, 6}
    assert shard_names(list(reversed(names)), 2, 4) == parts[2]


def test_scale_out_keys_at_their_defaults_leave_the_config_hash_unchanged():
    from omegaconf import OmegaConf

    from harness.config import compose_run
    from harness.hashing import config_hash

    plain = OmegaConf.to_container(compose_run(["methods=[bicubic]"]), resolve=True)
    without = {k: v for k, v in plain.items() if k not in ("shards", "part", "stage")}
    assert config_hash(plain) == config_hash(without)
    sharded = plain | {"shards": 2}
    assert config_hash(sharded) != config_hash(plain)


# ----------------------------------------------------------------------------- stages, merge


def test_shards_merged_by_hand_equal_one_process(tmp_path, cli, reference):
    parts = []
    for i in range(2):
        parts.append(tmp_path / f"shard{i}")
        assert cli(*_args(parts[-1], tmp_path / "cache", "--shards", "2", f"part.shard={i}")) == 0
    merged = tmp_path / "merged"
    assert cli("merge", *parts, "--out", merged) == 0
    _same_run(merged, reference)
    assert cli("leaderboard", "validate", merged) == 0
    # the scoring stage of the whole run on the merged directory (where FID would be computed
    # on whole SR folders): it finds every row scored and keeps the provenance
    assert cli(*_args(merged, tmp_path / "cache", "--stage", "score")) == 0
    _same_run(merged, reference)
    assert len(json.loads((merged / "manifest.json").read_text())["merged_from"]) == 2


def test_sr_stage_then_score_stage_equals_one_process(tmp_path, cli, reference, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert cli(*_args(out, cache, "--stage", "score")) == 2  # nothing to score yet
    assert "--stage sr first" in capsys.readouterr().err
    assert cli(*_args(out, cache, "--stage", "sr")) == 0
    assert not (out / "per_image.csv").exists() and len(list(cache.rglob("*.png"))) == 20
    assert cli(*_args(out, cache, "--stage", "score")) == 0
    _same_run(out, reference)


def test_score_stage_refuses_an_incomplete_sr_cache(tmp_path, cli, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert cli(*_args(out, cache, "--stage", "sr")) == 0
    victim = next(cache.rglob("c3.png"))
    victim.unlink()
    capsys.readouterr()
    assert cli(*_args(out, cache, "--stage", "score")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 5 SR images" in err and "c3" in err


@pytest.fixture(scope="module")
def shard_parts(tmp_path_factory, data_root) -> list[Path]:
    """bicubic on drealsr in 2 shards: two finished part runs."""
    from harness.cli import main

    base = tmp_path_factory.mktemp("parts")
    dirs = [base / f"s{i}" for i in range(2)]
    with _setting(data_root):
        for i, d in enumerate(dirs):
            argv = ["run", "--methods", "bicubic", "--datasets", "drealsr", "--out", str(d),
                    "--cache-dir", str(base / "cache"), "profile.enabled=false", "--shards", "2",
                    f"part.shard={i}"]  # fmt: skip
            assert main(argv) == 0
    return dirs


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _refused(cli, capsys, dirs, out: Path, *needles: str) -> None:
    assert cli("merge", *dirs, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    assert not out.exists()  # checked before anything is written


def test_merge_refuses_inconsistent_parts(tmp_path, cli, capsys, shard_parts):
    s0, s1 = shard_parts
    out = tmp_path / "merged"
    assert cli("merge", s0, s1, "--out", out) == 0  # the unaltered parts merge
    capsys.readouterr()
    out = tmp_path / "refused"

    _refused(cli, capsys, [s0], out, "of 5 images of bicubic on drealsr are in no run")
    twin = tmp_path / "twin"
    shutil.copytree(s1, twin)
    _refused(cli, capsys, [s0, s1, twin], out, "is also in", "duplicated")

    def altered(name: str, file: str, edit) -> Path:
        d = tmp_path / name
        shutil.copytree(s1, d)
        if file == "config.yaml":
            (d / file).write_text((d / file).read_text().replace("seed: 0", "seed: 1"))
        else:
            _edit_json(d / file, edit)
        return d

    d = altered("seed", "config.yaml", None)
    _refused(cli, capsys, [s0, d], out, "config differs", "seed")

    def options(s):
        s["metrics"][0]["options"]["test_y_channel"] = False

    d = altered("protocol", "summary.json", options)
    _refused(cli, capsys, [s0, d], out, "protocol differs", "metrics")

    def weights(m):
        m["methods"]["bicubic"]["weights_digest"] = "f" * 64

    d = altered("weights", "manifest.json", weights)
    _refused(cli, capsys, [s0, d], out, "method bicubic differs", "weights_digest")

    def files(m):
        m["datasets"]["drealsr"]["manifest_hash"] = "0" * 64

    d = altered("files", "manifest.json", files)
    _refused(cli, capsys, [s0, d], out, "manifest hash")

    def torch_version(m):
        m["environment"]["packages"]["torch"] = "0.0"

    d = altered("packages", "manifest.json", torch_version)
    _refused(cli, capsys, [s0, d], out, "protocol differs", "packages.torch")

    def unfinished(m):
        m["finished"] = None

    d = altered("unfinished", "manifest.json", unfinished)
    _refused(cli, capsys, [s0, d], out, "has not finished")


# ----------------------------------------------------------------------------- launchers


def test_basic_launcher_fan_out_equals_one_process(tmp_path, cli, reference):
    """8 jobs (2 methods x 2 datasets x 2 shards) one after the other in this process."""
    out = tmp_path / "fan"
    assert cli(*_args(out, tmp_path / "cache", "--shards", "2", "--launcher", "basic")) == 0
    jobs = sorted(p.name for p in (out / "jobs").iterdir() if p.is_dir())
    assert jobs == [f"{m}-{d}-{s}" for m in ("bicubic", "lanczos")
                    for d in ("drealsr", "realsr") for s in (0, 1)]  # fmt: skip
    _same_run(out, reference)


@pytest.mark.slow
def test_joblib_multirun_equals_one_process(tmp_path, cli, reference):
    """The acceptance test: 2 methods x 2 datasets x 2 shards in 2 joblib worker processes."""
    out = tmp_path / "fan"
    argv = _args(out, tmp_path / "cache", "--shards", "2", "--launcher", "joblib",
                 "hydra.launcher.n_jobs=2")  # fmt: skip
    assert cli(*argv) == 0
    assert len(list((out / "jobs").glob("*-*-*/per_image.csv"))) == 8
    _same_run(out, reference)


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs(tmp_path, cli, reference):
    """hydra-submitit-launcher's local executor: the submitit path (the job pickled, run in its
    own process, its result sent back) without SLURM."""
    out = tmp_path / "fan"
    argv = ["run", "--methods", "bicubic", "--datasets", "drealsr", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "profile.enabled=false", "--shards", "2",
            "--launcher", "submitit_local", "hydra.launcher.timeout_min=10"]  # fmt: skip
    assert cli(*argv) == 0
    assert (out / "jobs" / ".submitit").is_dir()
    lines = (out / "per_image.csv").read_text().splitlines()
    want = [ln for ln in (reference / "per_image.csv").read_text().splitlines()
            if ln.startswith("bicubic,drealsr,")]  # fmt: skip
    assert lines[1:] == want and len(want) == len(NAMES)


def test_slurm_launcher_config_is_composed_and_validated(capsys, cli):
    """No cluster here: Hydra composes the submitit_slurm preset and checks its keys."""
    from harness.config import compose_run
    from harness.launch import check_launcher

    cfg = compose_run(["methods=[bicubic]", "shards=4"])
    node = check_launcher(cfg, "slurm", ["hydra.launcher.partition=a100"])
    assert node._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (node.partition, node.gpus_per_node, node.timeout_min) == ("a100", 1, 240)
    node = check_launcher(cfg, "slurm_score", [])
    assert node.mem_gb == 32
    for bad, needle in (
        (["hydra.launcher.partitionn=a100"], "partitionn"),
        (["hydra.launcher.gpus_per_node=two"], "gpus_per_node"),
    ):
        assert cli("run", "--methods", "bicubic", "--launcher", "slurm", *bad, "--dry-run") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert cli("run", "--methods", "bicubic", "--launcher", "slurmm", "--dry-run") == 2
    assert "known: basic, joblib, slurm" in capsys.readouterr().err
    assert cli("run", "--methods", "bicubic", "hydra.launcher.n_jobs=2", "--dry-run") == 2
    assert "need --launcher" in capsys.readouterr().err


# ----------------------------------------------------------------------------- kills

# Runs the CLI with one write cut in half, then SIGKILL: `png` cuts the Nth image file the
# harness writes, `journal` the Nth journal append.
_KILLER = """
import io, json, os, signal, sys
mode, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = [0]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "png":
    from PIL import Image
    save = Image.Image.save
    def cut(self, fp, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            buf = io.BytesIO()
            save(self, buf, *a, **k)
            fp.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            fp.flush()
            die()
        return save(self, fp, *a, **k)
    Image.Image.save = cut
else:
    from harness.store import RunStore
    append = RunStore.append
    def cut(self, rows):
        rows = list(rows)
        calls[0] += 1
        if calls[0] == n:
            line = json.dumps(rows[0].__dict__, sort_keys=True)
            with open(self.journal, "a") as f:
                f.write(line[: len(line) // 2])
            die()
        return append(self, rows)
    RunStore.append = cut
from harness.cli import main
sys.exit(main(argv))
"""


@pytest.mark.parametrize("mode", ["png", "journal"])
def test_killed_in_the_middle_of_a_write_then_rerun(tmp_path, cli, reference, mode):
    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, mode, "3", *_args(out, cache)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "per_image.csv").exists()
    assert cli(*_args(out, cache)) == 0  # the rerun finishes what is missing
    _same_run(out, reference)
    for png in cache.rglob("*.png"):
        read_rgb(png)  # every image under its final name is complete


@pytest.mark.slow
def test_multirun_killed_midway_then_rerun(tmp_path, reference):
    """SIGKILL to the whole joblib multirun (parent and workers) while jobs are running."""
    out, cache = tmp_path / "fan", tmp_path / "cache"
    cmd = [sys.executable, "-m", "harness", *_args(out, cache, "--shards", "2", "--launcher",
           "joblib", "hydra.launcher.n_jobs=2")]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list((out / "jobs").glob("*/rows.jsonl"))) >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the multirun finished before it could be killed"
    assert not (out / "per_image.csv").exists()
    subprocess.run(cmd, check=True, capture_output=True)
    _same_run(out, reference)


# ----------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_concurrent_runs_on_one_cache_and_run_directory(tmp_path, reference):
    """Two processes, same cache, same run directory, started together."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "harness", *_args(out, cache)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    for p in procs:
        assert p.wait() == 0, p.stderr.read().decode()[-2000:]
    _same_run(out, reference)
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no torn or interleaved line
    pngs = list(cache.rglob("*.png"))
    assert len(pngs) == 20 and all(read_rgb(p).shape == (64, 64, 3) for p in pngs)
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def _update_set_scores(path: str, who: int, n: int) -> None:
    from harness.store import RunStore

    store = RunStore(path)
    for i in range(n):
        store.write_set_scores({f"{who}-{i}": {"values": {"fid": float(i)}, "missing": {}}})


def test_concurrent_set_score_updates_lose_nothing(tmp_path):
    """Two processes adding entries to one set_scores.json (read, update, write) at once."""
    from harness.store import RunStore

    ctx = multiprocessing.get_context("fork")
    n = 150
    procs = [ctx.Process(target=_update_set_scores, args=(str(tmp_path), w, n)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(RunStore(tmp_path).read_set_scores()) == 2 * n


def _append_one(path: str) -> None:
    from harness.store import Row, RunStore

    RunStore(path).append([Row("m", "d", "late", "k", {"v": 1.0})])


def _hold_lock(path: str, held, release) -> None:
    from harness.locking import lock_fd

    with open(path, "a") as f:
        lock_fd(f.fileno())
        held.set()
        release.wait(60)


def test_journal_appends_wait_for_the_journal_lock(tmp_path):
    """On a local disk O_APPEND writes of whole lines do not interleave anyway; on network file
    systems they can, so appends are serialised by the journal's lock: an append waits while
    another process holds it."""
    from harness.store import RunStore

    journal = RunStore(tmp_path).journal
    journal.write_text("")
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(journal), held, release))
    holder.start()
    assert held.wait(60)
    child = ctx.Process(target=_append_one, args=(str(tmp_path),))
    child.start()
    child.join(1.5)
    waiting = child.is_alive() and journal.read_text() == ""
    release.set()
    holder.join(60)
    child.join(60)
    assert waiting, "the append did not wait for the lock"
    assert child.exitcode == 0 and "late" in journal.read_text()
