"""The diffusion translator's parts, the micrograph baselines and the micrograph metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from conftest import REAL_MICROGRAPH, run_cli
from cryorefine.gan.config import ModelConfig
from cryorefine.metrics.micrographs import grid_tiles, tile_noise_power
from cryorefine.normalisation import Normalisation
from cryorefine.unpaired.config import UnpairedConfig
from cryorefine.unpaired.train import physics_images, train_translator
from cryorefine.unpaired.diffusion import (
    Denoiser,
    DiffusionConfig,
    DiffusionTranslator,
    condition_statistics,
    cosine_alpha_bar,
    gaussian_low_pass,
    train_diffusion,
)
from cryorefine.unpaired.data import real_micrograph, standardise
from cryorefine.unpaired.methods import MicrographNoise, noise_baseline, real_background, ring_power
from cryorefine.unpaired.store import load_translator, save_translator

TINY = ModelConfig(base_channels=4, depth=2)


class GaussianOracle(torch.nn.Module):
    """The exact ε-predictor for white Gaussian data of variance `variance` (condition ignored)."""

    def __init__(self, variance: float, timesteps: int):
        super().__init__()
        self.variance, self.alpha_bar = variance, cosine_alpha_bar(timesteps)

    def forward(self, noisy, condition, t):
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * noisy / (a * self.variance + 1 - a)


def _translator(denoiser, config: DiffusionConfig, noise_std: float = 0.0) -> DiffusionTranslator:
    unit = Normalisation(0.0, 1.0)
    return DiffusionTranslator(denoiser, unit, unit, structure_scale=1.0, noise_std=noise_std, condition_std=1.0,
                               config=config)


def test_schedule_runs_from_clean_to_pure_noise():
    alpha_bar = cosine_alpha_bar(1000)
    assert alpha_bar[0] == 1.0 and alpha_bar[-1] < 1e-4
    assert (alpha_bar[1:] <= alpha_bar[:-1]).all()


def test_low_pass_matches_scipy_and_keeps_the_mean():
    image = torch.randn(1, 1, 48, 40, generator=torch.Generator().manual_seed(0))
    ours = gaussian_low_pass(image, 2.0)[0, 0].numpy()
    reference = ndimage.gaussian_filter(image[0, 0].numpy().astype(np.float64), 2.0, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("variance", [2.25, 0.25])
@pytest.mark.parametrize("steps", [16, 64])
def test_sampler_with_the_exact_denoiser_draws_the_data_distribution(steps, variance):
    """A few stochastic steps with the exact ε-predictor give samples of the data variance, white."""
    config = DiffusionConfig(sampling_steps=steps, guidance=0.0)
    translator = _translator(GaussianOracle(variance, config.timesteps), config)
    zeros = torch.zeros(4, 1, 64, 64)
    samples = translator.translate(zeros, zeros, torch.Generator().manual_seed(1))
    assert samples.var().item() == pytest.approx(variance, rel=0.12)
    power = tile_noise_power(samples[:, 0])
    assert power[2:].std() / power[2:].mean() < 0.15  # flat: white, like the data


def test_sampling_is_stochastic_and_reproducible_with_a_seed():
    config = DiffusionConfig(model=TINY, sampling_steps=3)
    torch.manual_seed(0)
    translator = _translator(Denoiser(TINY, config.timesteps).eval(), config)
    image, mask = torch.randn(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    first = translator.translate(image, mask, torch.Generator().manual_seed(5))
    again = translator.translate(image, mask, torch.Generator().manual_seed(5))
    other = translator.translate(image, mask, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_mask_guidance_puts_the_structure_inside_the_mask():
    """With guidance the output's low-pass inside the mask follows the synthetic structure; without, it doesn't."""
    generator = torch.Generator().manual_seed(0)
    image = gaussian_low_pass(torch.randn(2, 1, 64, 64, generator=generator), 3.0)
    image = image / image.std()
    mask = torch.zeros_like(image)
    mask[..., 16:48, 16:48] = 1
    core = (slice(None), slice(None), slice(20, 44), slice(20, 44))  # inside the mask, away from its edge
    torch.manual_seed(0)
    denoiser = Denoiser(TINY, 1000).eval()
    correlations = {}
    for guidance in (0.0, 1.0):
        config = DiffusionConfig(model=TINY, sampling_steps=4, guidance=guidance)
        translator = _translator(denoiser, config)
        output = translator.translate(image, mask, torch.Generator().manual_seed(1))
        low = gaussian_low_pass(output, config.condition_sigma)[core].flatten()
        target = gaussian_low_pass(image, config.condition_sigma)[core].flatten()
        correlations[guidance] = float(torch.corrcoef(torch.stack([low, target]))[0, 1])
    assert correlations[1.0] > 0.9 and correlations[0.0] < 0.5


def test_training_lowers_the_denoising_error_and_the_model_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    # Smooth real images: the low-pass condition nearly fixes them, so a model that learns to use it
    # predicts the noise well; one that does not stays near the prior's error of 1.
    real = [ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3.0).astype(np.float32) for _ in range(2)]
    synthetic = [rng.normal(size=(96, 96)).astype(np.float32)]
    config = DiffusionConfig(model=TINY, steps=150, batch_size=8, tile=32, log_every=25, sampling_steps=3)
    translator, rows = train_diffusion(synthetic, real, config)
    assert rows[-1]["denoising_mse"] < 0.5 * rows[0]["denoising_mse"]
    save_translator(translator, tmp_path, rows)
    loaded = load_translator(tmp_path / "translator.pt")
    image, mask = torch.randn(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    expected = translator.translate(image, mask, torch.Generator().manual_seed(2))
    assert torch.equal(loaded.translate(image, mask, torch.Generator().manual_seed(2)), expected)
    assert (loaded.structure_scale, loaded.noise_std) == (translator.structure_scale, translator.noise_std)


def test_condition_statistics_match_the_real_low_pass_variance():
    """Scaled synthetic structure + the real noise floor has the real condition's low-pass variance."""
    rng = np.random.default_rng(0)
    structure = [ndimage.gaussian_filter(rng.normal(size=(256, 256)), 4.0) for _ in range(2)]
    real = [(3 * s + 0.5 * rng.normal(size=s.shape)).astype(np.float32) for s in structure]
    synthetic = [s.astype(np.float32) for s in structure]
    statistics = condition_statistics(synthetic, real, sigma=2.0)
    assert statistics["noise_std"] == pytest.approx(0.5, rel=0.05)
    assert statistics["structure_scale"] == pytest.approx(3.0, rel=0.05)


