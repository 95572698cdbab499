"""Metrics: the declarative table (``specs``) and the suite that computes them (``suite``)."""

from harness.metrics.specs import METRICS, MetricSpec
from harness.metrics.suite import MetricSuite, Score

__all__ = ["METRICS", "MetricSpec", "MetricSuite", "Score"]
