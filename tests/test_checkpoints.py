"""No code from a checkpoint file ever runs: hostile pickles in every format torch.load reads.

Each hostile file carries two payloads that would leave a trace if any unpickling path called
them: ``os.system("touch <file>")`` and ``exec`` setting a module attribute. The loader either
returns inert data (the tensors survive, the payloads become placeholders) or fails with a
one-line ``HarnessError``; in both cases the traces must be absent.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

import pytest
import torch

from harness.checkpoints import load_tensors, tensors_only
from harness.errors import HarnessError
from harness.unpickle import Inert


class _System:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _SetAttr:
    def __reduce__(self):
        return (exec, ("import harness.errors as m; m.PWNED = True",))


@pytest.fixture()
def trace(tmp_path):
    """The file the payload would create; asserts afterwards that no payload ran."""
    path = tmp_path / "PWNED"
    sys.modules["harness.errors"].__dict__.pop("PWNED", None)
    yield path
    assert not path.exists(), "a pickled os.system call ran"
    assert not hasattr(sys.modules["harness.errors"], "PWNED"), "a pickled exec call ran"


def _lightning_like(trace_path):
    return {
        "epoch": 3,
        "state_dict": OrderedDict(
            [
                ("decoder.conv.weight", torch.arange(6.0).reshape(2, 3)),
                ("decoder.conv.bias", torch.ones(2)),
            ]
        ),
        "callbacks": {"ModelCheckpoint": _System(trace_path)},
        "hyper_parameters": [_SetAttr(), {"nested": (_System(trace_path),)}],
    }


def _check_inert(obj):
    sd = tensors_only(obj["state_dict"], "test")
    assert torch.equal(sd["decoder.conv.weight"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(sd["decoder.conv.bias"], torch.ones(2))
    assert isinstance(obj["callbacks"]["ModelCheckpoint"], Inert)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_hostile_objects_nested_in_a_lightning_dict_stay_inert(tmp_path, trace, zip_format):
    path = tmp_path / "halfDecoder.ckpt"
    torch.save(_lightning_like(trace), path, _use_new_zipfile_serialization=zip_format)
    _check_inert(load_tensors(path))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_hostile_top_level_object_never_runs(tmp_path, trace, zip_format):
    path = tmp_path / "evil.pth"
    torch.save(_System(trace), path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(HarnessError):
        tensors_only(load_tensors(path), str(path))


def test_a_hostile_legacy_header_record_never_runs(tmp_path, trace):
    """The legacy format starts with pickled records (magic number, protocol, system info) that
    torch reads with ``pickle_module.load``, not the Unpickler class: the hole of issue 8."""
    good = io.BytesIO()
    torch.save({"w": torch.ones(2)}, good, _use_new_zipfile_serialization=False)
    path = tmp_path / "evil_header.pth"
    path.write_bytes(
        pickle.dumps(_SetAttr(), protocol=2) + pickle.dumps(_System(trace)) + good.getvalue()
    )
    with pytest.raises(HarnessError) as e:
        load_tensors(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_hostile_persistent_id_never_runs(tmp_path, trace):
    """A zip checkpoint whose data.pkl hides the payloads inside a persistent id record."""
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(2)}, good)

    class Evil(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, str) and obj == "w-storage":
                return ("storage", _System(trace), "0", "cpu", 2, _SetAttr())
            return None

    buf = io.BytesIO()
    Evil(buf, protocol=2).dump({"w": "w-storage"})
    path = tmp_path / "evil_pid.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = buf.getvalue() if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    with pytest.raises(HarnessError) as e:
        load_tensors(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_plain_state_dicts_load_in_both_formats(tmp_path, zip_format):
    path = tmp_path / "plain.pth"
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    out = load_tensors(path)
    assert all(torch.equal(out[k], v) for k, v in sd.items())


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_mmap_loading_keeps_the_restrictions(tmp_path, trace, zip_format):
    """``mmap=True`` maps zip files (legacy ones are read whole) on both unpickling paths."""
    path = tmp_path / "big.pth"
    torch.save(_lightning_like(trace), path, _use_new_zipfile_serialization=zip_format)
    out = load_tensors(path, mmap=True)
    assert torch.equal(out["state_dict"]["decoder.conv.weight"], torch.arange(6.0).reshape(2, 3))
    plain = tmp_path / "plain.pth"
    torch.save({"model": {"w": torch.ones(3)}}, plain, _use_new_zipfile_serialization=zip_format)
    assert torch.equal(load_tensors(plain, mmap=True)["model"]["w"], torch.ones(3))
