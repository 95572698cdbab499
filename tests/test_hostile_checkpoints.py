"""No code from a weights file ever runs, no file is written, the process is not changed.

Every technique of ``tests/hostile.py`` (calls, instance-making opcodes, BUILD on allowed
globals, legacy module persistent ids, container opcodes on globals, rebuilders given bad
arguments) in every format (zip, legacy, tar, bare pickle), at the top level and nested, goes
through every loader: the harness's reader, the ``torch.load`` that third-party libraries get
while the guard is on (by path and by file object, and through ``torch.hub``), and the method
adapters' own readers. After each: no trace file, no ``.patch`` file, the allowed globals and
the process state as before, and either a one-line refusal naming the file or the file's data
with the payload kept inert.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch._utils

from harness.checkpoints import file_digest, load_tensors, restricted_torch_load, save_checkpoint
from harness.errors import HarnessError
from harness.unpickle import Inert

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hostile", Path(__file__).with_name("hostile.py"))
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)

_REBUILDERS = (torch._utils._rebuild_tensor_v2, torch._utils._rebuild_tensor,
               torch._utils._rebuild_parameter)  # fmt: skip


def _process_state() -> dict:
    """What a checkpoint must not be able to change: the rebuilders' attributes, the
    environment, ``sys.path``, torch's private module."""
    funcs = {
        f.__name__: (f.__defaults__, f.__kwdefaults__, f.__code__, dict(f.__dict__))
        for f in _REBUILDERS
    }
    return {"funcs": funcs, "env": dict(os.environ), "path": list(sys.path),
            "utils": set(vars(torch._utils))}  # fmt: skip


def _guarded_torch_load(path: Path):
    from harness.weights.guard import guarded

    with guarded():
        return torch.load(path, map_location="cpu", weights_only=False)


def _guarded_file_object(path: Path):
    from harness.weights.guard import guarded

    with guarded(), open(path, "rb") as f:
        return torch.load(f)  # as CLIP's fallback reads an opened file


def _guarded_hub(path: Path):
    """torchvision's way: ``torch.hub.load_state_dict_from_url`` of a file already in the hub
    folder (no download: the test session is offline)."""
    from harness.weights.guard import guarded

    hub = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, hub / "hostile-00000000.pth")
    try:
        with guarded():
            return torch.hub.load_state_dict_from_url("https://x/hostile-00000000.pth")
    finally:
        (hub / "hostile-00000000.pth").unlink()


def _method_loader(cls_path: str, **cfg):
    def load(path: Path):
        module, name = cls_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        cls(cfg | {"weights": str(path)}).load(torch.device("cpu"), torch.float32)

    return load


def _osediff(path: Path):
    from harness.methods.osediff.weights import read_checkpoint

    return read_checkpoint(path)


def _sinsr(path: Path):
    from harness.methods.sinsr.checkpoint import read_state_dict

    return read_state_dict(path, torch.nn.Linear(4, 1), ("module.",), "test")


def _adcsr(path: Path):
    from harness.methods.adcsr import AdcSR

    return AdcSR({"arch": "tiny", "weights": str(path)})._state_dict()


LOADERS = {
    "load_tensors": load_tensors,
    "load_tensors_mmap": lambda p: load_tensors(p, mmap=True),  # DAPE's RAM file
    "restricted_torch_load": restricted_torch_load,
    "guarded_torch_load": _guarded_torch_load,
    "guarded_file_object": _guarded_file_object,
    "guarded_torch_hub": _guarded_hub,
    "realesrgan": _method_loader(
        "harness.methods.realesrgan.RealESRGAN", arch="tiny", scale=4, tile=0, tile_pad=10
    ),  # fmt: skip
    "bsrgan": _method_loader("harness.methods.bsrgan.BSRGAN", arch="tiny"),
    "swinir": _method_loader("harness.methods.swinir.SwinIRMethod", arch="tiny"),
    "femasr": _method_loader("harness.methods.femasr.FeMaSR", arch="tiny"),
    "adcsr": _adcsr,
    "osediff": _osediff,
    "sinsr": _sinsr,
}


