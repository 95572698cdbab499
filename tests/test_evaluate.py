"""The metric stage: threads change nothing but speed; results come back in input order."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from harness.errors import HarnessError
from harness.evaluate import Item, score_items
from harness.metrics import MetricSuite


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Nine SR/HR pairs of three sizes, interleaved so batches must split by size."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    photo = data.astronaut()
    items = []
    for i in range(9):
        h, w = [(40, 56), (64, 48), (33, 71)][i % 3]
        hr = photo[i * 20 : i * 20 + h, i * 15 : i * 15 + w]
        sr = np.clip(hr + rng.normal(0, 2 + 3 * i, hr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(hr).save(root / f"hr{i}.png")
        Image.fromarray(sr).save(root / f"sr{i}.png")
        items.append(Item(f"img{i}", root / f"sr{i}.png", root / f"hr{i}.png"))
    return items


def _scores(suite, items, **kw):
    seen = []
    score_items(suite, items, lambda item, s: seen.append((item.image, s.values)), **kw)
    return seen


@pytest.mark.parametrize("batch_size", [1, 2])
def test_threads_give_the_same_values_in_the_same_order(pairs, batch_size):
    suite = MetricSuite(["psnr", "ssim"])
    one = _scores(suite, pairs, batch_size=batch_size, workers=1)
    many = _scores(suite, pairs, batch_size=batch_size, workers=3)
    assert [name for name, _ in one] == [f"img{i}" for i in range(9)]
    assert many == one


def test_a_size_mismatch_in_a_worker_is_a_one_line_error(pairs, tmp_path):
    Image.fromarray(data.astronaut()[:30, :30]).save(tmp_path / "small.png")
    bad = list(pairs[:4]) + [Item("bad", tmp_path / "small.png", pairs[0].hr)]
    with pytest.raises(HarnessError, match="differs from HR"):
        _scores(MetricSuite(["psnr"]), bad, workers=2)


def test_results_are_handed_back_in_input_order_even_when_later_images_finish_first(pairs):
    import time

    import torch

    from harness.metrics import Score

    class SlowFirst:  # the first images take longest: completion order is the reverse
        device = torch.device("cpu")
        runs_networks = False

        def score(self, sr, hr):
            time.sleep(0.02 * (10 - calls.pop(0)))
            return [Score({"x": float(sr.tensor().mean())}, {}) for _ in range(len(sr))]

    calls = list(range(9))
    seen = _scores(SlowFirst(), pairs, workers=3)
    assert [name for name, _ in seen] == [f"img{i}" for i in range(9)]


@pytest.mark.parametrize("networks", [True, False])
def test_each_worker_gets_its_share_of_the_cores(pairs, networks):
    """Two workers on a CPU: each scoring call sees BLAS and (with network metrics) torch at
    cores // 2 threads, not all cores each; PSNR/SSIM-only suites keep torch's default (PSNR's
    float32 mean follows it, as pyiqa's does). Everything is restored afterwards."""
    import torch
    from threadpoolctl import threadpool_info

    from harness.evaluate import _cores
    from harness.metrics import Score

    seen = []

    class Recording:
        device = torch.device("cpu")
        runs_networks = networks

        def score(self, sr, hr):
            blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            seen.append((torch.get_num_threads(), blas))
            return [Score({"x": 0.0}, {}) for _ in range(len(sr))]

    torch_before = torch.get_num_threads()
    blas_before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    share = max(1, _cores() // 2)
    _scores(Recording(), pairs, workers=2)
    want_torch = min(share, torch_before) if networks else torch_before
    assert seen and all(t == want_torch and set(b) == {share} for t, b in seen)
    assert torch.get_num_threads() == torch_before
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas_before