def test_noise_baselines_have_the_dose_statistics():
    clean = np.full((256, 256), 160.0, dtype=np.float32)
    gaussian = noise_baseline("gaussian", clean, 160.0, seed=0)
    poisson = noise_baseline("poisson", clean, 160.0, seed=0)
    assert gaussian.mean() == pytest.approx(160, abs=0.2) and gaussian.var() == pytest.approx(160, rel=0.03)
    assert poisson.mean() == pytest.approx(160, abs=0.2) and poisson.var() == pytest.approx(160, rel=0.03)
    assert np.allclose(poisson, np.round(poisson))  # counts


def _relative_errors(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(ours / reference - 1)


def test_coloured_baseline_has_the_real_strips_noise_power():
    """Fitted on the real micrograph's training strip, the coloured baseline of a flat scene has that
    strip's measured power: on the whole image per ring, and as evaluate measures it on 32 px tiles."""
    training, _ = real_micrograph(REAL_MICROGRAPH, 4.0, 0.5)
    noise = MicrographNoise.fit([training])
    dose = 40 * 4.0**2
    flat = np.full((training.shape[0],) * 2, dose, dtype=np.float32)
    outputs = [noise.sample(flat, dose, seed) for seed in range(3)]
    power = np.array(noise.power)
    n_bins = len(power) - 1
    scale = dose / power[int(0.8 * n_bins) : n_bins].mean()
    measured = np.mean([ring_power(o, n_bins).numpy() for o in outputs], axis=0)
    # Ring 0 holds one image's offset; rings 1-3 have only tens of coefficients (sampling scatter).
    errors = _relative_errors(measured[4:], scale * power[4:])
    assert np.median(errors) < 0.03 and errors.max() < 0.2
    tiles = _relative_errors(tile_noise_power(grid_tiles([standardise(o) for o in outputs], 32)),
                             tile_noise_power(grid_tiles([standardise(training)], 32)))
    assert np.median(tiles) < 0.05 and tiles.max() < 0.2
    assert all(abs(o.mean() - dose) < 0.01 * dose for o in outputs)


def test_coloured_baseline_keeps_the_particles_and_tops_them_up_to_the_real_spectrum():
    """Signal + noise has the real spectrum: the noise is the real power less the scene's own."""
    rng = np.random.default_rng(0)
    size, dose = 256, 640.0
    # 'Real': a known coloured field (a blobby low-frequency part over white noise) with a gradient.
    real = (ndimage.gaussian_filter(rng.normal(size=(size, size // 2)), 3.0) * 60
            + rng.normal(size=(size, size // 2)) * 25 + np.linspace(0, 40, size)[:, None] + 5000)
    noise = MicrographNoise.fit([real])
    blobs = ndimage.gaussian_filter((rng.random((size, size)) > 0.995).astype(float), 2.0)
    clean = (dose * (1 - 0.02 * blobs / blobs.max())).astype(np.float32)
    output = noise.sample(clean, dose, seed=1)
    power = np.array(noise.power)
    n_bins = len(power) - 1
    target = power * dose / power[int(0.8 * n_bins) : n_bins].mean()
    signal = ring_power(clean, n_bins).numpy()
    topped_up = signal < 0.9 * target
    errors = _relative_errors(ring_power(output, n_bins).numpy()[1:], target[1:])[topped_up[1:]]
    assert topped_up[1:].mean() > 0.9 and np.median(errors) < 0.08
    residual = output - clean  # the particles are untouched: what was added is noise, independent of them
    assert abs(np.corrcoef(residual.ravel(), blobs.ravel())[0, 1]) < 0.05


def test_partial_diffusion_keeps_the_particles_low_pass_without_guidance():
    """Started from the physics image noised to 20 % of the levels, even a denoiser that knows
    nothing of the structure (the exact one for white data) keeps the particles' low-pass inside
    their masks (the physics image itself: 0.97); started from pure noise it keeps nothing."""
    generator = torch.Generator().manual_seed(0)
    size = 96
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    structure, mask = torch.zeros(2, 1, size, size), torch.zeros(2, 1, size, size)
    for b, centres in enumerate(torch.randint(8, size - 8, (2, 12, 2), generator=generator)):
        for y, x in centres:  # particles: Gaussian blobs, masked out to 8 px from their centres
            distance2 = (rows - y) ** 2 + (cols - x) ** 2
            structure[b, 0] += torch.exp(-distance2 / 18.0)
            mask[b, 0] = torch.maximum(mask[b, 0], (distance2 <= 64).float())
    structure = 0.5 * structure / structure.std()
    physics = structure + 0.75**0.5 * torch.randn(structure.shape, generator=generator)
    inside = mask.bool()
    correlations = {}
    for level in (0.2, 1.0):
        config = DiffusionConfig(sampling_steps=10, guidance=0.0, start_level=level)
        translator = _translator(GaussianOracle(1.0, config.timesteps), config)
        output = translator.translate(structure, mask, torch.Generator().manual_seed(2), physics)
        low = gaussian_low_pass(output, config.condition_sigma)[inside]
        target = gaussian_low_pass(structure, config.condition_sigma)[inside]
        correlations[level] = float(torch.corrcoef(torch.stack([low, target]))[0, 1])
        assert output.var().item() == pytest.approx(physics.var().item(), rel=0.1)
    assert correlations[0.2] > 0.95 and correlations[1.0] < 0.3


def test_physics_translator_starts_as_the_coloured_baseline_and_round_trips(tmp_path):
    """With the residual head at zero the untrained physics-input generator returns its input; the
    saved model keeps its input kind and the measured real spectrum."""
    rng = np.random.default_rng(0)
    cleans = [np.full((96, 96), 160.0, dtype=np.float32) - 8 * (rng.random((96, 96)) > 0.99) for _ in range(2)]
    masks = [(c < 160).astype(np.float32) for c in cleans]
    real = [rng.normal(5000, 70, size=(96, 96)).astype(np.float32)]
    config = UnpairedConfig(model=TINY, steps=1, batch_size=2, tile=32, learning_rate=0.0, input="physics")
    translator, _ = train_translator(cleans, masks, real, config, dose_per_pixel=160.0)
    physics = torch.from_numpy(physics_images(cleans, translator.noise, 160.0, seed=3)[0])[None, None]
    mask = torch.from_numpy(masks[0])[None, None]
    output = translator.translate(torch.zeros_like(physics), mask, torch.Generator().manual_seed(0), physics)
    assert torch.equal(output, physics)
    save_translator(translator, tmp_path, [])
    loaded = load_translator(tmp_path / "translator.pt")
    assert loaded.needs_physics and loaded.noise == translator.noise


def test_real_background_crops_drops_outside_particles_and_relabels_the_mask():
    clean = np.full((100, 100), 40.0, dtype=np.float32)
    clean[10:14, 10:14] = 20.0  # particle 1: half the counts
    mask = np.zeros((100, 100), dtype=np.float32)
    mask[10:14, 10:14], mask[80:84, 80:84], mask[20:24, 30:34] = 1, 2, 3
    table = pd.DataFrame({"rlnCoordinateX": [12.0, 82.0, 32.0], "rlnCoordinateY": [12.0, 82.0, 22.0]})
    background = np.full((60, 50), 1000.0, dtype=np.float32)
    image, cropped, kept = real_background(clean, mask, table, background, 40.0)
    assert image.shape == cropped.shape == (60, 50)
    assert image[11, 11] == 500.0 and image[50, 5] == 1000.0
    assert list(kept["rlnCoordinateX"]) == [12.0, 32.0]
    assert set(np.unique(cropped)) == {0.0, 1.0, 2.0} and cropped[21, 31] == 2.0


def test_grid_tiles_do_not_overlap():
    image = np.arange(100 * 70, dtype=np.float32).reshape(100, 70)
    tiles = grid_tiles([image], 32)
    assert tiles.shape == (3 * 2, 32, 32)
    assert len(set(tiles[:, 0, 0].tolist())) == 6


def test_evaluate_micrographs_bad_name_is_a_one_line_error(tmp_path):
    result = run_cli("evaluate", "micrographs", "--sets", "nofolder", "--real", tmp_path / "r.mrc", "--out", tmp_path / "e")
    assert result.returncode == 2 and "NAME=DIR" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("evaluate", "micrographs", "--sets", f"a={tmp_path}", "--real", tmp_path / "r.mrc", "--out", tmp_path / "e")
    assert result.returncode == 2 and "no translated_NNN.mrc" in result.stderr
    assert not (tmp_path / "e").exists()
