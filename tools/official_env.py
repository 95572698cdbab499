"""Run-time patches the official drivers apply inside the official environment (never imported
by the harness): ResShift-family code (SinSR, ResShift) written for one CUDA GPU and an older
torchvision, run unchanged on a CPU.

* ``torchvision.transforms.functional_tensor`` (removed from torchvision, imported by the
  checkouts' basicsr training-data code) is aliased to its successor module;
* ``cpu()``: ``Module.cuda`` / ``Tensor.cuda`` return the object itself and ``torch.load`` maps
  to the CPU; ``one_process(sampler_module)``: ``BaseSampler.setup_dist`` sets one process;
* ``configure(configs, job)``: the job's widths and weight files into the official config.
"""

from __future__ import annotations

import sys


def alias_functional_tensor() -> None:
    import torchvision.transforms._functional_tensor as ft

    sys.modules.setdefault("torchvision.transforms.functional_tensor", ft)


def cpu() -> None:
    import torch

    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    real_load = torch.load

    def cpu_load(f, *a, **k):
        k["map_location"] = "cpu"
        return real_load(f, *a, **k)

    torch.load = cpu_load


def one_process(sampler_module) -> None:
    def setup_dist(self, gpu_id=None):
        self.num_gpus, self.rank = 1, 0

    sampler_module.BaseSampler.setup_dist = setup_dist


def configure(configs, job: dict) -> None:
    """The job's widths (tiny tests) and weight files into the official OmegaConf config."""
    for key, value in job.get("model_params", {}).items():
        configs.model.params[key] = value
    for key, value in job.get("vq_params", {}).items():
        if key in ("embed_dim", "n_embed"):
            configs.autoencoder.params[key] = value
        else:
            configs.autoencoder.params.ddconfig[key] = value
    configs.model.ckpt_path = job["unet_weights"]
    configs.autoencoder.ckpt_path = job["vq_weights"]
