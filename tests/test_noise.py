"""Noise baselines: fitted on paired synthetic data with known noise, then sampled."""

from __future__ import annotations

import json

import pytest
import torch

from cryorefine.noise import (BASELINES, NoiseModel, ResidualBank, fit_noise_models, load_noise_model,
                              save_noise_models)
from cryorefine.spectra import rpsd_distance

N, BOX = 64, 48


def _clean(seed: int = 0) -> torch.Tensor:
    """Smooth random images with std 0.5 (signal on raw's scale)."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(N, BOX, BOX, generator=generator)
    f = torch.fft.fftfreq(BOX)
    low_pass = torch.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.05**2))
    images = torch.fft.ifft2(torch.fft.fft2(white) * low_pass).real
    return images / images.std() * 0.5


def _coloured_noise(seed: int = 1) -> torch.Tensor:
    """Unit-variance noise with a strong low-pass colour, unlike white noise."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(N, BOX, BOX, generator=generator)
    f = torch.fft.fftfreq(BOX)
    envelope = 0.3 + torch.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / 0.15**2))
    noise = torch.fft.ifft2(torch.fft.fft2(white) * envelope).real
    return noise / noise.std()


def _skewness(x: torch.Tensor) -> float:
    c = x.double() - x.double().mean()
    return float((c**3).mean() / c.std() ** 3)


@pytest.fixture(scope="module")
def paired():
    clean = _clean()
    raw = clean + 0.3 + _coloured_noise()
    return raw, clean, fit_noise_models(raw, clean)


def test_fits_every_baseline_with_right_shape_dtype_and_variance(paired):
    raw, clean, models = paired
    assert set(models) == set(BASELINES)
    residual = raw - clean
    for name, model in models.items():
        assert model.kind == name
        out = model.sample(clean, torch.Generator().manual_seed(3))
        assert out.shape == clean.shape and out.dtype == clean.dtype
        noise = out - clean
        assert float(noise.var()) == pytest.approx(float(residual.var()), rel=0.04), name
        assert float(noise.mean()) == pytest.approx(0.3, abs=0.02), name


def test_coloured_noise_reproduces_the_measured_spectrum_and_white_does_not(paired):
    raw, clean, models = paired
    residual = raw - clean
    coloured = models["coloured"].sample(clean, torch.Generator().manual_seed(4)) - clean
    white = models["gaussian"].sample(clean, torch.Generator().manual_seed(4)) - clean
    coloured_l1 = float(rpsd_distance(coloured, residual)[0])
    white_l1 = float(rpsd_distance(white, residual)[0])
    assert coloured_l1 < 0.03
    assert white_l1 > 5 * coloured_l1


def test_low_dose_poisson_is_right_skewed_and_its_dose_is_recovered():
    clean = _clean()
    truth = NoiseModel("poisson", poisson_std=1.0, dose=5.0)
    raw = truth.sample(clean, torch.Generator().manual_seed(5))
    fitted = fit_noise_models(raw, clean)["poisson"]
    assert fitted.dose == pytest.approx(5.0, rel=0.2)
    out = fitted.sample(clean, torch.Generator().manual_seed(6))
    assert _skewness(out - clean) == pytest.approx(1 / 5.0**0.5, rel=0.2)  # Poisson skewness 1/√D > 0
    gaussian = fit_noise_models(raw, clean)["gaussian"].sample(clean, torch.Generator().manual_seed(6))
    assert abs(_skewness(gaussian - clean)) < 0.05


def test_gaussian_plus_poisson_split_is_recovered_from_signal_dependence():
    clean = _clean()
    truth = NoiseModel("gaussian+poisson", poisson_std=0.8, dose=5.0, gaussian_std=0.6)
    raw = truth.sample(clean, torch.Generator().manual_seed(7))
    fitted = fit_noise_models(raw, clean)["gaussian+poisson"]
    assert fitted.poisson_std == pytest.approx(0.8, rel=0.1)
    assert fitted.gaussian_std == pytest.approx(0.6, rel=0.15)
    assert fitted.dose == pytest.approx(5.0, rel=0.3)


def test_gaussian_plus_poisson_falls_back_to_half_split_for_symmetric_noise(paired):
    _, _, models = paired  # coloured Gaussian noise: no skew, no signal dependence
    model = models["gaussian+poisson"]
    assert model.poisson_std == pytest.approx(model.gaussian_std, rel=1e-6)


def test_save_and_load_round_trip_through_the_model_folder(paired, tmp_path):
    _, clean, models = paired
    save_noise_models(tmp_path, models)
    assert (tmp_path / "residual_bank.npy").is_file() and json.loads((tmp_path / "noise_models.json").read_text())["residual"]["keys"]
    for name, model in models.items():
        restored = load_noise_model(tmp_path, name)
        if isinstance(model, NoiseModel):
            assert restored == model
        else:
            assert torch.equal(restored.residuals, model.residuals) and restored.keys == model.keys
        a = model.sample(clean[:4], torch.Generator().manual_seed(8))
        b = restored.sample(clean[:4], torch.Generator().manual_seed(8))
        assert torch.equal(a, b)


