"""S3Diff: networks (``arch``), tiling (``tiling``), official files (``convert``), the method."""

from harness.methods.s3diff.adapter import S3Diff
from harness.methods.s3diff.arch import S3DiffConfig, S3DiffNet

__all__ = ["S3Diff", "S3DiffConfig", "S3DiffNet"]
