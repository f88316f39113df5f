"""Ways to turn a synthetic scene into a micrograph set: a trained translator or a baseline.

Every method writes the same layout as `cryorefine scene` (`translated_NNN.mrc` beside the scene's
`coords_NNN.star` and `mask_NNN.mrc`), so `cryorefine evaluate` and a picker treat them alike.

Baselines, from the scene's clean expected counts C (mean ≈ the dose per pixel D):
- gaussian: C + white Gaussian noise of variance D (the usual simulator shortcut);
- poisson: Poisson counts of mean C (the physically right shot noise of an ideal detector);
- coloured: C plus Gaussian noise whose power spectrum makes the micrograph's spectrum the real
  one's (`MicrographNoise`): the real micrograph's measured power, large-scale background variation
  included, less the scene's own signal power; the strongest simple baseline;
- real-background: a real micrograph region B times the clean image's relative contrast, B·C/D:
  synthetic particles on real ice and real detector noise (the VirtualIce idea). The output is
  the common crop of B (a strip of a real micrograph) and the scene; coordinates outside it are
  dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryorefine.metrics.spectral import ring_sum
from cryorefine.noise import NoiseModel, coloured_noise
from cryorefine.spectra import ring_indices
from cryorefine.unpaired.data import standardise
from cryorefine.unpaired.tiling import apply_tiled

# Edge taper of the power measurement (px per side): a micrograph is not periodic, and its edges
# would otherwise leak power along the axes (a cross in the spectrum, worst with an ice gradient).
TAPER_PX = 32
# The scene's signal power is taken out of the real power, but never below this fraction of it.
NOISE_FLOOR_FRACTION = 0.1
# Rings (fraction of Nyquist) whose mean real power is taken as the shot-noise floor, D per pixel.
SHOT_NOISE_RINGS = 0.8


def ring_power(image: np.ndarray, n_bins: int) -> torch.Tensor:
    """Mean |F|² per ring (DC..Nyquist + corners) of one tapered, mean-free micrograph, float64.

    The taper's power is divided out, so white noise of variance σ² gives σ² in every ring, as in
    `noise_power_spectrum`; rings are in absolute frequency, so any image size shares them.
    """
    height, width = image.shape
    taper = [np.minimum(1.0, np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / min(TAPER_PX, n // 4))
             for n in (height, width)]
    window = torch.from_numpy(np.sin(0.5 * np.pi * taper[0])[:, None] ** 2 * np.sin(0.5 * np.pi * taper[1])[None] ** 2)
    centred = torch.from_numpy(image.astype(np.float64)) - float(image.mean())
    spectrum = torch.fft.rfft2(centred * window, norm="ortho")
    _, counts = ring_indices(height, width, n_bins, "cpu")
    power = ring_sum(spectrum.real**2 + spectrum.imag**2, n_bins, height, width)
    return power / counts.double().clamp_min(1) / float((window**2).mean())


@dataclass(frozen=True)
class MicrographNoise:
    """The real micrographs' measured power per ring, to give synthetic micrographs the real spectrum.

    `power` is in the real micrograph's units²; its outer rings (shot noise) set the scale to the
    scene's counts. The lowest rings hold the large-scale background variation (ice gradient).
    """

    power: tuple[float, ...]

    @classmethod
    def fit(cls, images: list[np.ndarray]) -> "MicrographNoise":
        """From the training parts of the real micrographs (pixel-count-weighted mean)."""
        n_bins = min(min(image.shape) for image in images) // 2
        weights = np.array([image.size for image in images], dtype=np.float64)
        power = sum(w * ring_power(image, n_bins) for w, image in zip(weights / weights.sum(), images))
        return cls(tuple(float(p) for p in power))

    def noise_power(self, clean_counts: np.ndarray, dose_per_pixel: float) -> torch.Tensor:
        """Ring power of the noise to add to `clean_counts` so the sum has the real spectrum (counts²)."""
        real = torch.tensor(self.power, dtype=torch.float64)
        n_bins = len(real) - 1
        floor = real[int(SHOT_NOISE_RINGS * n_bins) : n_bins].mean()
        real = real * (dose_per_pixel / floor)
        signal = ring_power(clean_counts, n_bins)
        return torch.maximum(real - signal, NOISE_FLOOR_FRACTION * real)

    def sample(self, clean_counts: np.ndarray, dose_per_pixel: float, seed: int) -> np.ndarray:
        """The coloured baseline: clean counts plus Gaussian noise of `noise_power`."""
        height, width = clean_counts.shape
        noise = coloured_noise(1, height, width, self.noise_power(clean_counts, dose_per_pixel), None,
                               torch.Generator().manual_seed(seed))[0].numpy()
        return (clean_counts + noise).astype(np.float32)

    def physics(self, clean_counts: np.ndarray, dose_per_pixel: float, seed: int) -> np.ndarray:
        """The physics image a translator starts from: the coloured baseline, standardised by itself."""
        return standardise(self.sample(clean_counts, dose_per_pixel, seed))


def translate_micrograph(translator, clean: np.ndarray, mask: np.ndarray, tile: int, margin: int,
                         seed: int = 0, dose_per_pixel: float | None = None,
                         device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Whole synthetic micrograph -> real-looking one, in the real micrograph's units.

    A translator that starts from the physics image (`needs_physics`) gets the coloured baseline
    of the micrograph, standardised by itself, drawn with the same seed. The windows are translated
    on `device`, where the translator's network must be and its noise is drawn.
    """
    noise = torch.Generator(device=device).manual_seed(seed)
    image = translator.synthetic.forward(clean)
    physics = None
    if translator.needs_physics:
        if translator.noise is None or not dose_per_pixel:
            raise ValueError("this translator starts from the physics image: it needs the model's measured real "
                             "spectrum and the scene's dose")
        physics = translator.noise.physics(clean, dose_per_pixel, seed)
    def translate(image: torch.Tensor, mask: torch.Tensor, *physics: torch.Tensor) -> torch.Tensor:
        return translator.translate(image.to(device), mask.to(device), noise, *(p.to(device) for p in physics))

    output = apply_tiled(translate, image, mask, tile=tile, margin=margin, extra=physics)
    return translator.real.inverse(output)


