"""Synthetic particles with known ground truth, the one builder for `cryorefine bench`, the demo and the
tests: a map of Gaussian blobs, optics groups, particle rows with random poses, origins and CTFs, and a
micrograph of blobs with its particle mask."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryorefine.artifacts import ParticlesFolder

# Voltage (kV), spherical aberration (mm) and amplitude contrast of optics groups 1 and 2.
OPTICS_GROUPS = ((300.0, 2.7, 0.1), (200.0, 1.4, 0.07))


def blob_map(size: int, seed: int | np.random.Generator = 0, n_blobs: int = 12,
             widths_px: tuple[float, float] | None = None,
             amplitudes: tuple[float, float] | None = (0.5, 1.5)) -> np.ndarray:
    """An asymmetric map (size,)*3 of Gaussian blobs, so that every pose and shift error shows.

    `seed` may be a generator, drawn from in place; blob widths are uniform in `widths_px` (default
    size/24 to size/10) and amplitudes in `amplitudes` (all 1 when None, with nothing drawn).
    """
    rng = np.random.default_rng(seed)
    low, high = widths_px or (size / 24, size / 10)
    grid = np.arange(size) - size // 2
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    volume = np.zeros((size,) * 3, dtype=np.float32)
    for _ in range(n_blobs):
        centre, width = rng.uniform(-size / 5, size / 5, 3), rng.uniform(low, high)
        blob = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * width**2))
        volume += blob if amplitudes is None else rng.uniform(*amplitudes) * blob
    return volume


def blob_micrograph(size: int, dose_per_pixel: float, seed: int = 0, width_px: float = 6.0,
                    per_million_px: int = 500, contrast: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(expected counts, particle mask) of a size² micrograph of Gaussian particles at random places:
    the counts dip by `contrast` at a particle's centre; the mask is where a particle dips them by 2 % or more."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    spikes = np.zeros((size, size))
    spikes[tuple(rng.integers(0, size, (2, max(1, size**2 * per_million_px // 10**6))))] = 2 * np.pi * width_px**2
    blobs = gaussian_filter(spikes, width_px)  # unit-height Gaussians
    return ((dose_per_pixel * (1 - contrast * blobs)).astype(np.float32),
            (contrast * blobs >= 0.02).astype(np.float32))


def optics_table(box: int, pixel_size: float, groups: int = 1) -> pd.DataFrame:
    """The first `groups` (1 or 2) of OPTICS_GROUPS as a RELION optics table."""
    voltage, cs, amplitude_contrast = zip(*OPTICS_GROUPS[:groups])
    return pd.DataFrame({
        "rlnOpticsGroup": list(range(1, groups + 1)),
        "rlnOpticsGroupName": [f"opticsGroup{g}" for g in range(1, groups + 1)],
        "rlnVoltage": list(voltage),
        "rlnSphericalAberration": list(cs),
        "rlnAmplitudeContrast": list(amplitude_contrast),
        "rlnImagePixelSize": [pixel_size] * groups,
        "rlnImageSize": [box] * groups,
        "rlnImageDimensionality": [2] * groups,
    })


def random_particles(n: int, rng: np.random.Generator, stack: str = ParticlesFolder.PARTICLES_STACK, *,
                     defocus: tuple[float, float] = (8000.0, 25000.0), astigmatism: float = 800.0,
                     origin_angstrom: float = 5.0, defocus_angle: tuple[float, float] = (0.0, 180.0),
                     optics_groups: int = 1) -> pd.DataFrame:
    """n particle rows of `stack`: uniform random poses, origins uniform within ±`origin_angstrom`,
    defocus U uniform in `defocus` and V within ±`astigmatism` of it, optics groups taken in turn."""
    defocus_u = rng.uniform(*defocus, n)
    return pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
        "rlnAngleRot": rng.uniform(-180, 180, n),
        "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnOriginXAngst": rng.uniform(-origin_angstrom, origin_angstrom, n),
        "rlnOriginYAngst": rng.uniform(-origin_angstrom, origin_angstrom, n),
        "rlnDefocusU": defocus_u,
        "rlnDefocusV": defocus_u - rng.uniform(-astigmatism, astigmatism, n),
        "rlnDefocusAngle": rng.uniform(*defocus_angle, n),
        "rlnOpticsGroup": 1 + np.arange(n) % optics_groups,
    })
