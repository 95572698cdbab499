"""The typed config schema: every option's type and range, checked before any work starts.

The top level of ``configs/run.yaml`` and ``configs/eval.yaml`` and the ``profile`` node are
dataclasses (:class:`RunConfig`, :class:`EvalConfig`, :class:`ProfileConfig`): each field has a
type (``int``, ``float``, ``bool``, ``str``, ``list[str]``, a ``Literal`` of choices, ``| None``)
and, in its metadata, a range (``min``) and the CLI flag that sets it (for the message). A
``float`` is always finite: ``inf`` and ``nan`` are refused wherever a number is expected.

Method and dataset nodes (``configs/method/*.yaml``, ``configs/dataset/*.yaml``) are checked
generically, so a new method or dataset needs no schema code: a node's keys are those of its own
YAML file, and each key's type is the type of its default there (an ``int`` default takes
integers, a ``float`` default numbers, a ``null`` or interpolated default anything). The keys all
methods share (``name``, ``scale``, ``batch_size``) and all datasets share (``name``, ``type``,
``scale``) have ranges (:class:`MethodNode`, :class:`DatasetNode`). A key the YAML adds but the
dataclass lacks is typed from its default in the same way.

Errors are one line: ``profile.runs=0 (--runs): must be >= 1``; an unknown key names the
nearest valid ones (``difflib``).
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, Union

from harness.errors import HarnessError


def opt(default: Any, *, min: float | None = None, flag: str | None = None,
        check: Callable[[Any], str | None] | None = None) -> Any:  # fmt: skip
    """A schema field: ``min`` is inclusive; ``check`` returns an error text or None."""
    meta = {"min": min, "flag": flag, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _device(value: Any) -> str | None:
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(value)):
        return None
    return "must be auto, cpu, cuda or cuda:N"


Dtype = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class ProfileConfig:
    """``profile.*``: efficiency measurement (``harness profile``, ``harness run``)."""

    enabled: bool = True
    lr_size: int = opt(128, min=1, flag="--lr-size")
    runs: int | None = opt(None, min=1, flag="--runs")  # None: chosen from max_time
    min_runs: int = opt(3, min=1)
    max_time: float = opt(1.0, min=0.0, flag="--max-time")
    warmup: int = opt(1, min=0, flag="--warmup")
    random_init: bool = opt(False, flag="--random-init")
    reference: str | None = opt(None, flag="--reference")
    unreliable_spread: float = opt(0.2, min=0.0)
    fast: bool = opt(False, flag="--fast")


@dataclass(frozen=True)
class _Common:
    metrics: list[str] = opt(["psnr", "ssim"], flag="--metrics")  # from suite/default.yaml
    out: str | None = opt(None, flag="--out")
    device: str = opt("auto", flag="--device", check=_device)
    dtype: Dtype = opt("fp32", flag="--dtype")
    force: bool = opt(False, flag="--force")
    strict: bool = opt(False, flag="--strict")
    metrics_autocast: bool = False
    metric_batch_size: int = opt(1, min=1)
    metric_workers: int = opt(0, min=0)  # 0: every core on a CPU, 2 on a GPU


@dataclass(frozen=True)
class PartConfig:
    """``part.*``: the part of a run one job computes (``harness.shards``); null: all of it."""

    method: str | None = None
    dataset: str | None = None
    shard: int | None = opt(None, min=0)


@dataclass(frozen=True)
class RunConfig(_Common):
    """Top level of ``configs/run.yaml``."""

    methods: list[str] = opt(["bicubic", "lanczos", "realesrgan"], flag="--methods")
    datasets: list[str] = opt(["embedded"], flag="--datasets")  # names or folder paths
    cache_dir: str = opt("~/.cache/harness", flag="--cache-dir")
    data_root: str = "data"
    seed: int = opt(0, min=0)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    method: dict[str, Any] = field(default_factory=dict)  # one node per selected method
    dataset: dict[str, Any] = field(default_factory=dict)  # one node per selected dataset
    stage: Literal["sr", "score", "all"] = opt("all", flag="--stage")
    shards: int = opt(1, min=1, flag="--shards")
    part: PartConfig = field(default_factory=PartConfig)


@dataclass(frozen=True)
class EvalConfig(_Common):
    """Top level of ``configs/eval.yaml``."""

    sr: str | dict[str, str] | None = opt(None, flag="--sr")  # a folder, or {method: folder}
    hr: str | None = opt(None, flag="--hr")
    lr: str | None = opt(None, flag="--lr")
    name: str | None = opt(None, flag="--name")
    dataset_name: str | None = None
    scale: int | None = opt(None, min=1)  # None: SR/LR size ratio of the first image


@dataclass(frozen=True)
class MethodNode:
    """Keys every ``configs/method/*.yaml`` has."""

    name: str = ""
    scale: int = opt(4, min=1)
    batch_size: int = opt(1, min=1)


@dataclass(frozen=True)
class DatasetNode:
    """Keys every ``configs/dataset/*.yaml`` has (``type`` is checked against the registry)."""

    name: str = ""
    type: str = "paired"
    scale: int = opt(4, min=1)


# ------------------------------------------------------------------------------------- checks


def suggest(key: str, candidates: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` for the nearest candidates, or ''. A dotted key is compared
    by its last part with the candidates under the same parent first."""
    cands = sorted(set(candidates))
    close: list[str] = []
    if "." in key:
        parent, leaf = key.rsplit(".", 1)
        siblings = {c.rsplit(".", 1)[1]: c for c in cands if c.rsplit(".", 1)[0] == parent}
        close = [siblings[x] for x in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
    close = close or difflib.get_close_matches(key, cands, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def unknown(what: str, key: str, candidates: Iterable[str], hint: str = "") -> HarnessError:
    near = suggest(key, candidates)
    return HarnessError(f"unknown {what} '{key}'{near or hint}")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _type_error(tp: Any, value: Any) -> str | None:
    """Why ``value`` is not of type ``tp`` (None when it is)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        errors = [_type_error(a, value) for a in real]
        return None if any(e is None for e in errors) else errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"
    if tp is Any:
        return None
    if tp is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            # no option means anything by inf or nan; they would fail later, mid-run
            return "must be a finite number"
        return None if ok else "must be a number"
    if tp is str:
        # a path may look like a number (Hydra parses `out=2024` as an int): accept it
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        return None if ok else "must be a string"
    if origin is list or tp is list:
        if not isinstance(value, list):
            return "must be a list, e.g. [a,b]"
        (item,) = typing.get_args(tp) or (Any,)
        bad = [_type_error(item, v) for v in value]
        return next((f"each item {e}" for e in bad if e), None)
    if origin is dict or tp is dict:
        return None if isinstance(value, Mapping) else "must be a mapping"
    return None


def _range_error(spec: Mapping[str, Any], value: Any) -> str | None:
    low = spec.get("min")
    if low is not None and isinstance(value, int | float) and value < low:
        return f"must be >= {low:g}"
    check = spec.get("check")
    return check(value) if check and value is not None else None


def _fail(path: str, value: Any, flag: str | None, why: str) -> HarnessError:
    via = f" ({flag})" if flag else ""
    return HarnessError(f"{path}={_show(value)}{via}: {why}")


def check_dataclass(node: Mapping[str, Any], schema: type, path: str = "",
                    extra: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Check ``node`` against a schema dataclass; ``extra`` types further keys by example
    (a key of the YAML that the dataclass lacks). Unknown keys are an error."""
    hints = typing.get_type_hints(schema)
    known = {f.name: f for f in fields(schema)}
    examples = dict(extra or {})
    prefix = f"{path}." if path else ""
    for key, value in node.items():
        if key in known:
            f = known[key]
            tp, meta = hints[key], f.metadata
            if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
                if not isinstance(value, Mapping):
                    raise _fail(prefix + key, value, None, "must be a mapping")
                sub = examples.get(key) if isinstance(examples.get(key), Mapping) else None
                check_dataclass(value, tp, prefix + key, sub)
                continue
            why = _type_error(tp, value) or _range_error(meta, value)
            if why:
                raise _fail(prefix + key, value, meta.get("flag"), why)
        elif key in examples:
            check_by_example(value, examples[key], prefix + key)
        else:
            raise unknown("key", prefix + key, [prefix + k for k in [*known, *examples]])


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def check_by_example(value: Any, example: Any, path: str) -> None:
    """``value`` must have the type of ``example`` (a YAML default); null/interpolated: any."""
    if example is None or _is_interpolation(example):
        return
    if isinstance(example, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(path, value, None, "must be a mapping")
        for k, v in value.items():
            if k not in example:
                raise unknown("key", f"{path}.{k}", [f"{path}.{e}" for e in example])
            check_by_example(v, example[k], f"{path}.{k}")
        return
    tp: Any = type(example)
    if tp is list:
        tp = list[Any]
    why = _type_error(tp, value)
    if why:
        raise _fail(path, value, None, why)


def check_node(node: Mapping[str, Any], yaml_defaults: Mapping[str, Any], common: type,
               path: str) -> None:  # fmt: skip
    """A method or dataset node: the common keys by ``common``, the others by their YAML."""
    shared = {f.name for f in fields(common)}
    examples = {k: v for k, v in yaml_defaults.items() if k not in shared}
    check_dataclass({k: v for k, v in node.items()}, common, path, examples)


def defaults(schema: type) -> dict[str, Any]:
    """The schema's defaults as a plain dict (documentation and tests)."""
    out: dict[str, Any] = {}
    for f in fields(schema):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            v = f.default_factory()
            out[f.name] = defaults(type(v)) if hasattr(v, "__dataclass_fields__") else v
    return out
