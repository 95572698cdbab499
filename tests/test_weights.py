"""The weights manager: manifest, status, import, and downloads from a loopback server."""

import hashlib
import http.server
import json
import threading
import zipfile

import pytest

from harness.errors import HarnessError
from harness.weights import WeightEntry, fetch, install, load_manifest, path_of, status

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    cut_after: dict = {}  # name -> bytes to send before dropping the connection (once)
    ranges: list = []

    def do_GET(self):  # noqa: N802
        name = self.path.strip("/")
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(name, None)
        self.wfile.write(body[:cut] if cut is not None else body)
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.cut_after, _Handler.ranges = {"w.pth": PAYLOAD}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _entry(tmp_path, **kw):
    base = dict(id="t-w", name="w.pth", url="http://invalid/w.pth", location="harness:t",
                used_by=("t",), sha256=SHA)  # fmt: skip
    return WeightEntry(**(base | kw))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_builtin_manifest_is_consistent(monkeypatch):
    monkeypatch.delenv("HARNESS_WEIGHTS_MANIFEST", raising=False)
    entries = load_manifest()
    for e in entries.values():
        assert e.url.startswith("https://"), e.id
        assert e.used_by and e.license
        assert not (e.sha256 and e.sha256_prefix)
        if e.sha256_prefix:
            assert e.sha256_prefix in e.name  # the torch-hub naming convention
    assert entries["clip-rn50"].sha256 in entries["clip-rn50"].url


def test_fetch_resumes_after_a_cut_connection(home, server):
    e = _entry(home)
    _Handler.cut_after["w.pth"] = 300_000
    with pytest.raises(HarnessError, match="rerun the same command to resume"):
        fetch(e, mirror=server)
    dest = path_of(e)
    assert not dest.exists()  # never a partial file under the final name
    part = dest.with_name("w.pth.part")
    assert part.stat().st_size == 300_000
    assert fetch(e, mirror=server) == dest
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert _Handler.ranges[-1] == "bytes=300000-"
    assert status(e).state == "ok"


def test_fetch_refuses_a_hash_mismatch(home, server):
    e = _entry(home, sha256="0" * 64)
    with pytest.raises(HarnessError, match="differs from the manifest"):
        fetch(e, mirror=server)
    dest = path_of(e)
    assert not dest.exists() and not dest.with_name("w.pth.part").exists()


def test_fetch_checks_a_hash_prefix(home, server):
    assert fetch(_entry(home, sha256=None, sha256_prefix=SHA[:8]), mirror=server).is_file()
    with pytest.raises(HarnessError, match="does not start with"):
        fetch(_entry(home, id="x", name="w.pth", location="harness:u", sha256=None,
                     sha256_prefix="ffffffff"), mirror=server)  # fmt: skip


def test_fetch_reports_http_errors_in_one_line(home, server):
    with pytest.raises(HarnessError, match=r"HTTP 404"):
        fetch(_entry(home, name="absent.pth"), mirror=server)


def test_status_and_import(home, tmp_path):
    e = _entry(home)
    assert status(e).state == "missing"
    src = tmp_path / "incoming" / "deep" / "w.pth"
    src.parent.mkdir(parents=True)
    src.write_bytes(PAYLOAD)
    assert install(src, e).read_bytes() == PAYLOAD
    assert status(e).state == "ok"
    path_of(e).write_bytes(PAYLOAD[:-1] + b"x")  # corrupted in place
    assert status(e).state == "bad_hash"
    assert status(_entry(home, sha256=None)).state == "unverified"
    src.write_bytes(b"wrong")
    with pytest.raises(HarnessError, match="was not installed"):
        install(src, e)


def test_unpack_refuses_paths_outside_the_root(home, tmp_path, server):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.txt", "x")
    good = tmp_path / "Set.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("Set/LR/a.png", "x")
    e = WeightEntry("s", "Set.zip", "http://x/Set.zip", "data", ("set",), unpack=True)
    root = tmp_path / "data"
    install(good, e, root)
    assert (root / "Set" / "LR" / "a.png").is_file() and status(e, root).state == "ok"
    e_bad = WeightEntry("b", "bad.zip", "http://x/bad.zip", "data", ("b",), unpack=True)
    with pytest.raises(HarnessError, match="outside"):
        install(bad, e_bad, root)
    assert not (tmp_path / "escape.txt").exists()


