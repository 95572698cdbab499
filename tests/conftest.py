"""Shared fixtures. Tests run offline on tiny inputs; ../shared data is optional."""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "drealsr"

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")

# Under pytest-xdist (``-n N``) the workers share the cores: each gets its share of torch's
# intra-op threads instead of all of them (N workers x all cores oversubscribes the CPU).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    import torch

    from harness.evaluate import _cores  # the cores this process may use, as the stage counts

    torch.set_num_threads(max(1, _cores() // _WORKERS))

# Weights live in a session folder, never the user's: set before pyiqa, timm or huggingface_hub
# are imported (they read these variables at import time).
_WEIGHTS = Path(tempfile.mkdtemp(prefix="harness-test-weights-"))
atexit.register(shutil.rmtree, _WEIGHTS, ignore_errors=True)
os.environ["HARNESS_WEIGHTS"] = str(_WEIGHTS)
os.environ["TORCH_HOME"] = str(_WEIGHTS / "torch")
os.environ["HF_HOME"] = str(_WEIGHTS / "huggingface")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HARNESS_WEIGHTS_MANIFEST", None)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One SR cache (and embedded set) for the whole session, outside the user's home."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["HARNESS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def drealsr() -> Path:
    if not (SHARED / "HR").is_dir():
        pytest.skip(f"{SHARED} is absent (the DRealSR pairs in ../shared are not on this machine)")
    return SHARED


@pytest.fixture
def cli():
    """Call the CLI in-process: ``cli("run", "--out", d)`` returns the exit code."""
    from harness.cli import main

    return lambda *argv: main([str(a) for a in argv])


@pytest.fixture(scope="session")
def fabricated_weights() -> Path:
    """Random weights for every learned metric, in the real formats and places (~1.4 GB, ~20 s),
    with their manifest activated. Scores from them are meaningless; the code paths are real."""
    from harness.weights.fabricate import fabricate, metric_ids

    manifest = _WEIGHTS / "fabricated-manifest.json"
    if not manifest.is_file():  # metric weights only: method files are big
        fabricate(metric_ids(), manifest)
    os.environ["HARNESS_WEIGHTS_MANIFEST"] = str(manifest)
    return manifest


@pytest.fixture(scope="session")
def default_run(cache_dir, tmp_path_factory) -> Path:
    """The README's default `harness run` (embedded set, bicubic, Lanczos and Real-ESRGAN,
    PSNR/SSIM, profiler on), done once per session: minutes on a 2-core CPU, so for slow tests
    only. Read-only: tests that alter it work on a copy."""
    from harness.cli import main

    out = tmp_path_factory.mktemp("default-run") / "run"
    assert main(["run", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def classic_run(cache_dir, tmp_path_factory) -> Path:
    """The default run without its learned method (embedded set, bicubic and Lanczos, PSNR/SSIM,
    profiler on): a real run directory in seconds, done once per session. Read-only: tests that
    alter it work on a copy."""
    from harness.cli import main

    out = tmp_path_factory.mktemp("classic-run") / "run"
    assert main(["run", "--methods", "bicubic,lanczos", "--out", str(out)]) == 0
    return out


@contextlib.contextmanager
def _serve(folder: Path):
    """``folder`` over HTTP on loopback (a release page, a mirror, a static host): the URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def serve_folder():
    """``with serve_folder(path) as url:`` serves ``path`` on loopback for the block."""
    return _serve


class _Payload:
    """Unpickling this runs ``touch <path>``: proof that a loader executed pickled code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def pickle_payload():
    """``pickle_payload(trace)``: an object whose unpickling creates the file ``trace``."""
    return _Payload


@pytest.fixture
def official_golden():
    """``official_golden(file, forward)``: for each case of ``tests/data/<file>`` (an official
    network's outputs on seeded weights, written by its ``tools/equivalence_*.py
    --write-golden``), ``forward(x)`` on the same seeded input matches the kept digest (row and
    column means, evenly spaced values; tools/eqkit.py) within 1e-4, absolute or relative (the
    number of threads changes float sums: up to 4e-5 on FeMaSR's outputs of magnitude ~20)."""

    def check(file: str, forward) -> None:
        import importlib.util
        import json

        import torch

        spec = importlib.util.spec_from_file_location("eqkit", ROOT / "tools" / "eqkit.py")
        kit = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(kit)  # the digest the golden files were written with
        golden = json.loads((Path(__file__).parent / "data" / file).read_text())
        for case in golden["cases"]:
            h, w = case["input"]
            with torch.no_grad():
                digest = kit.golden_summary(forward(kit.golden_input(h, w)))
            for key in ("shape", "row_means", "col_means", "samples"):
                got, want = torch.tensor(digest[key]), torch.tensor(case[key])
                assert got.shape == want.shape, (file, h, w, key)
                assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-4), (
                    file, h, w, key,
                )  # fmt: skip

    return check
