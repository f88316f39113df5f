"""Score whole micrographs against real ones: spectra, a classifier test on tiles, mask preservation.

A micrograph set is a folder in the layout of `cryorefine scene` / `cryorefine translate apply`:
`translated_NNN.mrc` (or `micrograph_NNN.mrc`) with optional `mask_NNN.mrc` and
`coords_NNN.star`. Every image is standardised to zero mean and unit variance over the whole
micrograph (real and synthetic counts have different units), then cut into non-overlapping
tiles: overlapping random tiles would let the classifier recognise test tiles it saw in training.

Metrics per set, against the real tiles:
- rpsd_l1: L1 between mean RPSDs (`cryorefine.spectra`, the loss's own function);
- noise power spectrum: the mean radially averaged power |F|² per ring (linear, not log), as a
  curve for the plots;
- classifier_auc: the two-sample CNN test (`cryorefine.metrics.classifier`) on equal numbers of
  tiles, mean and std over `classifier_repeats` seeds (each a new split and network);
- mask_preservation (with --scenes): correlation, inside the particle masks, of the low-passed
  output with the low-passed clean micrograph: are the particles still where and what they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cryorefine.errors import InputError
from cryorefine.io.mrc import read_micrograph
from cryorefine.metrics.classifier import classifier_auc_spread
from cryorefine.metrics.config import ClassifierConfig, MicrographScoreConfig
from cryorefine.metrics.results import MicrographScores
from cryorefine.metrics.spectral import noise_power_spectrum
from cryorefine.spectra import rpsd_distance

LOW_PASS_SIGMA_PX = 2.0
IMAGE_PATTERN = re.compile(r"^(translated|micrograph)_(\d{3,})\.mrc$")


@dataclass
class MicrographSet:
    """Images of one folder in index order, with their masks and coordinate files when present."""

    folder: Path
    indices: list[str]
    images: list[np.ndarray]
    pixel_size: float
    masks: list[np.ndarray] | None
    coordinate_files: list[Path] | None


def read_micrograph_set(folder: Path) -> MicrographSet:
    if not folder.is_dir():
        raise InputError(folder, "micrograph folder does not exist")
    found = {}
    for path in folder.iterdir():
        match = IMAGE_PATTERN.match(path.name)
        if match:
            found.setdefault(match.group(2), {})[match.group(1)] = path
    if not found:
        raise InputError(folder, "no translated_NNN.mrc or micrograph_NNN.mrc micrographs")
    indices = sorted(found)
    # A scene folder holds micrograph_NNN only; a translate apply folder translated_NNN only.
    paths = [found[i].get("translated", found[i].get("micrograph")) for i in indices]
    images, pixels = zip(*(read_micrograph(p) for p in paths))
    masks = [folder / f"mask_{i}.mrc" for i in indices]
    coordinates = [folder / f"coords_{i}.star" for i in indices]
    return MicrographSet(folder, indices, list(images), float(pixels[0]),
                         [read_micrograph(m)[0] for m in masks] if all(m.exists() for m in masks) else None,
                         coordinates if all(c.exists() for c in coordinates) else None)


def grid_tiles(images: list[np.ndarray], size: int) -> torch.Tensor:
    """All non-overlapping (size, size) tiles of the images, (N, size, size)."""
    tiles = [image[y : y + size, x : x + size] for image in images
             for y in range(0, image.shape[0] - size + 1, size) for x in range(0, image.shape[1] - size + 1, size)]
    if not tiles:
        raise ValueError(f"no {size} px tile fits in images of {images[0].shape}")
    return torch.from_numpy(np.stack(tiles))


def tile_noise_power(tiles: torch.Tensor) -> np.ndarray:
    """Mean power |F|² per ring from DC to Nyquist (the project's noise power spectrum, corners dropped)."""
    return noise_power_spectrum(tiles)[:-1].numpy()


def mask_preservation(output: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    inside = mask > 0
    if not inside.any():
        return float("nan")
    smooth = lambda x: ndimage.gaussian_filter(x.astype(np.float64), LOW_PASS_SIGMA_PX)  # noqa: E731
    return float(np.corrcoef(smooth(output)[inside], smooth(clean)[inside])[0, 1])


def score_set(images: list[np.ndarray], real_tiles: torch.Tensor, config: MicrographScoreConfig,
              cleans: list[np.ndarray] | None = None, masks: list[np.ndarray] | None = None) -> MicrographScores:
    """Metrics of one standardised micrograph set against standardised real tiles."""
    tiles = grid_tiles(images, config.tile)
    n = min(len(tiles), len(real_tiles))
    if n < 8:
        raise ValueError(f"only {n} tiles of {config.tile} px per class; the classifier test needs at least 8")
    generator = torch.Generator().manual_seed(config.seed)
    fake = tiles[torch.randperm(len(tiles), generator=generator)[:n]]
    real = real_tiles[torch.randperm(len(real_tiles), generator=generator)[:n]]
    spread = classifier_auc_spread(fake, real, seed=config.seed,
                                   config=ClassifierConfig(steps=config.classifier_steps,
                                                           repeats=config.classifier_repeats))
    preservation = None
    if cleans is not None and masks is not None:
        preservation = float(np.nanmean([mask_preservation(o, c, m) for o, c, m in zip(images, cleans, masks)]))
    return MicrographScores(rpsd_l1=float(rpsd_distance(tiles, real_tiles)[0]), classifier_auc=spread.auc,
                            classifier_auc_std=spread.auc_std, classifier_aucs=spread.aucs, tiles_per_class=n,
                            noise_power=tile_noise_power(tiles).tolist(), mask_preservation=preservation)
