"""The SR stage: images decoded ahead and PNG-encoded on I/O threads while the method computes."""

import threading

import numpy as np

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
