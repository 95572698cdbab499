"""A user's own data: --datasets PATH, eval --lr checks, input conversions, cache hygiene."""

import dataclasses
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from harness.imageio import write_png

RNG = np.random.default_rng(7)


def _img(shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def _run(cli, *args):
    return cli("run", "--methods", "bicubic", "profile.enabled=false", *args)


def test_datasets_path_runs_a_folder_named_after_it(cache_dir, tmp_path, cli, capsys):
    """Mutation caught: a path given to --datasets treated as an unknown name (exit 2)."""
    root = tmp_path / "my_photos"
    for n in ("a", "b"):
        write_png(root / "LR" / f"{n}.png", _img((8, 6, 3)))
        write_png(root / "HR" / f"{n}.png", _img((32, 24, 3)))
    out = tmp_path / "o"
    assert _run(cli, "--datasets", f"{root},embedded", "--out", out) == 0
    text = capsys.readouterr().out
    assert "### my_photos (2 images)" in text and "### embedded (6 images)" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["datasets"] == ["my_photos", "embedded"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"]["my_photos"]["n_images"] == 2


def test_datasets_path_of_lr_images_only(cache_dir, tmp_path, cli, capsys):
    root = tmp_path / "phone"
    write_png(root / "x.png", _img((8, 8, 3)))
    out = tmp_path / "o"
    assert _run(cli, "--datasets", root, "--out", out) == 0
    assert "### phone (1 images)" in capsys.readouterr().out
    assert "n/a[1]" in (out / "report.md").read_text()  # PSNR needs HR: not scored


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"LR/a.png": (8, 8), "HR/a.png": (30, 32)}, "HR/a.png: size 32x30 is not 4x the LR"),
        ({"LR/a.png": (8, 8), "HR/b.png": (32, 32)}, "a.png: no file named a.* in"),
        ({"HR/a.png": (32, 32)}, "has HR/ but no LR/"),
        ({"LR/notes.txt": None}, "no images"),
    ],
)
def test_datasets_path_gets_the_named_sets_checks(tmp_path, cli, capsys, layout, message):
    root = tmp_path / "mine"
    for rel, size in layout.items():
        p = root / rel
        if size is None:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x")
        else:
            write_png(p, _img(size + (3,)))
    assert _run(cli, "--datasets", root, "--out", tmp_path / "o") == 2
    assert message in _err(capsys)
    assert not (tmp_path / "o").exists()


def _eval_folders(tmp_path, lr_side=8, sr_side=32):
    for n in ("a", "b"):
        hr = _img((sr_side, sr_side, 3))
        write_png(tmp_path / "hr" / f"{n}.png", hr)
        write_png(tmp_path / "sr" / f"{n}.png", hr // 2)
        write_png(tmp_path / "lr" / f"{n}.png", _img((lr_side, lr_side, 3)))
    return ["eval", "--sr", tmp_path / "sr", "--hr", tmp_path / "hr", "--lr", tmp_path / "lr",
            "--out", tmp_path / "o"]  # fmt: skip


def test_eval_lr_size_is_checked_against_sr_and_scale(tmp_path, cli, capsys):
    """Mutation caught: eval checking only LR names (the old code scored these)."""
    argv = _eval_folders(tmp_path, lr_side=8, sr_side=32)
    assert cli(*argv, "scale=2") == 2
    assert "sr/a.png: size 32x32 is not 2x the LR a.png (8x8)" in _err(capsys)
    write_png(tmp_path / "lr" / "b.png", _img((9, 9, 3)))
    assert cli(*argv) == 2  # the scale inferred from the first pair (4) holds for all
    assert "sr/b.png: size 32x32 is not 4x the LR b.png (9x9)" in _err(capsys)
    assert not (tmp_path / "o").exists()
    write_png(tmp_path / "lr" / "b.png", _img((8, 8, 3)))
    assert cli(*argv) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    [entry] = manifest["datasets"].values()
    assert entry["scale"] == 4 and entry["n_images"] == 2


def test_eval_non_integer_scale(tmp_path, cli, capsys):
    argv = _eval_folders(tmp_path, lr_side=10, sr_side=32)
    assert cli(*argv) == 2
    assert "is not an integer multiple of the LR a.png (10x10)" in _err(capsys)


def test_conversions_warn_once_per_dataset_and_are_recorded(cache_dir, tmp_path, cli, capsys):
    """Mutation caught: converting silently (no warning, nothing in the manifest)."""
    root = tmp_path / "mixed"
    for n in ("a", "b", "c", "d"):
        write_png(root / "HR" / f"{n}.png", _img((32, 32, 3)))
    lr = _img((8, 8, 3))
    (root / "LR").mkdir()
    Image.fromarray(lr[:, :, 0]).save(root / "LR" / "a.png")  # grayscale
    Image.fromarray(lr[:, :, 1]).save(root / "LR" / "b.png")  # grayscale
    rgba = np.concatenate([lr, np.full((8, 8, 1), 200, np.uint8)], 2)
    Image.fromarray(rgba, mode="RGBA").save(root / "LR" / "c.png")
    Image.fromarray(lr[:, :, 2].astype(np.uint16) * 257).save(root / "LR" / "d.png")  # 16-bit
    out = tmp_path / "o"
    assert _run(cli, "--datasets", root, "--out", out) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert warnings == [
        "warning: mixed: 4 of 8 files converted on read: 1 16-bit, 1 alpha, 3 grayscale "
        "(e.g. LR/a.png); grayscale is replicated to RGB, alpha dropped, 16-bit keeps the "
        "high byte"
    ]
    conv = json.loads((out / "manifest.json").read_text())["datasets"]["mixed"]["conversions"]
    assert conv == {"grayscale": ["LR/a.png", "LR/b.png", "LR/d.png"], "alpha": ["LR/c.png"],
                    "16-bit": ["LR/d.png"]}  # fmt: skip


def test_sixteen_bit_rgb_png_is_detected(tmp_path):
    """Pillow opens a 16-bit RGB PNG as 8-bit 'RGB': only the header's raw mode tells."""
    import struct
    import zlib

    from harness.imageio import image_info

    a = RNG.integers(0, 65536, (4, 5, 3)).astype(">u2")
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(4))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)  # fmt: skip

    path = tmp_path / "rgb16.png"
    header = struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0)  # 16 bits per channel, RGB
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    assert image_info(path) == ((5, 4), ("16-bit",))
    write_png(tmp_path / "rgb8.png", _img((4, 5, 3)))
    assert image_info(tmp_path / "rgb8.png") == ((5, 4), ())


