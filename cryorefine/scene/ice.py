"""The ice layer: a thickness map (gradient + fractal Perlin noise), its projected potential and
the amplitude it lets through.

Thickness t(x) = mean · (1 + gradient · ramp(x)) + roughness · mean · n(x), with ramp(x) in
[-1/2, 1/2] across the field along a random direction and n(x) fractal Perlin noise of zero mean
and unit variance. The correlation length of n is the lag where its normalised autocorrelation
falls to 1/e; the Perlin lattice cell that gives a requested length was measured once
(`CELL_PER_CORRELATION_LENGTH`, checked by the tests). The map is shifted to the requested mean
after clipping at `MIN_THICKNESS_FRACTION` of it (holes in the ice are not modelled).

Physical constants (documented approximations, not fitted to data):
- `ICE_MEAN_INNER_POTENTIAL_V`: vitreous ice, about 4.5 V (published values roughly 3.5–5 V). The
  ice contributes V_ice · t(x) (V·Å) to the projected potential.
- Inelastic scattering removes electrons from the zero-loss (energy-filtered) image: the
  transmitted intensity falls as exp(-t / λ_in) (the amplitude as exp(-t / 2λ_in)). λ_in for
  vitreous ice is about 3,500 Å at 300 kV (measurements 3,000–4,000 Å); `DEFAULT_INELASTIC_MFP_A`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ICE_MEAN_INNER_POTENTIAL_V = 4.5
DEFAULT_INELASTIC_MFP_A = 3500.0
MIN_THICKNESS_FRACTION = 0.2
OCTAVES = 3
PERSISTENCE = 0.5  # amplitude ratio of successive octaves (each has half the cell size)
CELL_PER_CORRELATION_LENGTH = 2.63  # Perlin base cell / 1/e correlation length of the fractal sum


@dataclass(frozen=True)
class IceConfig:
    mean_thickness_a: float = 300.0
    correlation_length_a: float = 1000.0
    roughness: float = 0.1  # std of the noise term as a fraction of the mean thickness
    gradient: float = 0.2  # thickness change across the field as a fraction of the mean
    inelastic_mfp_a: float = DEFAULT_INELASTIC_MFP_A


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(size: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """One octave of gradient (Perlin) noise on a (size, size) grid with lattice cell `cell` pixels."""
    cells = int(math.ceil(size / cell)) + 2
    angles = rng.uniform(0, 2 * math.pi, (cells + 1, cells + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)
    offset = rng.uniform(0, 1, 2)  # the lattice does not start on pixel 0
    coords = (np.arange(size, dtype=np.float32) / cell)
    x = coords[None, :] + np.float32(offset[0])
    y = coords[:, None] + np.float32(offset[1])
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0

    def corner(dx: int, dy: int) -> np.ndarray:
        g = gradients[y0 + dy, x0 + dx]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) + u * (corner(1, 0) - corner(0, 0))
    bottom = corner(0, 1) + u * (corner(1, 1) - corner(0, 1))
    return top + v * (bottom - top)


def fractal_noise(size: int, correlation_length_px: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of Perlin octaves, zero mean and unit variance, with the requested 1/e correlation length."""
    base_cell = CELL_PER_CORRELATION_LENGTH * correlation_length_px
    total = np.zeros((size, size), dtype=np.float32)
    for octave in range(OCTAVES):
        total += PERSISTENCE**octave * perlin_noise(size, max(base_cell / 2**octave, 1.0), rng)
    total -= total.mean()
    return total / max(float(total.std()), 1e-12)


def thickness_map(size: int, pixel_size: float, config: IceConfig, rng: np.random.Generator) -> np.ndarray:
    """Ice thickness (Å) per pixel, mean exactly `config.mean_thickness_a`."""
    noise = fractal_noise(size, config.correlation_length_a / pixel_size, rng)
    direction = rng.uniform(0, 2 * math.pi)
    coords = np.arange(size, dtype=np.float32) / max(size - 1, 1) - 0.5
    ramp = math.cos(direction) * coords[None, :] + math.sin(direction) * coords[:, None]
    ramp /= max(float(np.abs(ramp).max()) * 2, 1e-12)  # [-1/2, 1/2] across the field
    mean = config.mean_thickness_a
    thickness = mean * (1 + config.gradient * ramp) + config.roughness * mean * noise
    floor = MIN_THICKNESS_FRACTION * mean
    for _ in range(20):  # clip, then restore the mean; converges in a few rounds
        thickness = np.maximum(thickness, floor)
        thickness += mean - float(thickness.mean())
        if thickness.min() >= floor - 1e-3 * mean:
            break
    # A very rough or steep layer may not settle in those rounds: never a thickness below the floor
    # (a negative one would amplify the beam), at the cost of a mean slightly above the asked one.
    return np.maximum(thickness, floor).astype(np.float32)


def ice_projected_potential(thickness: np.ndarray) -> np.ndarray:
    """The ice's projected potential (V·Å)."""
    return ICE_MEAN_INNER_POTENTIAL_V * thickness


def zero_loss_fraction(thickness: np.ndarray, inelastic_mfp_a: float) -> np.ndarray:
    """Fraction of the beam left in the zero-loss image after inelastic scattering, exp(-t/λ_in)."""
    return np.exp(-thickness / inelastic_mfp_a)


def correlation_length(field: np.ndarray) -> float:
    """The lag (pixels) where the field's radially averaged, normalised autocorrelation first drops below 1/e."""
    centred = field - field.mean()
    size = centred.shape[0]
    padded = np.zeros((2 * size, 2 * size))
    padded[:size, :size] = centred
    spectrum = np.fft.rfft2(padded)
    auto = np.fft.irfft2(np.abs(spectrum) ** 2, s=padded.shape)
    overlap = np.fft.irfft2(np.abs(np.fft.rfft2(np.pad(np.ones((size, size)), ((0, size), (0, size))))) ** 2,
                            s=padded.shape)
    auto = auto / np.maximum(overlap, 1.0)  # unbiased: mean product over the overlapping pixels
    auto /= auto[0, 0]
    lags = np.fft.fftfreq(2 * size, 1 / (2 * size))
    radius = np.hypot(lags[:, None], lags[None, :])
    ring = np.round(radius).astype(int)
    keep = ring < size // 2
    profile = np.bincount(ring[keep], weights=auto[keep]) / np.bincount(ring[keep])
    below = np.flatnonzero(profile < 1 / math.e)
    if len(below) == 0:
        return float("inf")
    k = below[0]  # interpolate between k-1 and k
    return float(k - 1 + (profile[k - 1] - 1 / math.e) / (profile[k - 1] - profile[k]))
