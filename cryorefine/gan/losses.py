"""The objective: λ_GAN·L_GAN + λ1·‖G(x) − y‖₁ + λ_RPSD·‖s(G(x)) − s(y)‖₁ + λ_hist·W1(G(x), y).

s is `cryorefine.spectra.radial_log_power` (the project's one RPSD), compared between the
batch means of fake and raw so the term scores the noise spectrum, not one noise draw.
W1 is the Wasserstein-1 distance between the batch's pixel-value distributions (mean gap of
the sorted values): a matched spectrum with the wrong skew or kurtosis is still told apart
from raw by a classifier (AUC 1.0 measured here), and the GAN term alone corrects that slowly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cryorefine import spectra
from cryorefine.gan.config import GAN_MODES, LossConfig


def discriminator_loss(mode: str, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    if mode == "lsgan":
        return 0.5 * (((real_scores - 1) ** 2).mean() + (fake_scores**2).mean())
    if mode == "hinge":
        return torch.relu(1 - real_scores).mean() + torch.relu(1 + fake_scores).mean()
    raise ValueError(f"unknown GAN mode {mode!r} (choose from {GAN_MODES})")


def generator_adversarial_loss(mode: str, fake_scores: torch.Tensor) -> torch.Tensor:
    fake_scores = fake_scores.float()
    if mode == "lsgan":
        return 0.5 * ((fake_scores - 1) ** 2).mean()
    if mode == "hinge":
        return -fake_scores.mean()
    raise ValueError(f"unknown GAN mode {mode!r} (choose from {GAN_MODES})")


def rpsd_l1(fake: torch.Tensor, raw: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """Differentiable RPSD L1 between two image batches (..., H, W)."""
    return spectra.rpsd_distance(fake, raw, n_bins)[0]


def histogram_w1(fake: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Wasserstein-1 distance between the pixel-value distributions of two equal-sized batches."""
    return (torch.sort(fake.float().flatten())[0] - torch.sort(raw.float().flatten())[0]).abs().mean()


@dataclass
class GeneratorLoss:
    total: torch.Tensor
    gan: torch.Tensor
    l1: torch.Tensor
    rpsd: torch.Tensor
    histogram: torch.Tensor


def generator_loss(config: LossConfig, fake_scores: torch.Tensor, fake: torch.Tensor, raw: torch.Tensor) -> GeneratorLoss:
    gan = generator_adversarial_loss(config.gan_mode, fake_scores)
    l1 = (fake.float() - raw.float()).abs().mean()
    rpsd = rpsd_l1(fake, raw, config.rpsd_bins)
    histogram = histogram_w1(fake, raw)
    total = config.lambda_gan * gan + config.lambda_l1 * l1 + config.lambda_rpsd * rpsd + config.lambda_histogram * histogram
    return GeneratorLoss(total=total, gan=gan, l1=l1, rpsd=rpsd, histogram=histogram)
