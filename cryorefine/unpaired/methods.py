"""Ways to turn a synthetic scene into a micrograph set: a trained translator or a baseline.

Every method writes the same layout as `cryorefine scene` (`translated_NNN.mrc` beside the scene's
`coords_NNN.star` and `mask_NNN.mrc`), so `cryorefine evaluate` and a picker treat them alike.

Baselines, from the scene's clean expected counts C (mean ≈ the dose per pixel D):
- gaussian: C + white Gaussian noise of variance D (the usual simulator shortcut);
- poisson: Poisson counts of mean C (the physically right shot noise of an ideal detector);
- real-background: a real micrograph region B times the clean image's relative contrast, B·C/D:
  synthetic particles on real ice and real detector noise (the VirtualIce idea). The output is
  the common crop of B (the held-out strip of a real micrograph) and the scene; coordinates
  outside it are dropped.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from cryorefine.noise import NoiseModel
from cryorefine.unpaired.tiling import apply_tiled

NOISE_BASELINES = ("gaussian", "poisson")
BASELINES = (*NOISE_BASELINES, "real-background")


def translate_micrograph(translator, clean: np.ndarray, mask: np.ndarray, tile: int, margin: int,
                         seed: int = 0) -> np.ndarray:
    """Whole synthetic micrograph -> real-looking one, in the real micrograph's units."""
    noise = torch.Generator().manual_seed(seed)
    image = translator.synthetic.forward(clean)
    output = apply_tiled(lambda x, m: translator.translate(x, m, noise), image, mask, tile=tile, margin=margin)
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
