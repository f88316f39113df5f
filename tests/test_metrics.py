"""Realism metrics on cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cryorefine.metrics.classifier import classifier_auc, roc_auc
from cryorefine.metrics.config import ClassifierConfig, MicrographScoreConfig
from cryorefine.metrics.distribution import moments, paired_pixel_errors, pixel_wasserstein
from cryorefine.metrics.micrographs import grid_tiles, score_set
from cryorefine.metrics.report import evaluate_sets, headline
from cryorefine.metrics.results import HeldOutReal, MalformedMetrics, MicrographMetrics
from cryorefine.metrics.spectral import fourier_ring_correlation, noise_power_spectrum, rpsd_metrics
from cryorefine.physics.imaging import soft_circular_mask


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _noise(n: int, box: int, seed: int) -> torch.Tensor:
    return torch.randn(n, box, box, generator=torch.Generator().manual_seed(seed))


def _low_pass(images: torch.Tensor) -> torch.Tensor:
    """Same variance, power moved to low frequencies: a different noise colour."""
    f = torch.fft.fftfreq(images.shape[-1])
    envelope = torch.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / 0.1**2)
    out = torch.fft.ifft2(torch.fft.fft2(images) * envelope).real
    return out / out.std() * images.std()


def test_identical_sets_have_zero_rpsd_and_pixel_distances():
    images = _noise(16, 32, 0)
    mask = soft_circular_mask(32, 8, edge_px=4)
    assert all(v == 0 for v in rpsd_metrics(images, images.clone(), mask).values())
    assert paired_pixel_errors(images, images.clone()) == {"l1": 0.0, "mse": 0.0}
    assert pixel_wasserstein(images, images.clone()) == 0.0


def test_rpsd_inside_and_outside_mask_localise_a_difference():
    raw = _noise(32, 32, 1)
    mask = soft_circular_mask(32, 6, edge_px=4)
    fake = raw * (1 - mask) + _low_pass(_noise(32, 32, 2)) * mask  # only the inside differs
    result = rpsd_metrics(fake, raw, mask)
    assert result["inside_l1"] > 10 * result["outside_l1"]
    assert result["l1"] > 0


def test_soft_mask_is_one_inside_zero_outside_and_smooth():
    mask = soft_circular_mask(64, 18, edge_px=4)
    assert mask[32, 32] == 1 and mask[0, 0] == 0
    assert mask[32, 32 + 17] == 1 and mask[32, 32 + 23] == 0
    assert 0 < mask[32, 32 + 20] < 1


def test_wasserstein_of_shifted_gaussians_is_the_shift():
    images = _noise(8, 32, 3)
    assert pixel_wasserstein(images + 0.7, images) == pytest.approx(0.7, abs=1e-5)


def test_moments_of_known_distributions():
    gaussian = moments(_noise(64, 32, 4) * 2 + 1)
    assert gaussian["mean"] == pytest.approx(1, abs=0.02)
    assert gaussian["std"] == pytest.approx(2, rel=0.01)
    assert abs(gaussian["skewness"]) < 0.03 and abs(gaussian["excess_kurtosis"]) < 0.06
    exponential = moments(torch.from_numpy(np.random.default_rng(0).exponential(size=(64, 32, 32))))
    assert exponential["skewness"] == pytest.approx(2, rel=0.1)
    assert exponential["excess_kurtosis"] == pytest.approx(6, rel=0.25)


def test_frc_of_a_set_with_itself_is_one_and_with_independent_noise_near_zero():
    images = _noise(16, 32, 5)
    np.testing.assert_allclose(fourier_ring_correlation(images, images).numpy(), 1.0, atol=1e-9)
    assert fourier_ring_correlation(images, _noise(16, 32, 6)).abs().mean() < 0.08


def test_frc_drops_as_noise_is_added():
    signal = _noise(16, 32, 7)  # white: FRC = 1/√(1 + σ²) in every ring for noise σ
    weak = fourier_ring_correlation(signal + 0.1 * _noise(16, 32, 8), signal)
    strong = fourier_ring_correlation(signal + 2.0 * _noise(16, 32, 8), signal)
    assert float(weak[1:].min()) > 0.97
    assert float(strong[1:].mean()) == pytest.approx(1 / 5**0.5, abs=0.05)


def test_noise_power_of_white_noise_is_its_variance_in_every_ring():
    power = noise_power_spectrum(_noise(64, 32, 9) * 1.5)
    np.testing.assert_allclose(power.numpy()[1:], 2.25, rtol=0.15)


def test_roc_auc_rank_formula():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    assert roc_auc(np.array([0.1, 0.6, 0.4, 0.9]), np.array([0, 0, 1, 1])) == 0.75


def test_classifier_cannot_tell_two_sets_of_the_same_noise_apart():
    result = classifier_auc(_noise(200, 32, 10), _noise(200, 32, 11), seed=0)
    assert abs(result["auc"] - 0.5) < 0.12
    assert result["n_test"] == 200 and result["n_train"] == 200


def test_classifier_tells_different_noise_apart_deterministically():
    fake, raw = _low_pass(_noise(200, 32, 12)), _noise(200, 32, 13)
    config = ClassifierConfig(steps=150)
    first = classifier_auc(fake, raw, seed=1, config=config)
    assert first["auc"] > 0.95
    assert classifier_auc(fake, raw, seed=1, config=config) == first


def test_evaluate_sets_with_and_without_sim():
    sim = _low_pass(_noise(24, 32, 14))
    raw = sim + _noise(24, 32, 15)
    fake = sim + _noise(24, 32, 16)
    config = ClassifierConfig(steps=20)
    with_sim = evaluate_sets(fake, raw, sim, seed=0, classifier=config)
    assert with_sim.n_images == 24 and with_sim.box == 32
    assert with_sim.rpsd.l1 < 0.05
    assert with_sim.frc.mean_abs_difference < 0.1
    assert len(with_sim.frc.fake_vs_sim) == len(with_sim.curves.frequency) == 16
    assert with_sim.noise_power.log_l1 < 0.2
    assert all(v is not None for v in headline(with_sim).values())

    without = evaluate_sets(fake.numpy(), raw.numpy(), seed=0, classifier=config)
    assert without.frc is None and without.noise_power is None
    assert headline(without)["frc_mean_abs_difference"] is None
    assert without.rpsd == with_sim.rpsd
    with pytest.raises(ValueError, match="paired"):
        evaluate_sets(fake[:10], raw, classifier=config)


def test_a_classifier_test_on_a_handful_of_images_is_warned_about(caplog):
    from cryorefine.metrics.classifier import classifier_auc_spread
    from cryorefine.metrics.config import ClassifierConfig, MicrographScoreConfig

    generator = torch.Generator().manual_seed(0)
    fake, raw = torch.randn(12, 16, 16, generator=generator), torch.randn(12, 16, 16, generator=generator)
    with caplog.at_level("WARNING"):
        classifier_auc_spread(fake, raw, config=ClassifierConfig(steps=2, repeats=1))
    assert any("too few" in record.getMessage() for record in caplog.records)


def test_micrograph_scores_round_trip_through_their_json_layout():
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((64, 64)) for _ in range(2)]
    real_tiles = grid_tiles([rng.standard_normal((64, 64))], 16)
    config = MicrographScoreConfig(tile=16, classifier_steps=2, classifier_repeats=1)
    with_masks = score_set(images, real_tiles, config, [2 * image for image in images], [np.ones((64, 64))] * 2)
    without = score_set(images, real_tiles, config)
    assert with_masks.mask_preservation == pytest.approx(1) and without.mask_preservation is None
    real = HeldOutReal(files=["real.mrc"], holdout=0.25, tiles=len(real_tiles), noise_power=[1.0, 2.0])
    layout = json.loads(json.dumps(MicrographMetrics({"masked": with_masks, "plain": without}, real).to_dict()))
    assert set(layout) == {"masked", "plain", "real"} and "mask_preservation" not in layout["plain"]
    assert MicrographMetrics.from_dict(layout).to_dict() == layout
    del layout["plain"]["tiles_per_class"]
    with pytest.raises(MalformedMetrics, match="missing field 'plain.tiles_per_class'"):
        MicrographMetrics.from_dict(layout)
