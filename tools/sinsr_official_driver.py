"""Runs the official SinSR sampler from a checkout, for ``tools/equivalence_sinsr.py``.

Executed by the *official* environment's Python (``python sinsr_official_driver.py JOB.json``),
never imported by the harness. It imports ``sampler.Sampler`` from the checkout and calls its
``inference()`` on one image file at a time, exactly as ``inference.py --one_step`` does, with
these run-time patches
(the first two from ``official_env.py``) and nothing else:

* without a GPU: ``Module.cuda`` / ``Tensor.cuda`` return the object itself, ``torch.load`` maps
  to the CPU, and ``BaseSampler.setup_dist`` (which asserts one visible GPU) sets one process;
* ``torchvision.transforms.functional_tensor`` (removed from torchvision, imported by the
  checkout's basicsr training-data code) is aliased to its successor module;
* the noise: ``p_sample_loop`` receives the noise tensor the harness used for that tile
  (``sample_func`` passes ``noise=None``, i.e. ``randn_like``); the queue must come out empty.

The job file names the checkout, the weight files, the images, the noise file, the precision,
the chop settings and the output folder; results go to ``<out>/official.pt`` and PNGs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    checkout = Path(job["checkout"]).resolve()
    sys.path.insert(0, str(checkout))

    import official_env
    import torch

    official_env.alias_functional_tensor()
    device = job.get("device", "cpu")
    if device == "cpu":
        official_env.cpu()

    import sampler as official
    from omegaconf import OmegaConf

    if device == "cpu":
        official_env.one_process(official)

    configs = OmegaConf.load(checkout / "configs" / "SinSR.yaml")
    official_env.configure(configs, job)
    configs.diffusion.params.timestep_respacing = configs.diffusion.params.steps
    configs.diffusion.params.sf = 4
    configs.autoencoder.use_fp16 = bool(job["fp16"])

    s = official.Sampler(
        configs,
        chop_size=int(job["chop_size"]),
        chop_stride=int(job["chop_stride"]),
        chop_bs=1,
        use_fp16=bool(job["fp16"]),
        seed=12345,
        ddim=False,
    )
    noises = torch.load(job["noise"], weights_only=True)
    queue: list = []
    loop = s.base_diffusion.p_sample_loop

    def injected(*args, **kwargs):
        kwargs["noise"] = queue.pop(0).to(kwargs["y"].device)
        return loop(*args, **kwargs)

    s.base_diffusion.p_sample_loop = injected

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for image in job["images"]:
        name = Path(image).stem
        queue[:] = list(noises[name])
        with torch.no_grad():
            res = s.inference(image, out, bs=1, noise_repeat=False, one_step=True,
                              return_tensor=True)  # fmt: skip
        if queue:
            raise SystemExit(f"{name}: {len(queue)} noise tensors were not used")
        results[name] = res[name].detach().float().cpu()

    # the shifted-window mask, straight from the official block
    from models.swin_transformer import SwinTransformerBlock

    masks = {}
    for res_, window, shift, h, w in job.get("masks", []):
        blk = SwinTransformerBlock(
            dim=32, input_resolution=[res_, res_], num_heads=2, window_size=window,
            shift_size=shift,
        )  # fmt: skip
        masks[f"{res_},{window},{shift},{h},{w}"] = blk.calculate_mask((h, w)).float()
    torch.save({"images": results, "masks": masks}, out / "official.pt")
    print(json.dumps({"images": sorted(results), "masks": len(masks)}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python sinsr_official_driver.py JOB.json")
    main(sys.argv[1])
