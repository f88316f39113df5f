"""GAN, L1 and RPSD losses: known values, and the RPSD gradient reaching the generator."""

from __future__ import annotations

import pytest
import torch

from cryorefine import spectra
from cryorefine.gan import losses
from cryorefine.gan.config import LossConfig, ModelConfig
from cryorefine.gan.models import Generator


def test_lsgan_and_hinge_known_values():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert losses.discriminator_loss("lsgan", ones, zeros) == 0
    assert losses.discriminator_loss("lsgan", zeros, ones) == pytest.approx(1.0)
    assert losses.generator_adversarial_loss("lsgan", ones) == 0
    assert losses.generator_adversarial_loss("lsgan", zeros) == pytest.approx(0.5)
    assert losses.discriminator_loss("hinge", ones, -ones) == 0
    assert losses.discriminator_loss("hinge", zeros, zeros) == pytest.approx(2.0)
    assert losses.generator_adversarial_loss("hinge", 3 * ones) == pytest.approx(-3.0)
    with pytest.raises(ValueError):
        losses.discriminator_loss("wgan", ones, zeros)


def test_rpsd_l1_is_the_spectra_distance():
    torch.manual_seed(0)
    a, b = torch.randn(8, 32, 32), 2 * torch.randn(8, 32, 32)
    assert losses.rpsd_l1(a, a) == 0
    assert losses.rpsd_l1(a, b) == spectra.rpsd_distance(a, b)[0]
    assert losses.rpsd_l1(a, b) > 0.3  # a factor 2 in amplitude is a clear gap in log power


def test_rpsd_gradient_reaches_every_generator_parameter():
    torch.manual_seed(0)
    generator = Generator(ModelConfig(base_channels=8, depth=2))
    sim, raw = torch.randn(4, 1, 32, 32), 3 * torch.randn(4, 1, 32, 32)
    loss = losses.rpsd_l1(generator(sim, torch.Generator().manual_seed(0)), raw)
    loss.backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_generator_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    config = LossConfig(lambda_gan=2.0, lambda_l1=3.0, lambda_rpsd=4.0, lambda_histogram=5.0)
    fake, raw, scores = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16), torch.randn(4, 1, 2, 2)
    result = losses.generator_loss(config, scores, fake, raw)
    assert result.l1 == pytest.approx(float((fake - raw).abs().mean()))
    expected = 2 * result.gan + 3 * result.l1 + 4 * result.rpsd + 5 * result.histogram
    assert result.total == pytest.approx(float(expected))


def test_histogram_w1_compares_value_distributions_not_positions():
    torch.manual_seed(0)
    raw = torch.randn(4, 1, 16, 16)
    shuffled = raw.flatten()[torch.randperm(raw.numel())].reshape(raw.shape)
    assert losses.histogram_w1(shuffled, raw) == 0  # same values anywhere: same distribution
    assert losses.histogram_w1(raw + 0.25, raw) == pytest.approx(0.25)
    skewed = torch.distributions.Exponential(1.0).sample(raw.shape) - 1
    skewed = skewed / skewed.std()
    assert losses.histogram_w1(skewed, raw) > 0.05  # same variance, different shape
