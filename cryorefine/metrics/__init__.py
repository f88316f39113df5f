"""Offline realism metrics for sets of paired images (fake, raw and optionally the clean sim).

No metric downloads weights; nothing here is FID. See docs for what each number means.
"""

from cryorefine.metrics.classifier import ClassifierConfig, classifier_auc, classifier_auc_spread, roc_auc
from cryorefine.metrics.distribution import moments, paired_pixel_errors, pixel_wasserstein
from cryorefine.metrics.report import evaluate_sets, headline
from cryorefine.metrics.spectral import (
    fourier_ring_correlation,
    noise_power_spectrum,
    rpsd_metrics,
    soft_circular_mask,
)

__all__ = [
    "ClassifierConfig",
    "classifier_auc",
    "classifier_auc_spread",
    "evaluate_sets",
    "fourier_ring_correlation",
    "headline",
    "moments",
    "noise_power_spectrum",
    "paired_pixel_errors",
    "pixel_wasserstein",
    "roc_auc",
    "rpsd_metrics",
    "soft_circular_mask",
]