def _check(loader: str, technique: str, fmt: str, nested: bool, tmp_path: Path) -> str:
    trace = tmp_path / "PWNED"
    path = hostile.write(tmp_path / "hostile.pth", technique, fmt, trace, nested)
    before = _process_state()
    try:
        obj = LOADERS[loader](path)
        outcome = "loaded"
    except HarnessError as e:
        msg = str(e)
        assert "\n" not in msg and msg, msg
        # the reader's own refusals name the file; a method may name it or its option
        assert str(path) in msg or "weights" in msg or loader in msg, msg
        obj, outcome = None, "refused"
    assert not trace.exists(), f"{technique} ran code"
    assert not list(tmp_path.rglob("*.patch")), f"{technique} wrote a file"
    after = _process_state()
    assert after == before, f"{technique} changed the process"
    if isinstance(obj, dict) and "payload" in obj:
        assert torch.equal(obj["w"], torch.tensor(hostile.TENSOR))
        inner = obj["payload"]
        if nested:
            inner = inner["cfg"][0]["inner"][0]
        assert isinstance(inner, Inert), inner
    # tensors read afterwards are still read right (a changed rebuilder would negate them)
    save_checkpoint({"x": torch.tensor([1.0, -2.0])}, tmp_path / "plain.pth")
    assert torch.equal(load_tensors(tmp_path / "plain.pth")["x"], torch.tensor([1.0, -2.0]))
    return outcome


@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
@pytest.mark.parametrize("fmt", hostile.FORMATS)
@pytest.mark.parametrize("technique", hostile.TECHNIQUES)
def test_every_technique_every_format_is_inert(technique, fmt, nested, tmp_path):
    outcome = _check("load_tensors", technique, fmt, nested, tmp_path)
    if fmt in ("tar", "bare"):
        assert outcome == "refused"  # not a checkpoint format the harness reads


@pytest.mark.parametrize("loader", [k for k in LOADERS if k != "load_tensors"])
@pytest.mark.parametrize("technique", hostile.TECHNIQUES)
def test_every_loader_holds(loader, technique, tmp_path):
    for fmt in ("zip", "legacy"):
        sub = tmp_path / fmt
        sub.mkdir()
        _check(loader, technique, fmt, fmt == "legacy", sub)


def test_files_of_older_torch_still_load():
    """The LPIPS package ships its weights as written by an older torch (backward hooks saved
    as None); AdcSR's training loss reads them."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    sd = load_tensors(path)
    assert sd and all(torch.is_tensor(v) for v in sd.values())


def test_real_checkpoints_still_load(tmp_path):
    """What the restricted reader must keep reading: state dicts with ``_metadata``,
    parameters, shared and viewed storages, sizes, devices, dtypes, bytes, sets, both formats."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    base = torch.arange(10.0)
    obj = {"sd": net.state_dict(), "p": torch.nn.Parameter(torch.ones(2)),
           "views": [base, base[2:5]], "size": torch.Size([2, 3]), "dev": torch.device("cpu"),
           "dtype": torch.float16, "bytes": b"\x00\xff", "set": {1, 2},
           "half": torch.ones(3, dtype=torch.float16)}  # fmt: skip
    for legacy in (False, True):
        path = tmp_path / f"ok-{legacy}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        got = load_tensors(path)
        assert got["sd"]._metadata == obj["sd"]._metadata
        assert all(torch.equal(got["sd"][k], v) for k, v in obj["sd"].items())
        assert isinstance(got["p"], torch.nn.Parameter) and got["p"].requires_grad
        assert torch.equal(got["views"][1], base[2:5])
        assert (
            got["views"][1].untyped_storage().data_ptr()
            == got["views"][0].untyped_storage().data_ptr()
        )
        assert (got["size"], got["dev"], got["dtype"]) == (obj["size"], obj["dev"], obj["dtype"])
        assert got["bytes"] == obj["bytes"] and got["set"] == {1, 2}
        assert got["half"].dtype == torch.float16


def test_torchscript_archives_load_only_with_a_published_sha256(tmp_path, monkeypatch):
    """CLIP's archives hold code: ``torch.jit.load`` under the guard hashes the whole file on
    every call and loads it only when the manifest publishes that sha256."""
    import hashlib
    import json

    from harness.weights.guard import guarded

    path = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = {"id": "clip-rn50", "name": "RN50.pt", "url": "https://x/RN50.pt", "location": "clip",
             "used_by": ["clipiqa"], "sha256": digest}  # fmt: skip
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([entry]))
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    with guarded():
        assert torch.jit.load(str(path)) is not None
        with open(path, "rb") as f:
            assert torch.jit.load(f) is not None  # CLIP passes an opened file
        with pytest.raises(HarnessError, match="TorchScript"):
            torch.load(path)  # the restricted reader never dispatches to torch.jit.load
    data = bytearray(path.read_bytes())
    data[-30] ^= 1  # the same size, another file
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with guarded(), pytest.raises(HarnessError, match="not a published one"):
        torch.jit.load(str(path))
    assert torch.load is not restricted_torch_load  # the guard is undone after the block


