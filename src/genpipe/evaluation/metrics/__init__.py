"""Pure evaluation metrics over tensors: features -> statistics -> metric, no I/O, no caching.

Set metrics (FD, KID, PRDC) take feature matrices from the evaluator; classifier metrics take its
softmax outputs; image metrics are per image so that confidence intervals can be bootstrapped.
"""

from genpipe.evaluation.metrics._inputs import MetricInputError
from genpipe.evaluation.metrics.bootstrap import mean_ci
from genpipe.evaluation.metrics.classifier import (
    class_coverage,
    inception_score,
    recognition_rate,
)
from genpipe.evaluation.metrics.fidelity import (
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_inception_distance,
)
from genpipe.evaluation.metrics.image import psnr, ssim
from genpipe.evaluation.metrics.prdc import prdc

__all__ = [
    "MetricInputError",
    "class_coverage",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "inception_score",
    "kernel_inception_distance",
    "mean_ci",
    "prdc",
    "psnr",
    "recognition_rate",
    "ssim",
]
