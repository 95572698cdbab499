"""The SR stage: images decoded ahead and PNG-encoded on I/O threads while the method computes."""

import threading

import numpy as np
import pytest

import harness.runner as runner
from harness.imageio import read_rgb


def test_png_writes_run_off_the_main_thread_and_match(tmp_path, cli, capsys, monkeypatch):
    """Every cached image equals the method's output, written by an I/O thread (mutation
    caught: writing on the main thread; dropping a pending write at the end)."""
    threads = []
    write = runner.write_png

    def spy(path, img):
        threads.append(threading.current_thread().name)
        return write(path, img)

    monkeypatch.setattr(runner, "write_png", spy)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert cli("run", "--methods", "bicubic", "--out", out, "profile.enabled=false") == 0
    capsys.readouterr()
    assert len(threads) == 6 and all(t.startswith("sr-io") for t in threads)
    pngs = sorted((tmp_path / "cache" / "sr").rglob("*.png"))
    assert len(pngs) == 6
    from harness.imageio import from_tensor, to_tensor
    from harness.methods.classical import Bicubic

    lr_dir = next((tmp_path / "cache").rglob("LR"))
    for png in pngs:
        lr = to_tensor(read_rgb(lr_dir / png.name))
        expected = from_tensor(Bicubic().upscale(lr)[0])
        assert np.array_equal(read_rgb(png), expected), png.name


def test_a_failed_write_fails_the_run(tmp_path, cli, capsys, monkeypatch):
    def broken(path, img):
        raise OSError(f"{path}: disk full")

    monkeypatch.setattr(runner, "write_png", broken)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    rc = None
    try:
        rc = cli("run", "--methods", "bicubic", "--out", tmp_path / "run", "profile.enabled=false")
    except OSError as e:
        assert "disk full" in str(e)
    assert rc in (None, 1, 2) and not (tmp_path / "run" / "per_image.csv").exists()


@pytest.mark.parametrize("profiled", [False, True])
def test_each_method_is_released_before_the_next_one_loads(
    profiled, tmp_path, cli, capsys, monkeypatch
):
    """Methods run one at a time over every dataset, are profiled while loaded, and are freed
    before the next one loads, so a run of several large methods holds one in memory and loads
    each once (mutations caught: the release step disabled; the last method's release skipped;
    the caller still holding a released method; profiling after the release, a second load)."""
    import gc
    import weakref

    import harness.profiler as profiler

    events: list[tuple[str, str]] = []
    alive: list[weakref.ref] = []
    measured = profiler.load_measured

    def spy(method, device, dtype, random_init=False):
        gc.collect()
        still = [r().card.name for r in alive if r() is not None]
        events.append((method.card.name, ",".join(still)))
        alive.append(weakref.ref(method))
        return measured(method, device, dtype, random_init)

    monkeypatch.setattr(runner, "load_measured", spy)
    monkeypatch.setattr(profiler, "load_measured", spy)
    score, at_scoring = runner._score_groups, []

    def scoring(*args, **kwargs):
        gc.collect()
        at_scoring.extend(r().card.name for r in alive if r() is not None)
        return score(*args, **kwargs)

    monkeypatch.setattr(runner, "_score_groups", scoring)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "mine"
    rng = np.random.default_rng(0)
    from harness.imageio import write_png

    write_png(root / "LR" / "a.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    args = ("--methods", "bicubic,lanczos", "--datasets", f"embedded,{root}", "--metrics", "psnr")
    profile = ("profile.runs=1", "profile.warmup=0") if profiled else ("profile.enabled=false",)
    assert cli("run", *args, "--out", tmp_path / "run", *profile) == 0
    err = capsys.readouterr().err
    # each loaded once, and nothing else alive when the next one loads
    assert events == [("bicubic", ""), ("lanczos", "")]
    assert at_scoring == []  # the last method is freed before the metric models load
    assert "bicubic: released" in err
    assert (tmp_path / "run" / "efficiency.csv").is_file() == profiled
