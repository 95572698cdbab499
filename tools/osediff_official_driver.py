"""Run the official OSEDiff test script (cswry/OSEDiff ``test_osediff.py``) from a checkout, on
the CPU, in latent mode, with fixed prompt tags. Used by ``tools/equivalence_osediff.py``; runs
in the official code's own environment (diffusers 0.25, transformers 4.28, peft 0.9) and imports
nothing from the harness.

    python tools/osediff_official_driver.py JOB.json

JOB.json: ``checkout`` (the official repository), ``argv`` (arguments for test_osediff.py),
``tags`` (the tag string DAPE would return, per input file name, in the script's order).

Patches, all applied here at run time (the official files are not modified):

* ``cuda`` -> ``cpu``: the script and ``osediff.py`` hard-code ``"cuda"`` devices;
* the RAM/DAPE tagger is replaced by a stand-in returning the job's tags (the tagger's own
  equivalence is checked separately), so the diffusion part is compared on the same prompts;
* ``DiagonalGaussianDistribution.sample`` returns the mean: the harness's default latent mode
  (the official code samples and never seeds);
* unless the job says ``step_noise``, the scheduler step's variance (std 1e-10 at t=999, fp32)
  is zero, as in the harness (a card deviation): its unseeded draw flips a few 8-bit
  truncations and would make the comparison measure that noise.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import types

import torch


def _cpu(value):
    if isinstance(value, str) and value.startswith("cuda"):
        return "cpu"
    if isinstance(value, torch.device) and value.type == "cuda":
        return torch.device("cpu")
    return value


def patch_cuda() -> None:
    tensor_to, module_to, make = torch.Tensor.to, torch.nn.Module.to, torch.tensor

    def t_to(self, *args, **kwargs):
        args = tuple(_cpu(a) for a in args)
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return tensor_to(self, *args, **kwargs)

    def m_to(self, *args, **kwargs):
        args = tuple(_cpu(a) for a in args)
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return module_to(self, *args, **kwargs)

    def tensor(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return make(*args, **kwargs)

    torch.Tensor.to = t_to
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.to = m_to
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.tensor = tensor


def stub_tagger(tags: list[str]) -> None:
    """``ram.models.ram_lora.ram`` and ``ram.inference_ram`` stand-ins, tags in call order."""
    queue = list(tags)

    class Tagger:
        def eval(self):
            return self

        def to(self, *a, **k):
            return self

    def inference_ram(image, model):
        return [queue.pop(0)]  # inference_ram returns one tag string per image

    ram = types.ModuleType("ram")
    ram.inference_ram = inference_ram
    models = types.ModuleType("ram.models")
    lora = types.ModuleType("ram.models.ram_lora")
    lora.ram = lambda **kwargs: Tagger()
    ram.models = models
    models.ram_lora = lora
    sys.modules.update({"ram": ram, "ram.models": models, "ram.models.ram_lora": lora})


def latent_mode() -> None:
    from diffusers.models.autoencoders import vae

    vae.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean


def no_step_noise() -> None:
    from diffusers import DDPMScheduler

    DDPMScheduler._get_variance = lambda self, t, predicted_variance=None, variance_type=None: (
        torch.zeros(())
    )


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    checkout = os.path.abspath(job["checkout"])
    torch.manual_seed(int(job.get("seed", 0)))
    patch_cuda()
    stub_tagger(job["tags"])
    latent_mode()
    if not job.get("step_noise", False):
        no_step_noise()
    os.chdir(checkout)
    sys.path.insert(0, checkout)
    import my_utils.devices as devices  # the tiled VAE's statistics live on devices.device

    devices.device = torch.device("cpu")
    sys.argv = ["test_osediff.py", *job["argv"]]
    runpy.run_path(os.path.join(checkout, "test_osediff.py"), run_name="__main__")


if __name__ == "__main__":
    main()
