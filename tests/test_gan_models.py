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