def test_digests_are_never_taken_from_beside_the_file(tmp_path):
    """A record beside the file (forged, or stale after ``cp -p``) is ignored; a file replaced
    with the same size and mtime is hashed again (ctime and inode are in the record's key)."""
    import hashlib
    import json

    a = tmp_path / "RealESRGAN_x4plus.pth"
    a.write_bytes(b"A" * 1000)
    st = a.stat()
    good = file_digest(a)
    assert good == hashlib.sha256(b"A" * 1000).hexdigest()
    assert not list(tmp_path.glob("*.json"))  # nothing written beside the weights
    (tmp_path / (a.name + ".sha256.json")).write_text(
        json.dumps({"size": 1000, "mtime_ns": st.st_mtime_ns, "sha256": "0" * 64})
    )
    assert file_digest(a) == good  # a forged sidecar plays no part
    b = tmp_path / "other"
    b.write_bytes(b"B" * 1000)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(b, a)  # cp -p: same size, same mtime, other bytes
    assert a.stat().st_mtime_ns == st.st_mtime_ns and a.stat().st_size == st.st_size
    assert file_digest(a) == hashlib.sha256(b"B" * 1000).hexdigest()


def test_a_wrong_official_file_of_the_same_size_and_mtime_fails_the_gate(tmp_path, monkeypatch):
    """The official sha256 gate of ``weights check`` (and of methods' ``official``) after a file
    of the same size and mtime replaced a verified one."""
    import hashlib
    import json

    from harness.weights import load_manifest, path_of, status

    good, bad = b"G" * 4096, b"H" * 4096
    entry = {"id": "realesrgan-x4plus", "name": "RealESRGAN_x4plus.pth", "url": "https://x/r.pth",
             "location": "harness:realesrgan", "used_by": ["realesrgan-official"],
             "sha256": hashlib.sha256(good).hexdigest()}  # fmt: skip
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([entry]))
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    e = load_manifest()["realesrgan-x4plus"]
    path = path_of(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(good)
    assert status(e).state == "ok"
    st = path.stat()
    other = tmp_path / "swap"
    other.write_bytes(bad)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(other, path)
    assert status(e).state == "bad_hash"
    path.unlink()


def test_metric_backbones_go_through_the_restricted_reader(tmp_path, monkeypatch):
    """pyiqa's LPIPS reads torchvision's AlexNet and its own weights with torch.load; a hostile
    file planted under the name torchvision expects runs nothing and the metric is missing
    with the file named."""
    import json

    # a folder of this test's own: the session's (fabricated) weights stay untouched
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    from harness.metrics import MetricSuite
    from harness.weights import load_manifest, path_of

    trace = tmp_path / "PWNED"
    entries = [
        {"id": "torchvision-alexnet", "name": "alexnet-owt-7be5be79.pth", "url": "https://x/a.pth",
         "location": "torchvision", "used_by": ["lpips"]},
        {"id": "pyiqa-lpips-alex", "name": "LPIPS_v0.1_alex-df73285e.pth", "url": "https://x/l.pth",
         "location": "pyiqa", "used_by": ["lpips"]},
    ]  # fmt: skip
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(entries))
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(manifest))
    m = load_manifest()
    for e in m.values():
        if e.id in ("torchvision-alexnet", "pyiqa-lpips-alex"):
            path_of(e).parent.mkdir(parents=True, exist_ok=True)
            hostile.write(path_of(e), "reduce_os_system", "legacy", trace, nested=True)
    import pyiqa  # noqa: F401  (its import sets variables of its own: not the file's doing)

    before = _process_state()
    suite = MetricSuite(["lpips"], torch.device("cpu"))
    assert not trace.exists()
    assert _process_state() == before
    assert "lpips" in suite.unavailable
    assert torch.load is not restricted_torch_load


_UNPICKLERS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("jit", "load"),
               ("pickle", "Unpickler"), ("serialization", "load")}  # fmt: skip


def test_nothing_else_in_the_package_unpickles():
    """Only harness/checkpoints.py may call torch.load / pickle.load(s) / torch.jit.load: every
    other reader of a weights file goes through it (adding one elsewhere fails here)."""
    allowed = {ROOT / "harness" / "checkpoints.py", ROOT / "harness" / "weights" / "guard.py"}
    found = []
    for folder in ("harness", "methods", "datasets", "reports", "gate", "leaderboard"):
        for path in (ROOT / folder).rglob("*.py"):
            if path in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(
                    node.value, (ast.Name, ast.Attribute)
                ):
                    owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
                    if (owner, node.attr) in _UNPICKLERS:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{node.attr}")
    assert not found, found


def test_a_file_that_is_no_pickle_says_so(tmp_path):
    path = tmp_path / "one.pth"
    path.write_bytes(b"x")
    with pytest.raises(HarnessError, match=r"one\.pth: refused: not a pickle \(byte 0x78"):
        load_tensors(path)
