"""Golden values of every learned paper metric on fabricated weights (harness/weights/fabricate.py,
seeded): the same files, the same image, the same numbers. Random weights make the values
meaningless as quality, but any change of pyiqa id, options, checkpoint mapping, input range or
colour order moves them far beyond the tolerance (float noise across CPUs is ~1e-6 relative).

Pinned from this code on a CPU (torch 2.14.1, pyiqa of constraints.txt). A change that alters
them on purpose (another fabrication seed, a pyiqa upgrade) re-pins them in the same commit.
"""

import numpy as np
import pytest
from skimage import data

from harness.imageio import to_tensor
from harness.metrics import MetricSuite

pytestmark = pytest.mark.slow  # ~1.4 GB of fabricated weights and six metric networks on a CPU

GOLDEN_FR = {"lpips": 0.008882751688361168, "dists": 0.0012531280517578125}
GOLDEN_NR = {
    "niqe": 8.513146943803976,
    "musiq": 0.06791800260543823,
    "clipiqa": 0.4868203103542328,
    "maniqa-pipal": 0.06248343363404274,
}


def _img(noise: float, size: int = 224):
    hr = data.astronaut()[:size, 128 : 128 + size]
    rng = np.random.default_rng(0)
    return to_tensor(np.clip(hr + rng.normal(0, noise, hr.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(("golden", "reference"), [(GOLDEN_FR, True), (GOLDEN_NR, False)])
def test_learned_metrics_give_their_pinned_values(fabricated_weights, golden, reference):
    """Mutation caught: images fed to the metrics as BGR instead of RGB."""
    suite = MetricSuite(list(golden))
    assert suite.unavailable == {}
    [score] = suite.score(_img(5), _img(0) if reference else None)
    for name, value in golden.items():
        assert score.values[name] == pytest.approx(value, rel=1e-3), name
