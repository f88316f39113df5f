"""Render a micrograph: particles' projected potential, ice, CTF, inelastic attenuation, dose, MTF.

Image formation (weak phase object, energy-filtered zero-loss image):
  φ(x) = σ · [V_ice·t(x) + Σ_particles P(V_particle)](x)          phase, σ the interaction constant
  c(x) = IFT[ CTF(k) · FT[φ − mean φ] ](x)                          RELION's CTF, amplitude contrast included;
                                                                    FFTs on a mirror-padded field (no edge ringing)
  I(x) = exp(−t(x)/λ_in) · (1 − 2·c(x))                             protein dark, as in a raw micrograph
  clean = MTF ⊛ (D·I),  micrograph = MTF ⊛ Poisson(D·I)             D = dose per pixel (e⁻)
RELION's CTF is −sin γ with γ < 0 in the first lobe of an underfocused image, i.e. positive:
RELION images are contrast-inverted (protein white), so the raw intensity takes 1 − 2c. The CTF
is applied once over the whole micrograph (one defocus per micrograph), so every particle's
recorded defocus is exactly the one that was simulated. The mean phase is dropped: a constant
phase does not change the intensity.

Each particle's projection is the project's RELION projector (`ForwardModel` without CTF) at a
random pose; the fractional part of its centre goes into the origin shift, so coordinates are exact.
The detector MTF "sinc" is that of ideal square pixels, sinc(f_x)·sinc(f_y) with f in cycles/pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from cryorefine.io.star import ParticleParameters
from cryorefine.physics.ctf import relion_ctf_rfft
from cryorefine.physics.forward import ForwardModel
from cryorefine.scene.ice import ice_projected_potential, zero_loss_fraction
from cryorefine.scene.optics import MTF_KINDS, Defocus, Optics
from cryorefine.scene.species import Species

MASK_FRACTION = 0.1  # a particle's mask: its projection above this fraction of its maximum (see particle_support)


@dataclass
class PlacedParticles:
    """Per-particle ground truth: centre (x, y) in pixels, species index, RELION angles (degrees)."""

    positions: np.ndarray  # (n, 2)
    species: np.ndarray  # (n,) int
    rot: np.ndarray
    tilt: np.ndarray
    psi: np.ndarray


def interaction_constant(voltage_kv: float) -> float:
    """σ (rad / (V·Å)), relativistic: 2π/(λV) · (m₀c² + eV)/(2m₀c² + eV)."""
    volts = voltage_kv * 1e3
    wavelength = 12.2643 / math.sqrt(volts * (1 + 0.978466e-6 * volts))
    rest = 510998.95
    return 2 * math.pi / (wavelength * volts) * (rest + volts) / (2 * rest + volts)


def _poses_as_parameters(rot, tilt, psi, origin_x, origin_y, pixel_size: float) -> ParticleParameters:
    n = len(rot)
    zeros, ones = np.zeros(n), np.ones(n)
    return ParticleParameters(rot=rot, tilt=tilt, psi=psi, origin_x_angst=origin_x, origin_y_angst=origin_y,
                              defocus_u=zeros, defocus_v=zeros, defocus_angle=zeros, phase_shift=zeros,
                              bfactor=zeros, ctf_scale=ones, voltage=ones * 300, cs=zeros, amplitude_contrast=zeros,
                              pixel_size=ones * pixel_size, optics_group=ones.astype(int),
                              random_subset=zeros.astype(int))


def particle_potential(species: list[Species], particles: PlacedParticles, size: int,
                       device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Projected particle potential (V·Å) of the field and its label mask (0 background, i+1 particle i)."""
    potential = np.zeros((size, size), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.int32)
    for index, kind in enumerate(species):
        rows = np.flatnonzero(particles.species == index)
        if len(rows) == 0:
            continue
        whole = np.floor(particles.positions[rows]).astype(int)
        fraction = particles.positions[rows] - whole
        # The origin moves the particle to −origin from the box centre: −fraction moves it by +fraction.
        params = _poses_as_parameters(particles.rot[rows], particles.tilt[rows], particles.psi[rows],
                                      -fraction[:, 0] * kind.pixel_size, -fraction[:, 1] * kind.pixel_size,
                                      kind.pixel_size)
        model = ForwardModel(kind.volume, kind.pixel_size, device=device, apply_ctf=False)
        with torch.no_grad():
            projections = model.simulate(params).cpu().numpy() * kind.pixel_size  # voxel sums -> V·Å
        for row, (x, y), image in zip(rows, whole, projections):
            _paste(potential, labels, image, x, y, row + 1)
    return potential, labels


