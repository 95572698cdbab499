"""Composing run configs with Hydra from ``configs/`` (packaged as ``harness.configs``).

Config groups: ``method/<name>.yaml``, ``dataset/<name>.yaml``, ``suite/<name>.yaml`` (metric
lists). ``compose_run`` places one entry per selected method at ``method.<name>`` and per dataset
at ``dataset.<name>``. Shorthands: ``method.KEY=V`` sets KEY for every selected method and
``dataset.KEY=V`` for every dataset -- each that has KEY in its config; ``method.NAME.KEY=V``
targets one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError

CONFIG_DIR = Path(str(resources.files("harness.configs")))


def group_options(group: str) -> list[str]:
    """Names of the YAML files of a config group (``method``, ``dataset``, ``suite``)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


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


def _check_names(kind: str, names: list[str]) -> None:
    known = group_options(kind)
    for n in names:
        if n not in known:
            raise HarnessError(f"unknown {kind} '{n}' (known: {', '.join(known)})")
    if len(set(names)) != len(names):
        raise HarnessError(f"--{kind}s: a name is given twice ({', '.join(names)})")


def compose_run(overrides: list[str]) -> DictConfig:
    """The full ``run`` config for the CLI's overrides (validated names, shorthands expanded)."""
    shorthand = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in ("method", "dataset")]
    plain = [o for o in overrides if o not in shorthand]
    base = _compose("run", plain)
    methods, datasets = list(base.methods), list(base.datasets)
    if not methods:
        raise HarnessError("no methods selected (option --methods)")
    if not datasets:
        raise HarnessError("no datasets selected (option --datasets)")
    _check_names("method", methods)
    _check_names("dataset", datasets)
    groups = [f"+method@method.{m}={m}" for m in methods]
    groups += [f"+dataset@dataset.{d}={d}" for d in datasets]
    selected = _compose("run", plain + groups) if shorthand else None
    expanded: list[str] = []
    for o in shorthand:
        key, _, value = o.partition("=")
        kind, _, rest = key.partition(".")
        names = methods if kind == "method" else datasets
        first = rest.split(".", 1)[0]
        if first in names:
            expanded.append(o)
            continue
        # `method.KEY=V` applies to the selected methods whose config has KEY
        targets = [n for n in names if OmegaConf.select(selected[kind][n], rest) is not None
                   or rest in selected[kind][n]]  # fmt: skip
        if not targets:
            raise HarnessError(f"override {o}: no selected {kind} has the key '{rest}'")
        expanded += [f"{kind}.{n}.{rest}={value}" for n in targets]
    cfg = _compose("run", plain + groups + expanded)
    OmegaConf.resolve(cfg)
    return cfg


def compose_eval(overrides: list[str]) -> DictConfig:
    cfg = _compose("eval", overrides)
    OmegaConf.resolve(cfg)
    return cfg


def compose_train(recipe: str, overrides: list[str]) -> DictConfig:
    """A training recipe from ``configs/train/<recipe>.yaml`` with overrides, resolved."""
    known = sorted(p.stem for p in (CONFIG_DIR / "train").glob("*.yaml"))
    if recipe not in known:
        raise HarnessError(f"unknown recipe '{recipe}' (known: {', '.join(known)})")
    cfg = _compose(f"train/{recipe}", overrides)
    needed = list(cfg.get("required", []))
    if cfg.get("stage") == "distill":
        needed += list(cfg.get("required_distill", []))
    missing = [k for k in needed if OmegaConf.select(cfg, k) in (None, "")]
    if missing:
        raise HarnessError(f"recipe {recipe}: set {', '.join(missing)} (key=value overrides)")
    OmegaConf.resolve(cfg)
    return cfg