def test_orphaned_temporary_files_are_swept(cache_dir, tmp_path, cli, capsys):
    """A killed write leaves `.<name>.*.tmp` in the SR cache: the next run removes it when it is
    stale and never reads it (mutation caught: no sweep)."""
    out = tmp_path / "o"
    assert _run(cli, "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    folder = manifest["methods"]["bicubic"]["sr_cache"]["embedded"]
    old = os.path.join(folder, ".astronaut.abc123.tmp")
    new = os.path.join(folder, ".hubble_centre.def456.tmp")
    for p in (old, new):
        with open(p, "wb") as f:
            f.write(b"\x89PNG half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    stale_run = out / ".per_image.csv.x.tmp"
    stale_run.write_text("half")
    os.utime(stale_run, (time.time() - 3600, time.time() - 3600))
    capsys.readouterr()
    assert _run(cli, "--out", out) == 0
    assert "removed 1 temporary files left by an interrupted run" in capsys.readouterr().err
    assert not os.path.exists(old) and os.path.exists(new)  # a young one may be a live write
    assert not stale_run.exists()
    os.unlink(new)


def test_seed_keys_the_cache_only_for_stochastic_methods(
    cache_dir, tmp_path, cli, capsys, monkeypatch
):
    """bicubic with seed=1 reuses seed=0's SR images (mutation caught: seed always in the key);
    a method declaring `stochastic` gets a new key per seed."""
    from harness.methods import METHODS
    from harness.methods.classical import Bicubic

    root = tmp_path / "seeded"
    for n in ("a", "b"):
        write_png(root / "LR" / f"{n}.png", _img((8, 8, 3)))
        write_png(root / "HR" / f"{n}.png", _img((32, 32, 3)))
    data = ("--datasets", root)
    assert _run(cli, *data, "--out", tmp_path / "s0") == 0
    capsys.readouterr()
    assert _run(cli, *data, "--out", tmp_path / "s1", "seed=1") == 0
    assert "2 SR images reused from cache, 0 to compute" in capsys.readouterr().err

    class Seeded(Bicubic):  # declared stochastic: upscale takes per-image seeds
        card = dataclasses.replace(Bicubic.card, stochastic=True)

        def upscale(self, lr, seeds=None):
            return super().upscale(lr)

    monkeypatch.setitem(METHODS._items, "bicubic", Seeded)
    assert _run(cli, *data, "--out", tmp_path / "s2", "seed=2") == 0
    assert "0 SR images reused from cache, 2 to compute" in capsys.readouterr().err
