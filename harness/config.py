"""Composing run configs with Hydra from ``configs/`` (packaged as ``harness.configs``).

Config groups: ``method/<name>.yaml``, ``dataset/<name>.yaml``, ``suite/<name>.yaml`` (metric
lists). ``compose_run`` places one entry per selected method at ``method.<name>`` and per dataset
at ``dataset.<name>``. Shorthands: ``method.KEY=V`` sets KEY for every selected method and
``dataset.KEY=V`` for every dataset -- each that has KEY in its config; ``method.NAME.KEY=V``
targets one. A ``--datasets`` entry that is a folder path (``PATH/{LR,HR}/`` or LR images only)
becomes a dataset named after the folder (``configs/dataset/_folder.yaml``).

Every override key is checked against the YAML before Hydra sees it (an unknown key names the
nearest valid ones), and the composed config against the typed schema (``harness.schema``):
bad input is refused before any work starts.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.schema import (
    DatasetNode,
    EvalConfig,
    MethodNode,
    RunConfig,
    check_dataclass,
    check_node,
    unknown,
)

CONFIG_DIR = Path(str(resources.files("harness.configs")))
FOLDER = "_folder"  # configs/dataset/_folder.yaml: a user's folder given as --datasets PATH


def group_options(group: str) -> list[str]:
    """Names of the YAML files of a config group (``method``, ``dataset``, ``suite``); files
    starting with ``_`` are templates, not choices."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def quote(value: str) -> str:
    """Quote a user string as a Hydra override value (paths with spaces, commas, '=')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _compose(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name="harness"):
            return compose(name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise HarnessError(f"config: {_message(e)}") from None


def _message(e: BaseException) -> str:
    """The first line of the most specific message in an exception chain."""
    chain: list[BaseException] = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    for exc in chain:
        text = str(exc).strip()
        if text:
            return text.splitlines()[0]
    return type(chain[0]).__name__


def resolve(cfg: DictConfig) -> None:
    """Resolve every interpolation in place (``${oc.env:VAR}``, ``${key}``); one that cannot be
    resolved is a one-line error naming its key, before anything else looks at the config."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
        return
    except (OmegaConfBaseException, RecursionError) as e:
        first = e
    # OmegaConf does not say which key failed: resolve the leaves one by one to name it
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    for key in _paths(raw):
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
            if OmegaConf.is_config(value):
                OmegaConf.to_container(value, resolve=True)
        except (OmegaConfBaseException, RecursionError) as e:
            raise HarnessError(f"{key}={_leaf(raw, key)}: {_interpolation_message(e)}") from None
    raise HarnessError(f"config: {_interpolation_message(first)}")


