"""Small synthetic maps and particle STAR files for tests (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorefine.io.star import write_particle_star


def blob_map(size: int, seed: int = 0, n_blobs: int = 12) -> np.ndarray:
    """An asymmetric map of Gaussian blobs, so that every pose and shift error shows."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size) - size // 2
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    volume = np.zeros((size,) * 3, dtype=np.float32)
    for _ in range(n_blobs):
        centre = rng.uniform(-size / 5, size / 5, 3)
        width = rng.uniform(size / 24, size / 10)
        volume += rng.uniform(0.5, 1.5) * np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * width**2))
    return volume


def varied_particles(n: int, box: int, pixel_size: float, seed: int = 0, stack: str = "particles.mrcs") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two optics groups; random poses, origins, astigmatism both ways, phase shift, B-factor."""
    rng = np.random.default_rng(seed)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1, 2],
            "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
            "rlnVoltage": [300.0, 200.0],
            "rlnSphericalAberration": [2.7, 1.4],
            "rlnAmplitudeContrast": [0.1, 0.07],
            "rlnImagePixelSize": [pixel_size, pixel_size],
            "rlnImageSize": [box, box],
            "rlnImageDimensionality": [2, 2],
        }
    )
    defocus_u = rng.uniform(8000, 25000, n)
    astig = rng.uniform(-1500, 1500, n)  # negative: DefocusU < DefocusV
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
            "rlnAngleRot": rng.uniform(-180, 180, n),
            "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))),
            "rlnAnglePsi": rng.uniform(-180, 180, n),
            "rlnOriginXAngst": rng.uniform(-8, 8, n),
            "rlnOriginYAngst": rng.uniform(-8, 8, n),
            "rlnDefocusU": defocus_u,
            "rlnDefocusV": defocus_u - astig,
            "rlnDefocusAngle": rng.uniform(-90, 180, n),
            "rlnPhaseShift": np.where(np.arange(n) % 3 == 0, rng.uniform(0, 90, n), 0.0),
            "rlnCtfBfactor": np.where(np.arange(n) % 2 == 0, rng.uniform(0, 150, n), 0.0),
            "rlnCtfScalefactor": np.ones(n),
            "rlnOpticsGroup": 1 + (np.arange(n) % 2),
            "rlnRandomSubset": 1 + (np.arange(n) // 2) % 2,
        }
    )
    return optics, particles


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
