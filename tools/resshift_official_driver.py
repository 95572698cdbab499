"""Runs the official ResShift sampler from a checkout, for ``tools/equivalence_resshift.py``.

Executed by the *official* environment's Python (``python resshift_official_driver.py
JOB.json``), never imported by the harness. It builds ``sampler.ResShiftSampler`` from the
checkout's config for the release, as ``inference_resshift.py --task realsr`` does, and calls
its ``inference()`` on one image file at a time, with these run-time patches
(the first two from ``official_env.py``) and nothing else:

* without a GPU: ``Module.cuda`` / ``Tensor.cuda`` return the object itself, ``torch.load`` maps
  to the CPU, and ``BaseSampler.setup_dist`` sets one process;
* ``torchvision.transforms.functional_tensor`` (removed from torchvision, imported by the
  checkout's basicsr training-data code) is aliased to its successor module;
* the noise: ``torch.randn_like`` (the only source of the chain's noise: the prior and every
  step) returns, in order, the tensors the harness drew for that tile. The official loop also
  draws noise at t = 0 and multiplies it by zero; the harness draws none there, so the driver
  serves zeros for that call. The queue must come out empty;
* the float output is recorded where ``inference()`` hands it to ``util_image.tensor2img``.

The job file names the checkout, the release, the weight files, the images, the noise file,
the chop settings and the output folder; results go to ``<out>/official.pt`` and PNGs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CONFIGS = {
    "v1": "realsr_swinunet_realesrgan256.yaml",
    "v2": "realsr_swinunet_realesrgan256.yaml",
    "v3": "realsr_swinunet_realesrgan256_journal.yaml",
}


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    checkout = Path(job["checkout"]).resolve()
    sys.path.insert(0, str(checkout))

    import official_env
    import torch

    official_env.alias_functional_tensor()
    official_env.cpu()

    import sampler as official
    from omegaconf import OmegaConf

    official_env.one_process(official)

    configs = OmegaConf.load(checkout / "configs" / CONFIGS[job["release"]])
    official_env.configure(configs, job)
    configs.diffusion.params.sf = 4

    s = official.ResShiftSampler(
        configs,
        sf=4,
        chop_size=int(job["chop_size"]),
        chop_stride=int(job["chop_stride"]),
        chop_bs=1,
        use_amp=False,  # CUDA autocast; the harness's fp32 reference is compared
        seed=12345,
        # official: lq_size (64); tiny widths shrink lq_size, the padding stays the harness's 64
        padding_offset=int(job.get("padding_offset", configs.model.params.get("lq_size", 64))),
    )

    queue: list = []
    served = {"zeros": 0}
    real_randn_like = torch.randn_like

    def randn_like(x, *a, **k):
        if not queue:
            raise SystemExit(f"randn_like({tuple(x.shape)}): the harness's noise ran out")
        noise = queue.pop(0)
        if noise is None:
            served["zeros"] += 1
            return torch.zeros_like(x)
        if tuple(noise.shape) != tuple(x.shape):
            raise SystemExit(f"noise {tuple(noise.shape)} for a draw of {tuple(x.shape)}")
        return noise.to(x.device, x.dtype)

    torch.randn_like = randn_like
    outputs: list = []
    to_img = official.util_image.tensor2img

    def record(tensor, *a, **k):
        outputs.append(tensor.detach().float().cpu().clone())
        return to_img(tensor, *a, **k)

    official.util_image.tensor2img = record

    noises = torch.load(job["noise"], weights_only=True)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for image in job["images"]:
        name = Path(image).stem
        queue.clear()
        for tile in noises[name]:  # (1, steps, C, h, w) per tile
            queue.extend(tile[:, j] for j in range(tile.shape[1]))
            queue.append(None)  # the t = 0 draw
        outputs.clear()
        with torch.no_grad():
            s.inference(image, out, bs=1, noise_repeat=False)
        if queue:
            raise SystemExit(f"{name}: {len(queue)} noise tensors were not used")
        (results[name],) = outputs
    torch.randn_like = real_randn_like
    torch.save({"images": results, "zero_draws": served["zeros"]}, out / "official.pt")
    print(json.dumps({"images": sorted(results), "zero_draws": served["zeros"]}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python resshift_official_driver.py JOB.json")
    main(sys.argv[1])
