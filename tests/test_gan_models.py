"""Generator and discriminator: shapes, dtypes, odd boxes, seeded noise, no transposed convolutions."""

from __future__ import annotations

import pytest
import torch

from cryorefine.gan.config import ModelConfig
from cryorefine.gan.models import Generator, PatchDiscriminator

SMALL = ModelConfig(base_channels=8, depth=2, discriminator_channels=8, discriminator_layers=2)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("box", [32, 30, 17])
def test_generator_keeps_shape_and_dtype_for_any_box(box):
    torch.manual_seed(0)
    sim = torch.randn(3, 1, box, box)
    fake = Generator(SMALL)(sim, _seeded(1))
    assert fake.shape == sim.shape
    assert fake.dtype == torch.float32
    assert torch.isfinite(fake).all()


def test_same_seed_same_output_other_seed_other_noise():
    torch.manual_seed(0)
    generator = Generator(SMALL)
    sim = torch.randn(2, 1, 32, 32)
    a, b, c = (generator(sim, _seeded(s)) for s in (5, 5, 6))
    assert torch.equal(a, b)
    # Untrained, the injected noise already makes two draws for one sim differ everywhere.
    assert (a - c).abs().mean() > 1e-3
    assert ((a - c).abs() > 0).float().mean() > 0.99


def test_output_is_sim_plus_residual():
    """With the residual head zeroed the generator returns the sim itself (realism is an additive change)."""
    generator = Generator(SMALL)
    torch.nn.init.zeros_(generator.head.weight)
    torch.nn.init.zeros_(generator.head.bias)
    sim = torch.randn(2, 1, 32, 32)
    assert torch.equal(generator(sim, _seeded(0)), sim)


def test_no_transposed_convolutions():
    modules = list(Generator(ModelConfig()).modules())
    assert not any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose1d)) for m in modules)


def test_discriminator_scores_patches_of_the_pair():
    discriminator = PatchDiscriminator(ModelConfig())
    sim, image = torch.randn(4, 1, 64, 64), torch.randn(4, 1, 64, 64)
    scores = discriminator(sim, image)
    assert scores.shape == (4, 1, 8, 8)
    # Conditional: the same image scored against another sim gets other scores.
    assert not torch.allclose(scores, discriminator(torch.randn(4, 1, 64, 64), image))


def _coloured_pairs(n: int = 2048, box: int = 32):
    """sim + coloured noise with per-particle levels (log-normal σ 0.2), and the baselines fitted on it."""
    from cryorefine.noise import fit_noise_models

    generator = _seeded(20)
    f = torch.fft.fftfreq(box)
    envelope = 0.3 + torch.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / 0.12**2))
    noise = torch.fft.ifft2(torch.fft.fft2(torch.randn(n, box, box, generator=generator)) * envelope).real
    noise = noise / noise.std() * torch.exp(0.2 * torch.randn(n, 1, 1, generator=generator))
    sim = 0.3 * torch.randn(n, box, box, generator=generator)
    return sim, fit_noise_models(sim + noise + 0.1, sim)


def test_physics_prior_generator_at_initialisation_is_the_coloured_baseline():
    """Before training, G(sim) − sim has the coloured baseline's measured noise power, ring by ring."""
    from cryorefine.gan.models import PhysicsPriorGenerator, build_generator
    from cryorefine.metrics.spectral import noise_power_spectrum

    box, scale = 32, 2.0
    sim, models = _coloured_pairs(box=box)
    generator = build_generator(ModelConfig(base_channels=8, depth=2), box)
    assert isinstance(generator, PhysicsPriorGenerator)
    generator.prior.fit(models["coloured"], scale)  # images normalised as x / 2
    with torch.no_grad():
        fake = torch.cat([generator(sim[i : i + 256, None] / scale, _seeded(30 + i))[:, 0] for i in range(0, len(sim), 256)])
    noise = (fake - sim / scale) * scale
    baseline = models["coloured"].sample(sim, _seeded(40)) - sim
    ours, theirs = noise_power_spectrum(noise)[:-1], noise_power_spectrum(baseline)[:-1]
    fitted = torch.tensor(models["coloured"].noise_power[:-1], dtype=torch.float64)
    assert float((ours / fitted - 1).abs().mean()) < 0.03  # the measured spectrum, within a few %
    assert float((ours / theirs - 1).abs().mean()) < 0.04
    assert float(noise.mean()) == pytest.approx(0.1, abs=0.02)  # the measured offset
    # The per-particle noise levels come along: image variances spread like the baseline's.
    spread = lambda x: float(x.flatten(1).var(1).sqrt().std())  # noqa: E731
    assert spread(noise) == pytest.approx(spread(baseline), rel=0.15)


def test_white_prior_is_the_plain_generator_and_unknown_priors_are_refused():
    from cryorefine.gan.models import PhysicsPriorGenerator, build_generator

    assert type(build_generator(ModelConfig(noise_prior="white"), 32)) is Generator
    with pytest.raises(ValueError, match="unknown noise prior"):
        build_generator(ModelConfig(noise_prior="pink"), 32)
    # Models saved before the prior existed load as white-prior generators.
    from pathlib import Path

    from cryorefine.gan.checkpoint import ModelSettings
    from cryorefine.gan.config import CONFIG_VERSION, LossConfig, TrainConfig, to_dict
    old = {"format": "cryorefine-gan", "config_version": CONFIG_VERSION, "box": 32,
           "model": {k: v for k, v in to_dict(ModelConfig()).items() if k != "noise_prior"},
           "loss": to_dict(LossConfig()), "train": to_dict(TrainConfig()), "normalisation": {"mean": 0.0, "std": 1.0}}
    assert ModelSettings.from_dict(old, Path("config.json")).model.noise_prior == "white"
    assert not isinstance(build_generator(ModelSettings.from_dict(old, Path("c")).model, 32), PhysicsPriorGenerator)
