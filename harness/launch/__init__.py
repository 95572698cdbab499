"""``harness run --launcher NAME``: a run fanned out as Hydra multirun jobs, then merged.

The command composes and validates the whole run config once, writes it resolved to
``<out>/jobs/plan.yaml`` and starts Hydra's multirun of ``configs/launch.yaml``: one job per
(method, dataset, shard), each a ``harness run`` of the plan on its part (``part.*``) into
``<out>/jobs/<method>-<dataset>-<shard>/`` (:mod:`harness.launch.job`). The launcher is any
option of Hydra's ``hydra/launcher`` group: ``basic`` (in this process, one job after the
other), ``joblib`` (hydra-joblib-launcher: local worker processes), ``submitit_slurm`` /
``submitit_local`` (hydra-submitit-launcher) or the resource presets in
``configs/hydra/launcher/`` (``slurm``, ``slurm_score``). ``hydra.*`` overrides on the command
line reach the launcher (``hydra.launcher.n_jobs=2``, ``hydra.launcher.partition=a100``).

When every job has finished, their directories are merged into ``<out>`` (``harness merge``),
unless the stage was ``sr`` (then ``--stage score`` follows, with the same ``--out``). A job that
failed is named with its one-line error and its folder; rerunning the same command resumes every
job where it stopped (cached SR images and journaled rows are kept) and merges again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.hashing import config_hash
from harness.imageio import write_text
from harness.progress import log

LAUNCH_CONFIG = "launch"


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(run overrides, ``hydra.*`` overrides for the launcher)."""
    hydra = [o for o in overrides if o.lstrip("+~").startswith("hydra.")]
    return [o for o in overrides if o not in hydra], hydra


def jobs_of(cfg: DictConfig) -> list[tuple[str, str, int]]:
    """(method, dataset, shard) of every job, in sweep order."""
    return [(m, d, s) for m in cfg.methods for d in cfg.datasets for s in range(int(cfg.shards))]


def out_dir(cfg: DictConfig) -> Path:
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return Path(str(cfg.out)) if cfg.out else Path("runs") / config_hash(plain)[:12]


def _sweep(cfg: DictConfig, launcher: str, hydra: Sequence[str], plan: Path) -> list[str]:
    from harness.config import quote

    return [
        f"hydra/launcher={launcher}",
        "hydra.mode=MULTIRUN",
        f"hydra.sweep.dir={quote(str(plan.parent))}",
        f"plan={quote(str(plan))}",
        f"job.method={','.join(cfg.methods)}",
        f"job.dataset={','.join(cfg.datasets)}",
        f"job.shard={','.join(str(i) for i in range(int(cfg.shards)))}",
        *hydra,
    ]


def check_launcher(cfg: DictConfig, launcher: str, hydra: Sequence[str]) -> DictConfig:
    """Compose the launch config with Hydra (the launcher's node included) without running
    anything; a one-line error names a bad launcher or key. Returns the ``hydra.launcher``
    node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.config import CONFIG_DIR, _message

    if (cfg.get("part") or {}).get("method") or (cfg.get("part") or {}).get("dataset"):
        raise HarnessError("part.*: --launcher sets the part of each job; leave part unset")
    if (cfg.get("part") or {}).get("shard") is not None:
        raise HarnessError("part.shard: --launcher sets the part of each job; leave part unset")
    plan = out_dir(cfg).resolve() / "jobs" / "plan.yaml"
    overrides = [o for o in _sweep(cfg, launcher, hydra, plan) if o != "hydra.mode=MULTIRUN"]
    overrides = [o.split(",")[0] if o.startswith("job.") else o for o in overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name="harness"):
        known = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
        if launcher not in known:
            hint = " (pip install hydra-submitit-launcher)" if "submitit" in launcher else ""
            raise HarnessError(
                f"--launcher {launcher}: unknown (known: {', '.join(sorted(known))}){hint}"
            )
        try:
            composed = compose(LAUNCH_CONFIG, overrides=overrides, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as e:
            raise HarnessError(f"--launcher {launcher}: {_message(e)}") from None
    node = composed.hydra.launcher
    try:
        OmegaConf.to_container(node, resolve=False)
    except OmegaConfBaseException as e:
        raise HarnessError(f"--launcher {launcher}: {_message(e)}") from None
    return node


def launch(cfg: DictConfig, launcher: str, hydra: Sequence[str]) -> Path | None:
    """Run every job of ``cfg`` through ``launcher``; returns the merged run directory (None
    after an SR-only stage)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.config import CONFIG_DIR
    from harness.launch.job import job
    from harness.merge import merge

    node = check_launcher(cfg, launcher, hydra)
    out = out_dir(cfg)
    jobs_dir = out.resolve() / "jobs"
    plan = jobs_dir / "plan.yaml"
    write_text(plan, OmegaConf.to_yaml(cfg, resolve=True))
    jobs = jobs_of(cfg)
    log(f"{len(jobs)} jobs ({len(cfg.methods)} methods x {len(cfg.datasets)} datasets x "
        f"{cfg.shards} shards, stage {cfg.stage}) through {launcher} ({node._target_}) "
        f"into {jobs_dir}")  # fmt: skip
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name="harness"):
        try:
            batches = GlobalHydra.instance().hydra.multirun(  # type: ignore[union-attr]
                config_name=LAUNCH_CONFIG,
                task_function=job,
                overrides=_sweep(cfg, launcher, hydra, plan),
            )
        except Exception as e:  # a worker or cluster job died: the launcher raises
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HarnessError(
                f"--launcher {launcher}: {type(e).__name__}: {first}; rerun the same command to "
                "resume"
            ) from None
    results = [r.return_value for batch in batches for r in batch]
    failed = [r for r in results if r["error"]]
    for r in failed:
        log(f"job {Path(r['out']).name} failed: {r['error']} (log: {r['out']})")
    if failed:
        raise HarnessError(
            f"{len(failed)} of {len(results)} jobs failed (first: {Path(failed[0]['out']).name}: "
            f"{failed[0]['error']}); rerun the same command once fixed (finished work is kept)"
        )
    if cfg.stage == "sr":
        log(f"SR stage of {len(results)} jobs done; score them with --stage score --out {out}")
        return None
    return merge([r["out"] for r in results], out)


__all__ = ["check_launcher", "jobs_of", "launch", "split_overrides"]