def _paste(potential: np.ndarray, labels: np.ndarray, image: np.ndarray, x: int, y: int, label: int) -> None:
    box, size = image.shape[-1], potential.shape[0]
    top, left = y - box // 2, x - box // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + box, size), min(left + box, size)
    if y1 <= y0 or x1 <= x0:
        return
    window = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    potential[y0:y1, x0:x1] += image[window]
    inside = particle_support(image)[window] & (labels[y0:y1, x0:x1] == 0)
    labels[y0:y1, x0:x1][inside] = label


def particle_support(projection: np.ndarray) -> np.ndarray:
    """One solid blob per particle: the largest connected region above MASK_FRACTION of the maximum, holes filled."""
    regions, count = ndimage.label(projection > MASK_FRACTION * float(projection.max()))
    if count == 0:
        return np.zeros(projection.shape, dtype=bool)
    largest = 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    return ndimage.binary_fill_holes(regions == largest)


def detector_mtf(size: int, kind: str) -> np.ndarray:
    """MTF on the (size, size//2+1) rfft grid."""
    if kind == "none":
        return np.ones((size, size // 2 + 1), dtype=np.float32)
    if kind == "sinc":
        fy = np.fft.fftfreq(size)[:, None]
        fx = np.fft.rfftfreq(size)[None, :]
        return (np.sinc(fy) * np.sinc(fx)).astype(np.float32)
    raise ValueError(f"unknown MTF {kind!r}; choose from {', '.join(MTF_KINDS)}")


def ctf_on_field(size: int, pixel_size: float, defocus: Defocus, optics: Optics) -> np.ndarray:
    """RELION's CTF on the micrograph's rfft grid (the CTF is real and even, so no centring is needed)."""
    one = lambda value: torch.tensor([float(value)])  # noqa: E731
    ctf = relion_ctf_rfft(defocus_u=one(defocus.u_a), defocus_v=one(defocus.v_a), defocus_angle=one(defocus.angle_deg),
                          voltage_kv=one(optics.voltage_kv), cs_mm=one(optics.cs_mm),
                          amplitude_contrast=one(optics.amplitude_contrast), phase_shift_deg=one(0.0),
                          bfactor=one(optics.bfactor), scale=one(1.0), pixel_size=pixel_size, box=size)
    return ctf[0].numpy()


def _filter_padded(image: np.ndarray, transfer: Callable[[int], np.ndarray]) -> np.ndarray:
    """Multiply in Fourier space by transfer(padded_size) on a mirror-padded copy, then crop.

    A micrograph is not periodic (an ice gradient, particles near an edge): a plain FFT would wrap
    one edge onto the other and the CTF would ring along the borders.
    """
    size = image.shape[0]
    pad = size // 4
    padded = np.pad(image, pad, mode="reflect")
    n = padded.shape[0]
    filtered = np.fft.irfft2(np.fft.rfft2(padded) * transfer(n), s=(n, n))
    return filtered[pad : pad + size, pad : pad + size]


def form_image(particle_potential_va: np.ndarray, thickness: np.ndarray, pixel_size: float, defocus: Defocus,
               optics: Optics, inelastic_mfp_a: float, dose_per_a2: float | None, mtf: str,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean, micrograph): expected counts per pixel and a Poisson draw, both through the MTF.

    Without a dose (None or 0) the images are the transmitted intensity (1 = no specimen) and equal.
    """
    phase = interaction_constant(optics.voltage_kv) * (particle_potential_va + ice_projected_potential(thickness))
    contrast = _filter_padded(phase - phase.mean(), lambda n: ctf_on_field(n, pixel_size, defocus, optics))
    intensity = zero_loss_fraction(thickness, inelastic_mfp_a) * (1 - 2 * contrast)
    blur = lambda image: _filter_padded(image, lambda n: detector_mtf(n, mtf)).astype(np.float32)  # noqa: E731
    if not dose_per_a2:
        clean = blur(intensity)
        return clean, clean.copy()
    expected = np.clip(intensity, 0, None) * dose_per_a2 * pixel_size**2
    return blur(expected), blur(rng.poisson(expected).astype(np.float64))
