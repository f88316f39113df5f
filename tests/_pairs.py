"""A tiny synthetic paired set on disk, shaped like `cryorefine simulate`'s output.

sim: smooth blobs seen through a CTF-like ring filter, on raw's intensity scale (SNR ~0.1).
raw: sim + coloured, skewed (non-Gaussian) noise with background std ~1. The noise is what a
model must learn: a white Gaussian baseline gets its spectrum wrong, the sim has none of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorefine.io.mrc import StackWriter
from cryorefine.io.star import write_particle_star

PIXEL_SIZE = 2.0


def _frequency_radius(box: int) -> np.ndarray:
    f = np.fft.fftfreq(box)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def clean_images(rng: np.random.Generator, n: int, box: int) -> np.ndarray:
    """Blob particles through a CTF-like filter -sin(k r²) with a random 'defocus' k."""
    yy, xx = np.mgrid[:box, :box] - box / 2
    radius = _frequency_radius(box)
    images = np.empty((n, box, box), dtype=np.float32)
    for i in range(n):
        density = np.zeros((box, box))
        for _ in range(6):
            cy, cx = rng.normal(0, box / 10, size=2)
            width = rng.uniform(box / 20, box / 10)
            density += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        ctf = -np.sin(rng.uniform(150, 350) * radius**2 + 0.1)
        images[i] = np.fft.ifft2(np.fft.fft2(density) * ctf).real
    return images / images.std() * np.sqrt(0.1)  # SNR 0.1 against unit-variance noise


def coloured_skewed_noise(rng: np.random.Generator, n: int, box: int) -> np.ndarray:
    """Centred exponential noise (skew 2) shaped by a low-pass envelope, std 1."""
    white = rng.exponential(size=(n, box, box)) - 1.0
    envelope = 0.3 + np.exp(-((_frequency_radius(box) / 0.2) ** 2))
    noise = np.fft.ifft2(np.fft.fft2(white) * envelope).real
    return (noise / noise.std()).astype(np.float32)


def _write_stack(path: Path, images: np.ndarray) -> None:
    with StackWriter(path, len(images), images.shape[-1], PIXEL_SIZE) as writer:
        writer.write(0, images)


def _star_tables(n: int, stack: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnAmplitudeContrast": [0.1],
        "rlnSphericalAberration": [2.7], "rlnVoltage": [300.0], "rlnImagePixelSize": [PIXEL_SIZE],
        "rlnImageSize": [0], "rlnImageDimensionality": [2],
    })
    defocus = rng.uniform(8000, 25000, n)
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
        "rlnAngleRot": rng.uniform(-180, 180, n), "rlnAngleTilt": rng.uniform(0, 180, n),
        "rlnAnglePsi": rng.uniform(-180, 180, n), "rlnOriginXAngst": np.zeros(n), "rlnOriginYAngst": np.zeros(n),
        "rlnDefocusU": defocus, "rlnDefocusV": defocus + 200.0, "rlnDefocusAngle": rng.uniform(0, 180, n),
        "rlnOpticsGroup": np.ones(n, dtype=int),
    })
    return optics, particles


def make_pairs(folder: Path, n: int = 64, box: int = 32, seed: int = 0) -> Path:
    """Write folder/{sim,raw}.{star,mrcs}; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sim = clean_images(rng, n, box)
    raw = sim + coloured_skewed_noise(rng, n, box)
    optics, particles = _star_tables(n, "sim.mrcs", rng)
    optics["rlnImageSize"] = box
    for name, images in (("sim", sim), ("raw", raw)):
        _write_stack(folder / f"{name}.mrcs", images)
        rows = particles.copy()
        rows["rlnImageName"] = [f"{i + 1:06d}@{name}.mrcs" for i in range(n)]
        write_particle_star(folder / f"{name}.star", optics, rows)
    return folder
