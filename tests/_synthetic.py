"""Synthetic particle sets for tests (no shared data needed), made by `cryorefine.synthetic`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorefine.io.star import write_particle_star
from cryorefine.synthetic import optics_table, random_particles


def varied_particles(n: int, box: int, pixel_size: float, seed: int = 0, stack: str = "particles.mrcs") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two optics groups; random poses, origins, astigmatism both ways, phase shift, B-factor."""
    rng = np.random.default_rng(seed)
    particles = random_particles(n, rng, stack, astigmatism=1500.0, origin_angstrom=8.0, defocus_angle=(-90.0, 180.0),
                                 optics_groups=2)
    particles["rlnPhaseShift"] = np.where(np.arange(n) % 3 == 0, rng.uniform(0, 90, n), 0.0)
    particles["rlnCtfBfactor"] = np.where(np.arange(n) % 2 == 0, rng.uniform(0, 150, n), 0.0)
    particles["rlnCtfScalefactor"] = np.ones(n)
    particles["rlnRandomSubset"] = 1 + (np.arange(n) // 2) % 2
    return optics_table(box, pixel_size, groups=2), particles


def write_map(path: Path, volume: np.ndarray, voxel_size: float) -> None:
    """A map written as given (NaN or a corrupt case too), not through the engine's checked writer."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(np.asarray(volume, dtype=np.float32))
        handle.voxel_size = voxel_size


def write_dataset(folder: Path, volume: np.ndarray, pixel_size: float, optics: pd.DataFrame, particles: pd.DataFrame,
                  images: np.ndarray, stack: str = "particles.mrcs") -> tuple[Path, Path]:
    """Write map.mrc, the stack and particles.star into `folder`; return (star, map) paths.

    The stack is written as given (a blank placeholder too), not through the engine's checked writer."""
    import mrcfile

    folder.mkdir(parents=True, exist_ok=True)
    write_map(folder / "map.mrc", volume, pixel_size)
    with mrcfile.new(folder / stack, overwrite=True) as handle:
        handle.set_data(images.astype(np.float32))
        handle.set_image_stack()
        handle.voxel_size = pixel_size
    write_particle_star(folder / "particles.star", optics, particles)
    return folder / "particles.star", folder / "map.mrc"
