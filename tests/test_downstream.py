"""The downstream denoising score: a denoiser trained on each set, tested on held-out "real" data."""

from __future__ import annotations

import pytest
import torch

from cryorefine.metrics.config import DenoiserConfig
from cryorefine.metrics.downstream import downstream_scores, score_denoiser, train_denoiser

BOX = 32


def _signal(n: int, seed: int) -> torch.Tensor:
    """Smooth blobs (the 'particles'), std 0.5."""
    f = torch.fft.fftfreq(BOX)
    low_pass = torch.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.1**2))
    white = torch.randn(n, BOX, BOX, generator=torch.Generator().manual_seed(seed))
    images = torch.fft.ifft2(torch.fft.fft2(white) * low_pass).real
    return images / images.std() * 0.5


def _real_noise(n: int, seed: int) -> torch.Tensor:
    """Noise with most of its power at low frequency, where the signal is: unlike white noise."""
    f = torch.fft.fftfreq(BOX)
    envelope = 0.2 + 2 * torch.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.06**2))
    white = torch.randn(n, BOX, BOX, generator=torch.Generator().manual_seed(seed))
    noise = torch.fft.ifft2(torch.fft.fft2(white) * envelope).real
    return noise / noise.std()


@pytest.fixture(scope="module")
def scores():
    """'Real' data is signal + low-frequency noise; the matched set has that noise, the floor white noise."""
    torch.set_num_threads(1)
    clean, test_clean = _signal(600, 0), _signal(200, 1)
    white = torch.randn(600, BOX, BOX, generator=torch.Generator().manual_seed(2))
    training = {"oracle": (clean + _real_noise(600, 3), clean), "matched": (clean + _real_noise(600, 4), clean),
                "white": (clean + white, clean)}
    tests = {"held-out": (test_clean + _real_noise(200, 5), test_clean)}
    return downstream_scores(training, tests, oracle="oracle", floor="white", config=DenoiserConfig(steps=200, repeats=1))


def test_noise_matched_training_set_ranks_above_white_noise(scores):
    held_out = scores["held-out"]
    print({name: round(score.correlation, 4) for name, score in held_out.items()})
    assert held_out["matched"].correlation > held_out["white"].correlation + 0.05
    assert held_out["matched"].gap_closed > 0.7
    assert held_out["white"].gap_closed == 0 and held_out["oracle"].gap_closed == 1
    assert held_out["matched"].frc_mean > held_out["white"].frc_mean


def test_score_is_a_correlation_with_the_paired_sims():
    clean = _signal(50, 6)
    identity = torch.nn.Identity()
    perfect = score_denoiser(identity, clean * 3 + 1, clean)
    assert perfect.correlation == pytest.approx(1.0, abs=1e-6) and perfect.n_images == 50
    shuffled = score_denoiser(identity, clean.flip(0), clean)
    assert abs(shuffled.correlation) < 0.2


def test_the_recipe_is_deterministic_and_refuses_unpaired_sets():
    clean = _signal(20, 7)
    noisy = clean + _real_noise(20, 8)
    config = DenoiserConfig(steps=5, repeats=1)
    a, b = train_denoiser(noisy, clean, config), train_denoiser(noisy, clean, config)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="paired"):
        train_denoiser(noisy, clean[:10], config)
    with pytest.raises(ValueError, match="reference set"):
        downstream_scores({"a": (noisy, clean)}, {"t": (noisy, clean)}, oracle="missing", floor="a", config=config)