def noise_baseline(name: str, clean_counts: np.ndarray, dose_per_pixel: float, seed: int) -> np.ndarray:
    """The scene's clean counts with the project's Gaussian or Poisson noise model."""
    sigma = math.sqrt(dose_per_pixel)
    model = {"gaussian": NoiseModel("gaussian", gaussian_std=sigma),
             "poisson": NoiseModel("poisson", poisson_std=sigma, dose=dose_per_pixel)}[name]
    signal = torch.from_numpy(clean_counts.astype(np.float64) - dose_per_pixel)[None]
    return (model.sample(signal, torch.Generator().manual_seed(seed))[0].numpy() + dose_per_pixel).astype(np.float32)


def real_background(clean_counts: np.ndarray, mask: np.ndarray, coordinates: pd.DataFrame, background: np.ndarray,
                    dose_per_pixel: float) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(image, mask, coordinates) on the common top-left crop of the clean scene and `background`.

    Particles whose centre falls outside the crop are dropped and the mask is relabelled to
    the kept rows (label i = row i, 1-based), as in a scene folder.
    """
    height, width = min(background.shape[0], clean_counts.shape[0]), min(background.shape[1], clean_counts.shape[1])
    background = background[:height, :width]
    contrast = clean_counts[:height, :width] / dose_per_pixel
    x, y = coordinates["rlnCoordinateX"].to_numpy(), coordinates["rlnCoordinateY"].to_numpy()
    keep = (x < width) & (y < height)
    relabel = np.zeros(len(coordinates) + 1, dtype=np.float32)
    relabel[1:][keep] = np.arange(1, keep.sum() + 1)
    cropped_mask = relabel[mask[:height, :width].astype(np.int64)]
    return (background * contrast).astype(np.float32), cropped_mask, coordinates[keep].reset_index(drop=True)
