"""The two domains as standardised images and random tiles.

Domain A: clean synthetic micrographs (`clean_NNN.mrc`) with their particle masks
(`mask_NNN.mrc`) from `cryorefine scene`. Domain B: a real micrograph, Fourier-cropped to the
synthetic pixel size, with one vertical strip (the last `holdout_fraction` of the columns) kept
out of training for evaluation. Each domain is standardised by one mean and std over all its
training pixels (not per tile), so contrast differences between tiles survive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cryorefine.errors import InputError
from cryorefine.io.mrc import read_micrograph
from cryorefine.normalisation import Normalisation
from cryorefine.physics.imaging import fourier_resize


def domain_normalisation(images: list[np.ndarray]) -> Normalisation:
    """One mean and std over all of a domain's pixels (a constant domain gets std 1e-12, not a division by 0)."""
    measured = Normalisation.of(images)
    return Normalisation(measured.mean, max(measured.std, 1e-12))


def standardise(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the whole micrograph (each one by itself: units differ)."""
    return domain_normalisation([image]).forward(image)


def real_micrograph(path: Path, pixel_size: float, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training part, held-out strip) of a real micrograph resampled to `pixel_size` (square crop)."""
    image, pixel = read_micrograph(path)
    if pixel <= 0:
        raise InputError(path, "pixel size missing from the header")
    side = min(image.shape)
    image = image[:side, :side]
    new_side = int(round(side * pixel / pixel_size)) // 2 * 2
    if new_side > side:
        raise InputError(path, f"pixel size {pixel:.3f} Å is coarser than the synthetic {pixel_size:.3f} Å")
    resampled = fourier_resize(torch.from_numpy(image)[None].double(), new_side)[0].float().numpy()
    split = int(round(new_side * (1 - holdout_fraction)))
    parts = resampled[:, :split], resampled[:, split:]
    if not all(part.size and part.std() > 0 for part in parts):
        raise InputError(path, "a part of the micrograph is empty or constant: nothing to learn or measure")
    return parts


def synthetic_scenes(scene_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Clean micrographs, their binary masks and the pixel size from a `cryorefine scene` folder."""
    cleans = sorted(scene_dir.glob("clean_*.mrc"))
    if not cleans:
        raise InputError(scene_dir, "no clean_NNN.mrc micrographs (run cryorefine scene first)")
    images, masks, pixel = [], [], 0.0
    for clean in cleans:
        mask_path = clean.with_name(clean.name.replace("clean_", "mask_"))
        if not mask_path.exists():
            raise InputError(mask_path, "particle mask missing for " + clean.name)
        image, pixel = read_micrograph(clean)
        images.append(image)
        masks.append((read_micrograph(mask_path)[0] > 0).astype(np.float32))
    return images, masks, pixel


def random_tiles(images: list[np.ndarray], size: int, count: int, rng: np.random.Generator,
                 masks: list[np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`count` random (size, size) tiles (count, 1, size, size), and the same tiles of the masks."""
    tiles, mask_tiles = [], []
    for _ in range(count):
        k = int(rng.integers(len(images)))
        height, width = images[k].shape
        if height < size or width < size:
            raise ValueError(f"tile {size} is larger than an image of {height}x{width}")
        y, x = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        tiles.append(images[k][y : y + size, x : x + size])
        if masks is not None:
            mask_tiles.append(masks[k][y : y + size, x : x + size])
    stack = torch.from_numpy(np.stack(tiles))[:, None]
    return stack, (torch.from_numpy(np.stack(mask_tiles))[:, None] if masks is not None else None)
