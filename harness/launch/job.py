"""One job of a fan-out: the plan's run config on one (method, dataset, shard).

Hydra calls :func:`job` in whatever process the launcher chose (this one, a joblib worker, a
SLURM node). It never raises: the launcher would stop the other jobs' results from being read.
It returns ``{"out": job folder, "error": one line or None}``; an unexpected exception's
traceback goes to ``<job folder>/error.txt`` and stderr.
"""

from __future__ import annotations

import traceback
from typing import Any

from omegaconf import DictConfig, OmegaConf


def job(launch_cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from harness.errors import HarnessError
    from harness.imageio import write_text
    from harness.progress import log
    from harness.weights import configure_environment

    out = str(HydraConfig.get().runtime.output_dir)
    try:
        configure_environment()  # HARNESS_WEIGHTS -> TORCH_HOME, HF_HOME on this node
        from harness.runner import run

        cfg = OmegaConf.load(str(launch_cfg.plan))
        j = launch_cfg.job
        cfg.part = {"method": str(j.method), "dataset": str(j.dataset), "shard": int(j.shard)}
        cfg.out = out
        log(f"job {j.method} on {j.dataset}, shard {j.shard} of {cfg.shards}: {out}")
        run(cfg)  # type: ignore[arg-type]
        return {"out": out, "error": None}
    except HarnessError as e:
        return {"out": out, "error": str(e)}
    except Exception as e:  # a bug or a crash of a library: keep the traceback with the job
        text = traceback.format_exc()
        write_text(f"{out}/error.txt", text)
        log(text)
        first = (str(e).strip().splitlines() or [""])[0]
        return {"out": out, "error": f"{type(e).__name__}: {first} (traceback: {out}/error.txt)"}
