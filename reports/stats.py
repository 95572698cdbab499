"""Statistics for the tables: bootstrap confidence intervals and the paired test.

- **Confidence interval of a mean** (over the images of a set): BCa bootstrap
  (``scipy.stats.bootstrap``), 95%, ``RESAMPLES`` resamples of the images, seeded per
  (dataset, method, metric) so a number never depends on which other methods are in the table.
  A set of identical values has the interval [v, v]; fewer than 2 images has none.
- **Paired test between the best method and another one**: the Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon``, two-sided) on the per-image differences, images paired by name.
  Why Wilcoxon rather than a paired bootstrap: Real-ISR sets are small (6 to 100 images) and
  per-image differences are heavy-tailed (one image can move PSNR by dB); the signed-rank test
  is distribution-free and exact for n <= 50 without ties (scipy's ``auto``; with ties or zeros
  in n <= 13 differences, the permutation test over all sign flips, vectorised here), where
  percentile bootstrap p-values are too optimistic. It tests where the differences are
  centred, not their mean, so a lead counts as significant only when p < alpha *and* the mean
  difference favours the best method.
- **A significant lead** of the best method means: significant against *every* other method.
  That is an intersection-union test, which keeps level alpha without a multiplicity
  correction, so the p-values are reported unadjusted.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95
RESAMPLES = 10_000
# scipy's ``wilcoxon`` (method "auto") answers ties or zeros in n <= 13 differences with the
# permutation test over all 2**n sign flips, but evaluates its statistic one flip at a time:
# about 2 s per pair, minutes for a table of small sets. ``paired_test`` runs it vectorised.
PERMUTATION_MAX_N = 13
CI_METHOD = f"BCa bootstrap over images, {RESAMPLES} resamples"
TEST_NAME = "Wilcoxon signed-rank, two-sided, paired by image"


def stream_seed(seed: int, *labels: str) -> int:
    """A seed for one (dataset, method, metric) stream, independent of the order of work."""
    digest = hashlib.sha256("/".join([str(seed), *labels]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def bootstrap_ci(values: np.ndarray, seed: int, level: float = LEVEL) -> tuple[float, float] | None:
    """``level`` confidence interval of the mean of ``values`` (1-D, finite), or None (n < 2)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2 or not np.isfinite(x).all():
        return None
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa on near-degenerate data: handled below
        res = stats.bootstrap(
            (x,), np.mean, confidence_level=level, n_resamples=RESAMPLES, method="BCa", rng=rng
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # BCa undefined (e.g. all but one equal)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (x,),
                np.mean,
                confidence_level=level,
                n_resamples=RESAMPLES,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi


def paired_test(best: np.ndarray, other: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``best - other`` (same images, same order).

    All-zero differences give p = 1 (no evidence of any difference)."""
    d = np.asarray(best, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    if d.shape[0] == 0 or not np.any(d):
        return 1.0
    nonzero = d != 0
    magnitudes = np.abs(d[nonzero])
    tied = np.unique(magnitudes).size < magnitudes.size or not nonzero.all()
    if tied and d.shape[0] <= PERMUTATION_MAX_N:
        return _signed_rank_permutation_p(d, nonzero)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes from scipy
        return float(stats.wilcoxon(d, alternative="two-sided").pvalue)


def _signed_rank_permutation_p(d: np.ndarray, nonzero: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic (sum of the ranks of |d| over positive d;
    zeros dropped, ties get average ranks) under every sign flip of the differences."""
    ranks = np.zeros_like(d)
    ranks[nonzero] = stats.rankdata(np.abs(d[nonzero]))  # a flip changes signs, not ranks

    def r_plus(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum((x > 0) * ranks, axis=axis)

    res = stats.permutation_test(
        (d,), r_plus, permutation_type="samples", vectorized=True, alternative="two-sided"
    )
    return float(res.pvalue)


def lead_is_significant(
    best: np.ndarray, other: np.ndarray, lower_better: bool, alpha: float = ALPHA
) -> tuple[bool, float]:
    """(significant, p): is ``best`` better than ``other`` beyond per-image noise?"""
    p = paired_test(best, other)
    diff = float(np.mean(np.asarray(best, np.float64) - np.asarray(other, np.float64)))
    favours = diff < 0 if lower_better else diff > 0
    return bool(p < alpha and favours), p
