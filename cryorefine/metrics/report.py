"""All realism metrics of one method on one data set, as one typed result (`ParticleMetrics`).

`evaluate_sets` is what `cryorefine evaluate`, the demo and the docs table call, so every
method (GAN, its ablations, the noise baselines) is scored by the same code on the same pairs.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cryorefine.metrics.classifier import classifier_auc_spread
from cryorefine.metrics.config import ClassifierConfig
from cryorefine.metrics.distribution import moments, paired_pixel_errors, pixel_wasserstein
from cryorefine.metrics.results import (FrcComparison, Moments, NoisePowerComparison, ParticleMetrics, PixelErrors,
                                        RpsdCurves, RpsdScores, SetMoments)
from cryorefine.metrics.spectral import (
    fourier_ring_correlation,
    mean_rpsd,
    noise_power_spectrum,
    ring_radii,
    rpsd_metrics,
)
from cryorefine.physics.imaging import soft_circular_mask

log = logging.getLogger(__name__)

# Particle mask diameter when none is given: a typical particle fills about 60% of its box.
DEFAULT_MASK_FRACTION = 0.6
# Width of that mask's cosine fall-off in pixels, centred on its diameter.
MASK_EDGE_PX = 4.0


def _as_tensor(images) -> torch.Tensor:
    tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    return tensor.detach().cpu().float()


def evaluate_sets(fake, raw, sim=None, *, mask_diameter_px: float | None = None, seed: int = 0,
                  classifier: ClassifierConfig | None = None) -> ParticleMetrics:
    """Score fake images against paired raw ones (and the clean sims they share, when given).

    All inputs are (N, H, W) arrays or tensors, row i of each being the same particle, already
    on a common intensity scale. Metrics that need the clean sim are None without it. Inside /
    outside RPSDs use a soft circular mask of `mask_diameter_px` (default 60% of the box).
    """
    fake, raw = _as_tensor(fake), _as_tensor(raw)
    sim = None if sim is None else _as_tensor(sim)
    if fake.dim() != 3 or fake.shape != raw.shape or (sim is not None and sim.shape != raw.shape):
        shapes = [tuple(x.shape) for x in (fake, raw, sim) if x is not None]
        raise ValueError(f"fake, raw (and sim) must be paired (N, H, W) sets of one shape, got {shapes}")
    n, box = fake.shape[0], fake.shape[-1]
    diameter = mask_diameter_px if mask_diameter_px is not None else DEFAULT_MASK_FRACTION * box
    mask = soft_circular_mask(box, diameter / 2 - MASK_EDGE_PX / 2, MASK_EDGE_PX, dtype=torch.float64).float()

    log.info("scoring %d image pairs of %d px", n, box)
    frc = noise_power = None
    if sim is not None:
        frc_fake = fourier_ring_correlation(fake, sim)
        frc_raw = fourier_ring_correlation(raw, sim)
        frc = FrcComparison(fake_vs_sim=frc_fake.tolist(), raw_vs_sim=frc_raw.tolist(),
                            mean_abs_difference=float((frc_fake - frc_raw).abs().mean()))
        nps_fake = noise_power_spectrum(fake - sim)[:-1]  # drop the corner bin beyond Nyquist
        nps_raw = noise_power_spectrum(raw - sim)[:-1]
        tiny = 1e-12
        noise_power = NoisePowerComparison(
            fake_minus_sim=nps_fake.tolist(), raw_minus_sim=nps_raw.tolist(),
            log_l1=float((nps_fake.clamp_min(tiny).log() - nps_raw.clamp_min(tiny).log()).abs().mean()))
    return ParticleMetrics(
        n_images=n,
        box=box,
        seed=seed,
        mask_diameter_px=float(diameter),
        rpsd=RpsdScores(**rpsd_metrics(fake, raw, mask)),
        pixel=PixelErrors(**paired_pixel_errors(fake, raw), wasserstein1=pixel_wasserstein(fake, raw)),
        moments=SetMoments(fake=Moments(**moments(fake)), raw=Moments(**moments(raw))),
        classifier=classifier_auc_spread(fake, raw, seed=seed, config=classifier),
        frc=frc,
        noise_power=noise_power,
        curves=RpsdCurves(
            frequency=ring_radii(box).tolist(),
            rpsd_fake=mean_rpsd(fake).tolist(),
            rpsd_raw=mean_rpsd(raw).tolist(),
            rpsd_sim=None if sim is None else mean_rpsd(sim).tolist(),
        ),
    )


def headline(metrics: ParticleMetrics) -> dict[str, float | None]:
    """The one-number summaries of `evaluate_sets` output, flat, for tables."""
    frc, nps = metrics.frc, metrics.noise_power
    return {
        "rpsd_l1": metrics.rpsd.l1,
        "rpsd_mse": metrics.rpsd.mse,
        "rpsd_inside_l1": metrics.rpsd.inside_l1,
        "rpsd_outside_l1": metrics.rpsd.outside_l1,
        "pixel_l1": metrics.pixel.l1,
        "pixel_mse": metrics.pixel.mse,
        "pixel_w1": metrics.pixel.wasserstein1,
        "skewness": metrics.moments.fake.skewness,
        "excess_kurtosis": metrics.moments.fake.excess_kurtosis,
        "frc_mean_abs_difference": None if frc is None else frc.mean_abs_difference,
        "noise_power_log_l1": None if nps is None else nps.log_l1,
        "classifier_auc": metrics.classifier.auc,
        "classifier_auc_std": metrics.classifier.auc_std,
    }
