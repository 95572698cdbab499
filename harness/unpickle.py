"""A pickle reader that can read PyTorch checkpoints and nothing that runs code.

A pickle is a program for a small stack machine: its opcodes name globals (``GLOBAL``,
``STACK_GLOBAL``) and call them (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``), set attributes
(``BUILD``) and call methods on whatever is on the stack (``APPEND``, ``SETITEM``, ``ADDITEMS``).
Python's own unpickler does all of that; this one gives the file none of it:

* A global named in the file is never imported. ``find_class`` answers with a :class:`Name`,
  a record of the two strings, except for a few immutable values (``torch.float32`` and the
  other dtypes) that are returned as themselves.
* ``REDUCE`` calls only the rebuilders in :data:`REBUILDERS`, each through a wrapper that checks
  every argument's type and range before calling torch (a tensor is rebuilt from a storage that
  torch itself made for the file, with integer offsets, sizes and strides). Any other name
  called becomes an :class:`Inert` record of the name and its arguments: Lightning checkpoints
  pickle training objects next to their weights, and those stay readable as data.
* ``NEWOBJ``, ``NEWOBJ_EX``, ``INST`` and ``OBJ`` only ever make :class:`Inert` records.
* ``BUILD`` only sets the state of an :class:`Inert` record (kept as data), or adds plain
  attributes to an ``OrderedDict`` (``state_dict()`` keeps ``_metadata`` that way). A name
  (the rebuilders included) is never built: nothing in the file can set an attribute of a
  function, a class or a module.
* ``APPEND(S)``, ``SETITEM(S)`` and ``ADDITEMS`` act on a ``list``, a ``dict``/``OrderedDict``
  and a ``set`` only (exact types).
* Persistent ids (how torch refers to tensor storages) must be ``("storage", <storage type>,
  key, location, numel[, view])`` with those types; anything else is refused, so torch's legacy
  path that compares (and may write) module sources is never reached. ``numel`` is bounded by
  the file's size.
* ``EXT1/2/4`` (the copyreg registry), ``PERSID`` (text ids) and the protocol-5 buffer opcodes
  are refused: no PyTorch checkpoint uses them.

Every other opcode (constants, tuples, lists, dicts, sets, memo, frames, marks) only builds
built-in containers and is handled by Python's pure-Python unpickler, which this class extends.
A refusal is an :class:`pickle.UnpicklingError` saying which opcode and what it held.
"""

from __future__ import annotations

import codecs
import pickle
from collections import OrderedDict
from typing import Any

import torch
import torch._utils

_Base: Any = pickle._Unpickler  # the pure-Python unpickler: its opcodes are a dispatch table


