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
- ``coloured``: clean + μ + Gaussian noise whose ring-averaged power spectrum equals the measured
  noise power spectrum of r (cryorefine.metrics.spectral.noise_power_spectrum): white noise is
  multiplied in Fourier space by √P(ring). Its variance is V by Parseval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from cryorefine.metrics.spectral import noise_power_spectrum
from cryorefine.spectra import ring_indices, default_bins

BASELINES = ("gaussian", "poisson", "gaussian+poisson", "coloured")
DOSE_MIN = 1.0
DOSE_MAX = 1e6
SIGNAL_BINS = 20


@dataclass
class NoiseModel:
    """A fitted noise baseline; `sample` turns clean images into noisy ones on raw's scale."""

    kind: str
    offset: float = 0.0  # μ, mean residual
    gaussian_std: float = 0.0  # σ_g
    poisson_std: float = 0.0  # σ_p, Poisson noise std at background
    dose: float = DOSE_MAX  # D, electrons per pixel at background
    noise_power: list[float] | None = None  # coloured: power per ring, DC..Nyquist + corners

    def __post_init__(self) -> None:
        if self.kind not in BASELINES:
            raise ValueError(f"unknown noise baseline {self.kind!r}; choose from {', '.join(BASELINES)}")
        if self.kind == "coloured" and not self.noise_power:
            raise ValueError("a coloured noise model needs its noise_power spectrum")

    @property
    def contrast(self) -> float:
        """c in Poisson(D·(1 + c·clean)): fractional change of the expected counts per unit of signal."""
        return 1.0 / (self.poisson_std * math.sqrt(self.dose)) if self.poisson_std > 0 else 0.0

    def sample(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Noisy version of clean images (B, H, W), same dtype and device; seeded by `generator`.

        The noise is drawn (in float64) on the generator's device, so a CPU generator gives the
        same numbers whatever device `clean` lives on.
        """
        work = clean.detach().to(device=generator.device, dtype=torch.float64)
        if self.kind == "coloured":
            noisy = work + self._coloured(work.shape, generator)
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

    def _coloured(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        height, width = shape[-2:]
        power = torch.tensor(self.noise_power, dtype=torch.float64, device=generator.device)
        ring, _ = ring_indices(height, width, len(power) - 1, str(generator.device))
        amplitude = power.clamp_min(0).sqrt()[ring].reshape(height, width // 2 + 1)
        white = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
        spectrum = torch.fft.rfft2(white, norm="ortho") * amplitude
        return torch.fft.irfft2(spectrum, s=(height, width), norm="ortho")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseModel":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "kind" not in known:
            raise ValueError("noise model description lacks 'kind'")
        return cls(**known)


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


def fit_noise_models(raw: torch.Tensor, sim: torch.Tensor) -> dict[str, NoiseModel]:
    """Fit every baseline on paired images (N, H, W): raw ≈ sim + noise, sim on raw's scale."""
    if raw.shape != sim.shape or raw.dim() != 3:
        raise ValueError(f"raw and sim must be paired (N, H, W) stacks, got {tuple(raw.shape)} and {tuple(sim.shape)}")
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
    return {
        "gaussian": NoiseModel("gaussian", offset=offset, gaussian_std=std),
        "poisson": NoiseModel("poisson", offset=offset, poisson_std=std, dose=_dose_from_skewness(std, third)),
        "gaussian+poisson": NoiseModel("gaussian+poisson", offset=offset, gaussian_std=gaussian_std,
                                       poisson_std=poisson_std, dose=dose),
        "coloured": NoiseModel("coloured", offset=offset, noise_power=[float(p) for p in power]),
    }