def test_seeded_sampling_is_deterministic_and_seeds_differ(paired):
    _, clean, models = paired
    for model in models.values():
        a = model.sample(clean[:4], torch.Generator().manual_seed(9))
        b = model.sample(clean[:4], torch.Generator().manual_seed(9))
        c = model.sample(clean[:4], torch.Generator().manual_seed(10))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_unknown_kind_and_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown noise baseline"):
        NoiseModel("salt")
    with pytest.raises(ValueError, match="paired"):
        fit_noise_models(torch.zeros(2, 8, 8), torch.zeros(3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampling_on_the_gpu_with_a_gpu_generator(paired):
    raw, clean, models = paired
    generator = torch.Generator(device="cuda").manual_seed(11)
    for model in models.values():
        out = model.sample(clean.cuda(), generator)
        assert out.device.type == "cuda" and out.dtype == clean.dtype
        assert float((out.cpu() - clean).var()) == pytest.approx(float((raw - clean).var()), rel=0.04)


def test_coloured_levels_recover_the_spread_of_noise_levels_and_not_the_sampling_scatter():
    """Per-particle noise levels: a log-normal spread of σ 0.3 is recovered; one common level gives ℓ ≈ 1."""
    clean = _clean()
    generator = torch.Generator().manual_seed(12)
    noise = torch.cat([_coloured_noise(s) for s in range(13, 17)])  # 256 images
    levels = torch.exp(0.3 * torch.randn(len(noise), 1, 1, generator=generator))
    clean4 = clean.repeat(4, 1, 1)
    varied = fit_noise_models(clean4 + noise * levels, clean4)["coloured"].noise_levels
    common = fit_noise_models(clean4 + noise, clean4)["coloured"].noise_levels
    log_spread = float(torch.tensor(varied).log().std())
    assert log_spread == pytest.approx(0.3, rel=0.2)
    assert max(abs(v - 1) for v in common) < 0.05  # the sampling scatter of one image's variance is removed
    assert float((torch.tensor(varied) ** 2).mean()) == pytest.approx(1.0, abs=1e-6)


def test_residual_bank_never_gives_a_particle_its_own_residual_and_uses_every_other():
    """Residual j is the constant image j: after any turn, flip or shift it is still recognisable."""
    size, box = 6, 8
    residuals = torch.arange(size, dtype=torch.float32)[:, None, None].expand(size, box, box).contiguous()
    bank = ResidualBank(residuals, [f"p{j}" for j in range(size)])
    clean = torch.zeros(600, box, box)
    own = [f"p{i % size}" for i in range(600)]
    out = bank.sample(clean, torch.Generator().manual_seed(0), own)
    got = out[:, 0, 0].round().long()
    assert torch.equal(out, got[:, None, None].float().expand_as(out))
    assert all(int(g) != i % size for i, g in enumerate(got))
    for i in range(size):  # uniform over the other particles
        counts = torch.bincount(got[torch.arange(600) % size == i], minlength=size)
        assert counts[i] == 0 and (counts[torch.arange(size) != i] > 5).all()
    # Particles not in the bank (new sims) may get any residual.
    assert set(bank.sample(clean, torch.Generator().manual_seed(1), ["new"] * 600)[:, 0, 0].round().long().tolist()) == set(range(size))


def test_residual_transplant_keeps_the_real_noise_and_turns_it():
    clean = _clean()
    raw = clean + _coloured_noise()
    models = fit_noise_models(raw, clean)
    out = models["residual"].sample(clean, torch.Generator().manual_seed(2), [str(i) for i in range(len(clean))])
    assert float(rpsd_distance(out - clean, raw - clean)[0]) < 0.03
    # Not a copy of any residual in place: the transplant is turned, flipped or shifted.
    same = [(out[i] - clean[i]).allclose(raw[j] - clean[j]) for i in range(8) for j in range(len(raw))]
    assert sum(same) == 0


def test_particle_keys_match_between_raw_and_sim_and_survive_duplicates(tmp_path):
    """simulate's raw.star and sim.star name each particle alike; a symmetry-expanded duplicate is excluded too."""
    import numpy as np
    import pandas as pd

    from cryorefine.io.star import particle_keys

    raw = pd.DataFrame({"rlnImageName": ["1@raw.mrcs", "2@raw.mrcs"], "rlnAngleRot": [10.0, 20.0],
                        "rlnAngleTilt": [30.0, 40.0], "rlnAnglePsi": [1.0, 2.0], "rlnDefocusU": [1e4, 2e4]})
    sim = raw.assign(rlnImageName=["1@sim.mrcs", "2@sim.mrcs"])
    assert particle_keys(raw) == particle_keys(sim) and len(set(particle_keys(raw))) == 2
    located = raw.assign(rlnMicrographName=["m1.mrc", "m1.mrc"], rlnCoordinateX=[5.0, 5.0], rlnCoordinateY=[7.0, 7.0])
    assert len(set(particle_keys(located))) == 1  # the same particle twice (symmetry expansion)
    residuals = torch.arange(3, dtype=torch.float32)[:, None, None].expand(3, 4, 4).contiguous()
    bank = ResidualBank(residuals, ["a", "a", "b"])
    out = bank.sample(torch.zeros(50, 4, 4), torch.Generator().manual_seed(0), ["a"] * 50)
    assert set(out[:, 0, 0].round().long().tolist()) == {2} and bank.known(["a", "z"]) == 1
    assert np.isfinite(out.numpy()).all()