def _leaf(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _interpolation_message(e: BaseException) -> str:
    """OmegaConf's message without its wrapper (``KeyError raised while resolving ...``)."""
    text = _message(e)
    text = re.sub(r"^\w+ raised while resolving interpolation: ", "", text)
    return text.strip('"')


def yaml_defaults(group: str | None, name: str) -> dict[str, Any]:
    """A config file as written (interpolations unresolved, ``defaults`` dropped)."""
    path = CONFIG_DIR / (f"{group}/{name}.yaml" if group else f"{name}.yaml")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert isinstance(data, dict), path
    data.pop("defaults", None)
    return data  # type: ignore[return-value]


def _paths(d: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of a nested dict."""
    out = []
    for k, v in d.items():
        out += _paths(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [prefix + k]
    return out


def _parse(overrides: list[str]) -> list[Any]:
    """Hydra ``Override`` objects; syntax errors, sweeps and deletions are one-line errors."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    out = []
    for o in overrides:
        try:
            (ov,) = parser.parse_overrides([o])
        except HydraException as e:
            raise HarnessError(f"override {o}: {_message(e)}") from None
        if ov.is_sweep_override():
            raise HarnessError(f"override {o}: sweeps are not supported (one value per run)")
        if ov.type == OverrideType.DEL:
            raise HarnessError(f"override {o}: deleting keys is not supported")
        out.append(ov)
    return out


def _check_plain_keys(overrides: list[Any], config: str) -> None:
    """Each top-level override names a key of ``configs/<config>.yaml`` or a group."""
    keys = _paths(yaml_defaults(None, config)) + ["metrics", "suite"]
    for ov in overrides:
        key = ov.key_or_group
        if key == "suite":
            known = group_options("suite")
            if str(ov.value()) not in known:
                raise unknown("suite", str(ov.value()), known, f" (known: {', '.join(known)})")
        elif key not in keys:
            raise unknown(
                "key", key, keys, f" (see configs/{config}.yaml: harness {config} --help)"
            )


def _check_names(kind: str, names: list[str]) -> None:
    known = group_options(kind)
    for n in names:
        if n not in known:
            raise unknown(kind, n, known, f" (known: {', '.join(known)})")


def _check_unique(kind: str, names: list[str], given: list[str]) -> None:
    if len(set(names)) != len(names):
        raise HarnessError(f"--{kind}s: a name is given twice ({', '.join(given)})")


def _looks_like_path(entry: str) -> bool:
    return os.sep in entry or "/" in entry or entry.startswith((".", "~"))


def folder_key(path: Path) -> str:
    """The dataset name of a folder: its own name, in the characters a config key allows."""
    key = re.sub(r"[^A-Za-z0-9_-]", "_", path.name) or "folder"
    return key if key[0].isalpha() or key[0] == "_" else f"_{key}"


def _datasets(entries: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(names, overrides, yaml file per name) for ``--datasets``: named sets, or folder paths."""
    known = group_options("dataset")
    names: list[str] = []
    overrides: list[str] = []
    files: dict[str, str] = {}
    for entry in entries:
        if entry in known:
            names.append(entry)
            overrides.append(f"+dataset@dataset.{entry}={entry}")
            files[entry] = entry
            continue
        path = Path(entry).expanduser()
        if not (_looks_like_path(entry) or path.is_dir()):
            raise unknown("dataset", entry, known, f" (known: {', '.join(known)}; or a folder)")
        if not path.is_dir():
            raise HarnessError(f"--datasets {entry}: folder not found")
        key = folder_key(path.resolve())
        names.append(key)
        files[key] = FOLDER
        overrides += [
            f"+dataset@dataset.{key}={FOLDER}",
            f"dataset.{key}.name={quote(key)}",
            f"dataset.{key}.root={quote(str(path.resolve()))}",
        ]
    _check_unique("dataset", names, entries)
    return names, overrides, files


def _expand_shorthand(o: str, kind: str, names: list[str], nodes: dict[str, dict]) -> list[str]:
    """``method.KEY=V`` -> one override per selected method whose config has KEY."""
    key, _, value = o.partition("=")
    rest = key.partition(".")[2]
    first = rest.split(".", 1)[0]
    if first in names:  # method.NAME.KEY=V
        sub = rest.split(".", 2)[1] if "." in rest else ""
        if sub and sub not in nodes[first]:
            keys = [f"{kind}.{first}.{k}" for k in nodes[first]]
            raise unknown("key", f"{kind}.{first}.{sub}", keys)
        return [o]
    if first in group_options(kind):
        raise HarnessError(f"override {o}: {kind} '{first}' is not selected (--{kind}s)")
    targets = [n for n in names if first in nodes[n]]
    if not targets:
        keys = {k for n in names for k in nodes[n]}
        raise unknown(f"{kind} key", first, keys, f" (no selected {kind} has it)")
    return [f"{kind}.{n}.{rest}={value}" for n in targets]


def _selected(parsed: list[Any], key: str) -> list[Any]:
    """The list ``key`` (methods, datasets) as the overrides leave it (else run.yaml's)."""
    value = yaml_defaults(None, "run")[key]
    for ov in parsed:
        if ov.key_or_group == key:
            value = ov.value()
    if not isinstance(value, list):
        raise HarnessError(f"{key}={value}: must be a list, e.g. {key}=[a,b] (or --{key} a,b)")
    return value


def compose_run(overrides: list[str]) -> DictConfig:
    """The full ``run`` config for the CLI's overrides (validated names, shorthands expanded)."""
    parsed = _parse(overrides)
    shorthand = [o for o, p in zip(overrides, parsed)
                 if p.key_or_group.split(".")[0] in ("method", "dataset")]  # fmt: skip
    plain_parsed = [p for o, p in zip(overrides, parsed) if o not in shorthand]
    _check_plain_keys(plain_parsed, "run")
    plain = [o for o in overrides if o not in shorthand]
    methods = [str(m) for m in _selected(plain_parsed, "methods")]
    entries = [str(d) for d in _selected(plain_parsed, "datasets")]
    if not methods:
        raise HarnessError("no methods selected (option --methods)")
    if not entries:
        raise HarnessError("no datasets selected (option --datasets)")
    _check_names("method", methods)
    _check_unique("method", methods, methods)
    datasets, dataset_overrides, files = _datasets(entries)
    plain = [o for o, p in zip(plain, plain_parsed) if p.key_or_group != "datasets"]
    plain.append(f"datasets=[{','.join(quote(d) for d in datasets)}]")  # 'nan', 'true': strings
    groups = [f"+method@method.{m}={m}" for m in methods] + dataset_overrides
    nodes = {"method": {m: yaml_defaults("method", m) for m in methods},
             "dataset": {d: yaml_defaults("dataset", files[d]) for d in datasets}}  # fmt: skip
    expanded: list[str] = []
    for o in shorthand:
        kind = o.split(".", 1)[0].lstrip("+")
        expanded += _expand_shorthand(o, kind, methods if kind == "method" else datasets,
                                      nodes[kind])  # fmt: skip
    cfg = _compose("run", plain + groups + expanded)
    resolve(cfg)
    validate_run(cfg, files)
    return cfg


def validate_run(cfg: DictConfig, files: dict[str, str] | None = None) -> None:
    """Types and ranges of a composed ``run`` config; cross-checks between keys."""
    data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    top = yaml_defaults(None, "run")
    check_dataclass(data, RunConfig, "", top)
    for m in data["methods"]:
        check_node(data["method"][m], yaml_defaults("method", m), MethodNode, f"method.{m}")
    check_method_options(data["methods"], data["method"])
    for d in data["datasets"]:
        yaml = yaml_defaults("dataset", (files or {}).get(d, d))
        check_node(data["dataset"][d], yaml, DatasetNode, f"dataset.{d}")
        _check_dataset_type(d, data["dataset"][d].get("type", "paired"))
    _check_metrics(data["metrics"])
    from harness.shards import check_part  # keys of scale-out (imports the datasets)

    check_part(data)
    reference = data["profile"].get("reference")
    if reference is not None and reference not in data["methods"]:
        raise HarnessError(
            f"profile.reference={reference} (--reference): '{reference}' is not among --methods "
            f"({', '.join(data['methods'])})"
        )


def check_method_options(names: list[str], nodes: dict[str, Any]) -> None:
    """Each selected method's own option checks (:meth:`SRMethod.validate`: choices, ranges,
    the scale), reading no file: a bad option of the last method stops a run before the first
    one upscales anything, and ``--dry-run`` sees it."""
    from harness.methods import METHODS

    for name in names:
        METHODS.get(name)(nodes[name]).validate()


def _check_dataset_type(name: str, kind: str) -> None:
    from harness.datasets import DATASET_TYPES

    if kind not in DATASET_TYPES:
        known = DATASET_TYPES.names()
        raise unknown(f"type of dataset.{name}", kind, known, f" (known: {', '.join(known)})")


def _check_metrics(names: list[str]) -> None:
    from harness.metrics import METRICS

    if not names:
        raise HarnessError("no metrics selected (option --metrics)")
    for n in names:
        if n not in METRICS:
            raise unknown("metric", n, METRICS.names(), f" (known: {', '.join(METRICS.names())})")
    if len(set(names)) != len(names):
        raise HarnessError(f"--metrics: a name is given twice ({', '.join(names)})")


def compose_eval(overrides: list[str]) -> DictConfig:
    _check_plain_keys(_parse(overrides), "eval")
    cfg = _compose("eval", overrides)
    resolve(cfg)
    data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    check_dataclass(data, EvalConfig, "", yaml_defaults(None, "eval"))
    _check_metrics(data["metrics"])
    if not data["sr"] or not data["hr"]:
        raise HarnessError("harness eval needs both --sr DIR and --hr DIR")
    return cfg


def compose_train(recipe: str, overrides: list[str]) -> DictConfig:
    """A training recipe from ``configs/train/<recipe>.yaml`` with overrides, resolved."""
    known = sorted(p.stem for p in (CONFIG_DIR / "train").glob("*.yaml"))
    if recipe not in known:
        raise unknown("recipe", recipe, known, f" (known: {', '.join(known)})")
    cfg = _compose(f"train/{recipe}", overrides)
    needed = list(cfg.get("required", []))
    if cfg.get("stage") == "distill":
        needed += list(cfg.get("required_distill", []))
    missing = [k for k in needed if OmegaConf.select(cfg, k) in (None, "")]
    if missing:
        raise HarnessError(f"recipe {recipe}: set {', '.join(missing)} (key=value overrides)")
    resolve(cfg)
    return cfg