class Name:
    """A global named in a pickle (``module.name``), never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __repr__(self) -> str:
        return f"Name({self.module}.{self.name})"


class Inert:
    """An object the file asked to construct, kept as data: the name it called, the arguments
    (``args``, ``kwargs``) and the state ``BUILD`` gave it. Nothing of it is ever called."""

    def __init__(self, name: Name, args: tuple = (), kwargs: dict | None = None) -> None:
        self.name = name
        self.args = args
        self.kwargs = kwargs or {}
        self.state: Any = None

    def __repr__(self) -> str:
        return f"Inert({self.name.module}.{self.name.name})"


def _int(x: Any, what: str, low: int = 0) -> int:
    if type(x) is not int or x < low:
        raise pickle.UnpicklingError(f"{what} must be an integer >= {low}, not {x!r:.60}")
    return x


def _ints(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, tuple) or len(x) > 64:
        raise pickle.UnpicklingError(f"{what} must be a tuple of integers, not {x!r:.60}")
    return tuple(_int(v, what) for v in x)


def _bool(x: Any, what: str) -> bool:
    if type(x) is not bool:
        raise pickle.UnpicklingError(f"{what} must be True or False, not {x!r:.60}")
    return x


def _no_hooks(x: Any) -> None:
    # torch.save writes an empty OrderedDict (None in files of older torch, e.g. the LPIPS
    # package's own weights); hooks are callables, which a file cannot give
    if x is None:
        return
    if type(x) not in (dict, OrderedDict) or x:
        raise pickle.UnpicklingError(f"tensor backward hooks must be empty, not {x!r:.60}")


def _storage(x: Any) -> torch.storage.TypedStorage | torch.UntypedStorage:
    if type(x) not in (torch.storage.TypedStorage, torch.UntypedStorage):
        raise pickle.UnpicklingError(f"a tensor's storage must come from the file, not {x!r:.60}")
    return x


def _rebuild_tensor(storage, offset, size, stride) -> torch.Tensor:
    return torch._utils._rebuild_tensor(
        _storage(storage), _int(offset, "storage offset"), _ints(size, "size"),
        _ints(stride, "stride"),
    )  # fmt: skip


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    _no_hooks(hooks)
    if metadata is not None and (
        type(metadata) is not dict
        or not all(type(k) is str and type(v) is bool for k, v in metadata.items())
    ):
        raise pickle.UnpicklingError(
            f"tensor metadata must map names to booleans: {metadata!r:.60}"
        )
    # every argument passed explicitly: the function's defaults play no part
    return torch._utils._rebuild_tensor_v2(
        _storage(storage), _int(offset, "storage offset"), _ints(size, "size"),
        _ints(stride, "stride"), _bool(requires_grad, "requires_grad"), OrderedDict(),
        metadata or None,
    )  # fmt: skip


def _rebuild_parameter(data, requires_grad, hooks) -> torch.nn.Parameter:
    if type(data) is not torch.Tensor:
        raise pickle.UnpicklingError(f"a parameter's data must be a tensor, not {data!r:.60}")
    _no_hooks(hooks)
    return torch.nn.Parameter(data, _bool(requires_grad, "requires_grad"))


def _ordered_dict(items=()) -> OrderedDict:
    if type(items) not in (list, tuple) or not all(
        type(p) in (list, tuple) and len(p) == 2 for p in items
    ):
        raise pickle.UnpicklingError("OrderedDict takes a list of pairs")
    return OrderedDict(items)


def _size(dims) -> torch.Size:
    return torch.Size(_ints(dims, "torch.Size"))


def _device(kind, index=None) -> torch.device:
    if type(kind) is not str or len(kind) > 32:
        raise pickle.UnpicklingError(f"torch.device takes a device name, not {kind!r:.60}")
    return torch.device(kind) if index is None else torch.device(kind, _int(index, "device index"))


def _encode(text, encoding="latin1") -> bytes:
    # how protocol-2 pickles spell ``bytes``
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode takes a str and 'latin1'")
    return codecs.encode(text, encoding)


def _set(items=()) -> set:
    if type(items) not in (list, tuple):
        raise pickle.UnpicklingError("set takes a list")
    return set(items)


def _frozenset(items=()) -> frozenset:
    if type(items) not in (list, tuple):
        raise pickle.UnpicklingError("frozenset takes a list")
    return frozenset(items)


#: The only functions a file can have called, each a checking wrapper around torch's rebuilder.
REBUILDERS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): _size,
    ("torch", "device"): _device,
    ("_codecs", "encode"): _encode,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("__builtin__", "set"): _set,  # protocol-2 files written by Python 2
    ("__builtin__", "frozenset"): _frozenset,
}

#: Immutable values a file may name and get as themselves (never callable through REDUCE).
_VALUES: dict[tuple[str, str], Any] = {
    ("torch", name): getattr(torch, name)
    for name in dir(torch)
    if isinstance(getattr(torch, name, None), torch.dtype)
}
_VALUES[("torch", "UntypedStorage")] = torch.UntypedStorage  # a storage type in persistent ids


class _Rebuild(Name):
    """A name of :data:`REBUILDERS`: ``REDUCE`` calls its checking wrapper."""

    __slots__ = ()


def _op(code: bytes) -> int:
    return code[0]


class RestrictedUnpickler(_Base):
    """See the module docstring. ``max_numel``: the largest storage (in elements) a persistent
    id may declare; the caller sets it from the file's size."""

    max_numel: int = 1 << 40
    dispatch = dict(_Base.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        key = (str(module), str(name))
        if key in REBUILDERS:
            return _Rebuild(*key)
        if key in _VALUES:
            return _VALUES[key]
        return Name(*key)

    def load(self) -> Any:
        try:
            return super().load()
        except KeyError as e:  # the opcode table has no such byte: not a pickle at all
            code = e.args[0] if e.args else None
            what = f"0x{code:02x}" if isinstance(code, int) else repr(code)
            raise pickle.UnpicklingError(f"not a pickle (byte {what} is no opcode)") from None

    # calls
    def _call(self, func: Any, args: Any, kwargs: dict | None = None) -> Any:
        if type(args) is not tuple:
            raise pickle.UnpicklingError(f"call arguments must be a tuple, not {type(args)}")
        if type(func) is _Rebuild:
            if kwargs:
                raise pickle.UnpicklingError(f"{func} takes no keyword arguments")
            try:
                return REBUILDERS[(func.module, func.name)](*args)
            except pickle.UnpicklingError:
                raise
            except (TypeError, ValueError, RuntimeError, IndexError, OverflowError) as e:
                raise pickle.UnpicklingError(f"{func}: {str(e).splitlines()[0][:120]}") from None
        if type(func) is Name:
            return Inert(func, args, kwargs)
        raise pickle.UnpicklingError(f"refused to call {type(func).__name__} {func!r:.60}")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._instance(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(kwargs) is not dict:
            raise pickle.UnpicklingError("NEWOBJ_EX keyword arguments must be a dict")
        self.append(self._instance(cls, args, kwargs))

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        args = tuple(self.pop_mark())  # before ``self.append``: pop_mark rebinds it
        self.append(self._instance(self.find_class(module, name), args))

    def load_obj(self) -> None:
        args = self.pop_mark()
        cls = args.pop(0)
        self.append(self._instance(cls, tuple(args)))

    def _instance(self, cls: Any, args: Any, kwargs: dict | None = None) -> Inert:
        # an instance of any class is only ever a record: even allowed names are not classes
        if type(cls) is not Name or type(args) is not tuple:
            raise pickle.UnpicklingError(f"refused to instantiate {cls!r:.60}")
        return Inert(cls, args, kwargs)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is Inert:
            inst.state = state
        elif (
            type(inst) is OrderedDict
            and type(state) is dict
            and all(type(k) is str and not k.startswith("__") for k in state)
        ):
            inst.__dict__.update(state)  # plain attributes of a plain container
        else:
            raise pickle.UnpicklingError(f"refused to set the state of {inst!r:.60}")

    # container methods
    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(list).append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list).extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(dict, OrderedDict)[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target(dict, OrderedDict)
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target(set).update(items)

    def _target(self, *types: type) -> Any:
        if not self.stack or type(self.stack[-1]) not in types:
            what = type(self.stack[-1]).__name__ if self.stack else "nothing"
            raise pickle.UnpicklingError(f"refused to add items to {what}")
        return self.stack[-1]

    # persistent ids (tensor storages)
    def load_binpersid(self) -> None:
        pid = self.stack.pop()
        self.append(self.persistent_load(self._check_pid(pid)))

    def _check_pid(self, pid: Any) -> tuple:
        if type(pid) is not tuple or len(pid) not in (5, 6):
            raise pickle.UnpicklingError(f"persistent id {pid!r:.60} is not a storage")
        kind = pid[0].decode("ascii", "replace") if type(pid[0]) is bytes else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"persistent id of kind {kind!r:.40} refused")
        stype = pid[1]
        if not (
            stype is torch.UntypedStorage
            or type(stype).__name__ == "StorageType"  # torch's record of a typed storage
            and isinstance(getattr(stype, "dtype", None), torch.dtype)
        ):
            raise pickle.UnpicklingError(f"persistent id with storage type {stype!r:.60}")
        for field in pid[2:4]:
            if type(field) not in (str, bytes) or len(field) > 256:
                raise pickle.UnpicklingError("persistent id key and location must be short str")
        numel = _int(pid[4], "storage size")
        if numel > self.max_numel:
            raise pickle.UnpicklingError(f"a storage of {numel} elements is larger than the file")
        if len(pid) == 6 and pid[5] is not None:
            view = pid[5]
            if type(view) is not tuple or len(view) != 3 or type(view[0]) not in (str, bytes):
                raise pickle.UnpicklingError("persistent id view must be (key, offset, size)")
            if _int(view[1], "view offset") + _int(view[2], "view size") > numel:
                raise pickle.UnpicklingError("persistent id view lies outside its storage")
        return pid


def _refusing(code: bytes):
    def refuse(self) -> None:
        raise pickle.UnpicklingError(f"pickle opcode {code!r} refused")

    return refuse


_U = RestrictedUnpickler
# the opcodes that act on objects, each replaced by its checked form, and those refused outright
for _code, _load in (
    (pickle.REDUCE, _U.load_reduce), (pickle.NEWOBJ, _U.load_newobj),
    (pickle.NEWOBJ_EX, _U.load_newobj_ex), (pickle.INST, _U.load_inst), (pickle.OBJ, _U.load_obj),
    (pickle.BUILD, _U.load_build), (pickle.APPEND, _U.load_append),
    (pickle.APPENDS, _U.load_appends), (pickle.SETITEM, _U.load_setitem),
    (pickle.SETITEMS, _U.load_setitems), (pickle.ADDITEMS, _U.load_additems),
    (pickle.BINPERSID, _U.load_binpersid),
    *((c, _refusing(c)) for c in (pickle.PERSID, pickle.EXT1, pickle.EXT2, pickle.EXT4,
                                  pickle.NEXT_BUFFER, pickle.READONLY_BUFFER)),
):  # fmt: skip
    _U.dispatch[_op(_code)] = _load
del _U, _code, _load
