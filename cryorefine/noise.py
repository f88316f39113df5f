"""Noise baselines: simple physical noise models fitted on paired (raw, sim) images.

A learned sim→real model must always be reported beside these (plain noise can beat a GAN on
downstream use). All models work on raw's intensity scale; with the residual r = raw − sim,
μ = mean(r), V = var(r), κ3 = third central moment of r:

- ``gaussian``: clean + μ + σ·w, w white N(0, 1), σ² = V.
- ``poisson`` (dose): counts n ~ Poisson(D·(background + contrast·clean)) with background 1 and
  contrast c = 1/(σ_p·√D), normalised back as σ_p·(n − D)/√D + μ (= (n/D − 1)/c + μ). The output
  has mean clean + μ, variance σ_p²·(1 + c·clean) (σ_p² = V in background) and skewness
  1/√(D·(1 + c·clean)) > 0: low doses give visibly non-Gaussian, right-skewed noise. σ_p² = V and
  the dose D (electrons per pixel at background) comes from the skewness by the method of moments,
  D = (σ_p³/κ3)², kept in [DOSE_MIN, DOSE_MAX] (κ3 ≤ 0 gives DOSE_MAX, the Gaussian limit).
- ``gaussian+poisson``: a Poisson term (σ_p², D) plus independent white Gaussian noise σ_g².
  The Poisson term makes the residual variance grow with the signal, dV/dclean = β = σ_p/√D,
  and gives κ3 = σ_p³/√D, so σ_p² = κ3/β and D = σ_p²/β², σ_g² = V − σ_p². β is fitted by
  regressing the residual variance on the clean level over quantile bins. When that is not
  identifiable (β or the skewness not above 3 standard errors, or σ_p² outside (0, V)) the split
  is fixed at half the variance each, σ_p² = V/2, and D = (σ_p³/κ3)² as for ``poisson``.
- ``coloured``: clean + μ + ℓ·n, n stationary Gaussian noise whose ring-averaged power spectrum is
  the measured noise power spectrum of r (cryorefine.metrics.spectral.noise_power_spectrum, white
  noise multiplied in Fourier space by √P(ring)), and ℓ a per-particle noise level drawn from the
  measured distribution of the particles' residual std (real particles sit in ice of different
  thickness; one global level is not real). E[ℓ²] = 1, so the set's variance is V. The measured
  spread of ℓ² is corrected for the sampling error of one image's variance, 2/N_eff, with N_eff the
  effective number of independent pixels of coloured noise, (Σ P)²/Σ P² over the Fourier grid.
- ``residual`` (real-noise transplant, `ResidualBank`): clean + r_j, r_j = raw_j − sim_j the residual
  of another training particle j (never the particle's own), under a random one of the 8 rotations
  and flips of the square and a random cyclic shift. Real ice, detector noise, neighbours and model
  error, exact ground truth, no training. Limited by its bank (at most RESIDUAL_BANK_PIXELS pixels of
  residuals are kept) and by carrying the model error of its own particle: r_j holds
  whatever of particle j's signal the simulation missed (pose error, envelope, contrast), now on top
  of a different particle.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cryorefine.gan.config import BASELINES
from cryorefine.io.atomic import atomic_path, write_json
from cryorefine.metrics.spectral import noise_power_spectrum
from cryorefine.spectra import ring_indices, default_bins

DOSE_MIN = 1.0
DOSE_MAX = 1e6
SIGNAL_BINS = 20
# Quantiles of the per-particle noise level kept by the coloured model (equally likely when drawn).
NOISE_LEVELS = 64
# The residual bank holds at most this many pixels (64 MiB of float32): 2000 images of 48 px,
# 1024 of 128 px, 256 of 256 px.
RESIDUAL_BANK_PIXELS = 2**24
NOISE_MODELS_NAME = "noise_models.json"
RESIDUAL_BANK_NAME = "residual_bank.npy"


def coloured_noise(count: int, height: int, width: int, power: torch.Tensor, levels: torch.Tensor | None,
                   generator: torch.Generator | None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(count, height, width) Gaussian noise with ring power `power` (DC..Nyquist + corners), each image
    scaled by a level drawn uniformly from `levels` (None: level 1). On `power`'s device.

    The one implementation of coloured noise: the `coloured` baseline and the physics-prior
    generator's noise source both draw from it.
    """
    device = power.device
    ring, _ = ring_indices(height, width, len(power) - 1, str(device))
    amplitude = power.to(dtype).clamp_min(0).sqrt()[ring].reshape(height, width // 2 + 1)
    white = torch.randn(count, height, width, generator=generator, dtype=dtype, device=device)
    noise = torch.fft.irfft2(torch.fft.rfft2(white, norm="ortho") * amplitude, s=(height, width), norm="ortho")
    return noise if levels is None else noise * draw_levels(count, levels, generator, dtype)


def draw_levels(count: int, levels: torch.Tensor, generator: torch.Generator | None,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(count, 1, 1) per-particle noise levels drawn uniformly from the quantiles `levels`."""
    pick = torch.randint(len(levels), (count,), generator=generator, device=levels.device)
    return levels.to(dtype)[pick][:, None, None]


@dataclass
class NoiseModel:
    """A fitted parametric noise baseline; `sample` turns clean images into noisy ones on raw's scale."""

    kind: str
    offset: float = 0.0  # μ, mean residual
    gaussian_std: float = 0.0  # σ_g
    poisson_std: float = 0.0  # σ_p, Poisson noise std at background
    dose: float = DOSE_MAX  # D, electrons per pixel at background
    noise_power: list[float] | None = None  # coloured: power per ring, DC..Nyquist + corners
    noise_levels: list[float] | None = None  # coloured: per-particle noise level quantiles, E[ℓ²] = 1

    def __post_init__(self) -> None:
        if self.kind not in BASELINES or self.kind == "residual":
            parametric = [b for b in BASELINES if b != "residual"]
            raise ValueError(f"unknown noise baseline {self.kind!r}; choose from {', '.join(parametric)}")
        if self.kind == "coloured" and not self.noise_power:
            raise ValueError("a coloured noise model needs its noise_power spectrum")
        numbers = [self.offset, self.gaussian_std, self.poisson_std, self.dose,
                   *(self.noise_power or []), *(self.noise_levels or [])]
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"{self.kind} noise model has non-finite parameters")
        if min(self.gaussian_std, self.poisson_std) < 0 or self.dose <= 0 or min(self.noise_levels or [0]) < 0:
            raise ValueError(f"{self.kind} noise model has negative noise levels or dose")

    @property
    def contrast(self) -> float:
        """c in Poisson(D·(1 + c·clean)): fractional change of the expected counts per unit of signal."""
        return 1.0 / (self.poisson_std * math.sqrt(self.dose)) if self.poisson_std > 0 else 0.0

    def sample(self, clean: torch.Tensor, generator: torch.Generator, keys: Sequence[str] | None = None) -> torch.Tensor:
        """Noisy version of clean images (B, H, W), same dtype and device; seeded by `generator`.

        The noise is drawn (in float64) on the generator's device, so a CPU generator gives the
        same numbers whatever device `clean` lives on. `keys` (particle identities) matter only
        to the residual bank; they are accepted here so every baseline is called the same way.
        """
        work = clean.detach().to(device=generator.device, dtype=torch.float64)
        if self.kind == "coloured":
            power = torch.tensor(self.noise_power, dtype=torch.float64, device=generator.device)
            levels = None if not self.noise_levels else torch.tensor(self.noise_levels, dtype=torch.float64,
                                                                     device=generator.device)
            noisy = work + coloured_noise(work.shape[0], *work.shape[-2:], power, levels, generator)
        else:
            noisy = self._poisson(work, generator) if self.poisson_std > 0 else work
            if self.gaussian_std > 0:
                noisy = noisy + self.gaussian_std * torch.randn(work.shape, generator=generator, dtype=torch.float64,
                                                                device=generator.device)
        return (noisy + self.offset).to(device=clean.device, dtype=clean.dtype)

    def _poisson(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rate = self.dose * (1 + self.contrast * clean).clamp_min(0.0)
        counts = torch.poisson(rate, generator=generator)
        return self.poisson_std * (counts - self.dose) / math.sqrt(self.dose)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseModel":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "kind" not in known:
            raise ValueError("noise model description lacks 'kind'")
        return cls(**known)


@dataclass
class ResidualBank:
    """The `residual` baseline: real residuals raw_j − sim_j of training pairs, transplanted onto new sims.

    `keys` name the particle each residual came from (see `cryorefine.io.star.particle_keys`); a
    particle found in the bank never receives its own residual.
    """

    residuals: torch.Tensor  # (K, H, W) float32, on raw's scale (offset included)
    keys: list[str] = field(default_factory=list)
    kind: str = "residual"

    def __post_init__(self) -> None:
        if self.residuals.dim() != 3 or len(self.residuals) < 2:
            raise ValueError("a residual bank needs at least 2 residual images (K, H, W)")
        if len(self.keys) != len(self.residuals):
            raise ValueError(f"residual bank has {len(self.residuals)} images but {len(self.keys)} keys")
        if not bool(torch.isfinite(self.residuals).all()):
            raise ValueError("residual bank holds non-finite values")
        self._where: dict[str, list[int]] = {}
        for index, key in enumerate(self.keys):
            self._where.setdefault(key, []).append(index)

    def known(self, keys: Sequence[str]) -> int:
        """How many of `keys` name a particle of the bank (those are kept from their own residual)."""
        return sum(key in self._where for key in keys)

    def sample(self, clean: torch.Tensor, generator: torch.Generator, keys: Sequence[str] | None = None) -> torch.Tensor:
        """clean (B, H, W) + a randomly turned, flipped and shifted residual of another particle."""
        count, (height, width) = clean.shape[0], clean.shape[-2:]
        if (height, width) != tuple(self.residuals.shape[-2:]):
            raise ValueError(f"residual bank is {tuple(self.residuals.shape[-2:])} px, images are {(height, width)}")
        if keys is not None and len(keys) != count:
            raise ValueError(f"{len(keys)} particle keys for {count} images")
        size = len(self.residuals)
        cpu = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
        draw = torch.rand(count, generator=cpu)
        turns = torch.randint(8, (count,), generator=cpu)
        shifts = torch.randint(height * width, (count,), generator=cpu)
        noise = torch.empty(count, height, width, dtype=torch.float64)
        for i in range(count):
            # Uniform over the bank without the particle's own residual(s) (a symmetry-expanded STAR
            # holds one particle several times under one key).
            own = self._where.get(keys[i], ()) if keys is not None else ()
            if len(own) >= size:
                raise ValueError(f"every residual in the bank belongs to particle {keys[i]!r}")
            pick = int(draw[i] * (size - len(own)))
            for taken in own:  # sorted: step over each of the particle's own entries
                pick += pick >= taken
            image = torch.rot90(self.residuals[pick].double(), int(turns[i]) % 4, dims=(0, 1))
            image = image.flip(1) if turns[i] >= 4 else image
            noise[i] = torch.roll(image, (int(shifts[i]) // width, int(shifts[i]) % width), dims=(0, 1))
        return (clean.detach().double().cpu() + noise).to(device=clean.device, dtype=clean.dtype)


Baseline = NoiseModel | ResidualBank


def _dose_from_skewness(std: float, third_moment: float) -> float:
    if third_moment <= 0 or std <= 0:
        return DOSE_MAX
    return float(np.clip((std**3 / third_moment) ** 2, DOSE_MIN, DOSE_MAX))


def _variance_slope(residual: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """dVar(residual)/dclean and its standard error, from a weighted line through per-quantile-bin variances."""
    edges = np.unique(np.quantile(clean, np.linspace(0, 1, SIGNAL_BINS + 1)))
    if len(edges) < 5:
        return 0.0, math.inf
    which = np.clip(np.searchsorted(edges, clean, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
    keep = counts > 2
    sums = np.bincount(which, weights=residual, minlength=len(counts))
    squares = np.bincount(which, weights=residual**2, minlength=len(counts))
    levels = np.bincount(which, weights=clean, minlength=len(counts))
    counts, sums, squares, levels = counts[keep], sums[keep], squares[keep], levels[keep]
    if len(counts) < 4:
        return 0.0, math.inf
    variance = squares / counts - (sums / counts) ** 2
    (slope, _), cov = np.polyfit(levels / counts, variance, 1, w=np.sqrt(counts), cov=True)
    return float(slope), float(np.sqrt(cov[0, 0]))


def _full_grid_power(power: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P on every rfft coefficient, and each coefficient's weight in the full DFT plane (1 or 2)."""
    ring, _ = ring_indices(height, width, len(power) - 1, str(power.device))
    weight = torch.ones(height, width // 2 + 1, dtype=power.dtype, device=power.device)
    weight[:, 1 : (width + 1) // 2] = 2  # the rfft half-plane stands for its mirror image too
    return power.clamp_min(0)[ring], weight.flatten()


def noise_std(power: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel std of coloured noise with ring power `power` (Parseval, orthonormal DFT)."""
    grid, weight = _full_grid_power(power, height, width)
    return ((grid * weight).sum() / (height * width)).sqrt()


def noise_levels(residual: torch.Tensor, power: torch.Tensor) -> list[float]:
    """NOISE_LEVELS quantiles of the per-particle noise level ℓ_i (E[ℓ²] = 1) of residuals (N, H, W).

    ℓ_i² = v_i / mean(v), v_i the variance of residual i. One image's variance scatters by about
    2/N_eff even when every particle has the same level (N_eff from the noise power spectrum
    `power`), so the measured spread of ℓ² is shrunk by that much: identical levels give ℓ = 1.
    (To first order: the scatter is E[ℓ⁴]·2/N_eff, and N_eff counts the DC term that a per-image
    variance removes; both are second-order corrections for levels near 1.)
    """
    height, width = residual.shape[-2:]
    variance = residual.double().flatten(1).var(dim=1)
    relative = variance / variance.mean()
    grid, weight = _full_grid_power(power.double(), height, width)
    effective_pixels = float((weight * grid).sum() ** 2 / (weight * grid**2).sum().clamp_min(1e-300))
    observed_spread = float(relative.var()) if len(relative) > 1 else 0.0
    keep = math.sqrt(max(0.0, 1 - (2 / effective_pixels) / observed_spread)) if observed_spread > 0 else 0.0
    squared = (1 + (relative - 1) * keep).clamp_min(0)
    quantiles = torch.quantile(squared, (torch.arange(NOISE_LEVELS, dtype=torch.float64) + 0.5) / NOISE_LEVELS)
    quantiles = quantiles / quantiles.mean()
    return [float(v) for v in quantiles.sqrt()]


def fit_noise_models(raw: torch.Tensor, sim: torch.Tensor, keys: Sequence[str] | None = None,
                     seed: int = 0) -> dict[str, Baseline]:
    """Fit every baseline on paired images (N, H, W): raw ≈ sim + noise, sim on raw's scale.

    `keys` name the particles (for the residual bank: a particle never gets its own residual back);
    without them the rows are named by their index. When the bank cannot hold every residual, a
    seeded random subset is kept.
    """
    if raw.shape != sim.shape or raw.dim() != 3:
        raise ValueError(f"raw and sim must be paired (N, H, W) stacks, got {tuple(raw.shape)} and {tuple(sim.shape)}")
    if keys is not None and len(keys) != len(raw):
        raise ValueError(f"{len(keys)} particle keys for {len(raw)} images")
    residual_t = raw.double() - sim.double()
    residual = residual_t.cpu().numpy().ravel()
    clean = sim.double().cpu().numpy().ravel()
    offset = float(residual.mean())
    centred = residual - offset
    variance = float(np.mean(centred**2))
    third = float(np.mean(centred**3))
    std = math.sqrt(variance)

    slope, slope_error = _variance_slope(centred, clean)
    skew_error = math.sqrt(6 / len(centred))
    identifiable = slope > 3 * slope_error and third / std**3 > 3 * skew_error
    poisson_var = third / slope if identifiable else 0.0
    if 0 < poisson_var < variance:
        poisson_std = math.sqrt(poisson_var)
        dose = float(np.clip(poisson_var / slope**2, DOSE_MIN, DOSE_MAX))
    else:
        poisson_std = math.sqrt(variance / 2)
        dose = _dose_from_skewness(poisson_std, third)
    gaussian_std = math.sqrt(max(variance - poisson_std**2, 0.0))

    power = noise_power_spectrum(residual_t, default_bins(min(raw.shape[-2:])))
    bank_size = max(2, min(len(raw), RESIDUAL_BANK_PIXELS // (raw.shape[-1] * raw.shape[-2])))
    names = [str(i) for i in range(len(raw))] if keys is None else list(keys)
    kept = torch.sort(torch.randperm(len(raw), generator=torch.Generator().manual_seed(seed))[:bank_size])[0]
    return {
        "gaussian": NoiseModel("gaussian", offset=offset, gaussian_std=std),
        "poisson": NoiseModel("poisson", offset=offset, poisson_std=std, dose=_dose_from_skewness(std, third)),
        "gaussian+poisson": NoiseModel("gaussian+poisson", offset=offset, gaussian_std=gaussian_std,
                                       poisson_std=poisson_std, dose=dose),
        "coloured": NoiseModel("coloured", offset=offset, noise_power=[float(p) for p in power],
                               noise_levels=noise_levels(residual_t, power)),
        "residual": ResidualBank(residual_t[kept].float().cpu().contiguous(), [names[i] for i in kept.tolist()]),
    }


def save_noise_models(model_dir: str | os.PathLike, models: dict[str, Baseline]) -> None:
    """MODEL_DIR/noise_models.json (parametric models; the bank's keys) + residual_bank.npy (its images)."""
    model_dir = Path(model_dir)
    described = {}
    for name, model in models.items():
        if isinstance(model, ResidualBank):
            with atomic_path(model_dir / RESIDUAL_BANK_NAME) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, model.residuals.numpy().astype(np.float32))
            described[name] = {"kind": "residual", "keys": model.keys}
        else:
            described[name] = model.to_dict()
    write_json(model_dir / NOISE_MODELS_NAME, described)


def load_noise_model(model_dir: str | os.PathLike, kind: str) -> Baseline:
    """One fitted baseline of a model folder; OSError, KeyError or ValueError say what is missing or wrong."""
    description = json.loads((Path(model_dir) / NOISE_MODELS_NAME).read_text())[kind]
    if description.get("kind") != "residual":
        return NoiseModel.from_dict(description)
    bank_path = Path(model_dir) / RESIDUAL_BANK_NAME
    if not bank_path.is_file():
        raise ValueError(f"its residual bank {bank_path.name} is missing")
    try:
        images = np.load(bank_path, allow_pickle=False)
    except EOFError:
        raise ValueError(f"its residual bank {bank_path.name} is empty or truncated") from None
    return ResidualBank(torch.from_numpy(np.asarray(images, dtype=np.float32)), [str(k) for k in description["keys"]])