def test_manifest_override_file(home, tmp_path, monkeypatch):
    extra = tmp_path / "m.json"
    extra.write_text(json.dumps([{"id": "pyiqa-niqe", "name": "niqe_modelparameters.mat",
                                  "url": "https://mirror/n.mat", "location": "pyiqa",
                                  "used_by": ["niqe"], "sha256": SHA}]))  # fmt: skip
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(extra))
    assert load_manifest()["pyiqa-niqe"].url == "https://mirror/n.mat"
    extra.write_text("{not json")
    with pytest.raises(HarnessError, match="HARNESS_WEIGHTS_MANIFEST"):
        load_manifest()


def test_weights_cli(home, cli, capsys):
    assert cli("weights", "check", "lpips") == 1
    out = capsys.readouterr().out
    assert "missing" in out and "alexnet-owt-7be5be79.pth" in out
    assert cli("weights", "list", "nope") == 2
    assert "nothing named 'nope'" in capsys.readouterr().err


def test_hf_cache_layout_gets_a_main_ref(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    e = _entry(home, location="hf:org/model", name="model.safetensors")
    src = tmp_path / "model.safetensors"
    src.write_bytes(PAYLOAD)
    dest = install(src, e)
    repo = tmp_path / "hf" / "hub" / "models--org--model"
    assert dest == repo / "snapshots" / "harness" / "model.safetensors"
    assert (repo / "refs" / "main").read_text() == "harness"
    assert status(e).state == "ok"


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_weights_check_names_each_files_protection(home, tmp_path, monkeypatch, capsys, cli):
    """``weights check`` says what keeps each file's pickled code from running; a library's
    pickle is read through the restricted reader, so a hostile one runs nothing."""
    import torch

    from harness.metrics import MetricSuite
    from harness.weights.manager import protection

    trace = tmp_path / "PWNED"
    hostile = tmp_path / "hostile.pth"
    torch.save({"params": {"w": torch.ones(1)}, "cfg": _Payload(trace)}, hostile)
    entries = [
        {"id": "pyiqa-lpips-alex", "name": "LPIPS_v0.1_alex-x.pth", "url": "https://x/l.pth",
         "location": "pyiqa", "used_by": ["lpips"]},
        {"id": "torchvision-alexnet", "name": "alexnet.pth", "url": "https://x/alexnet.pth",
         "location": "torchvision", "used_by": ["lpips"]},
    ]  # fmt: skip
    extra = tmp_path / "m.json"
    extra.write_text(json.dumps(entries))
    monkeypatch.setenv("HARNESS_WEIGHTS_MANIFEST", str(extra))
    manifest = load_manifest()
    for e in (manifest["pyiqa-lpips-alex"], manifest["torchvision-alexnet"]):
        path_of(e).parent.mkdir(parents=True, exist_ok=True)
        path_of(e).write_bytes(hostile.read_bytes())
        assert protection(e) == "restricted loader"
        assert status(e).state == "unverified"
    suite = MetricSuite(["lpips"], torch.device("cpu"))
    assert "lpips" in suite.unavailable and not trace.exists()
    capsys.readouterr()
    assert cli("weights", "check", "lpips") == 0
    out = capsys.readouterr().out
    assert "protection" in out and "restricted loader" in out


def test_builtin_library_pickles_all_have_a_protection(monkeypatch):
    from harness.weights.manager import protection

    monkeypatch.delenv("HARNESS_WEIGHTS_MANIFEST", raising=False)
    kinds = {e.id: protection(e) for e in load_manifest().values()}
    assert kinds["clip-rn50"] == "sha256 each load"  # a TorchScript archive
    assert kinds["pyiqa-maniqa-pipal"] == kinds["torchvision-alexnet"] == "restricted loader"
    assert kinds["adcsr-halfdecoder"] == "restricted loader"
    assert kinds["timm-vit-b8"] == kinds["testset-drealsr"] == "not pickled"
