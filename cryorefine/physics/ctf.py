"""RELION's CTF (src/ctf.cpp) through torch-ctf, with the conventions made exact.

torch-ctf takes mean defocus and half-astigmatism in µm and the U-axis angle from the image X
axis (the same angle as rlnDefocusAngle on an rfft grid, checked against RELION's formula in
the tests). Its pitfall: a negative astigmatism (DefocusU < DefocusV) returns NaN, so U and V
are swapped with the angle turned by 90°, which describes the same CTF.

`calculate_ctf_2d` rebuilds its frequency grid and polar coordinates on every call; for batches
of particles that share a box and pixel size the grid is built once here and torch-ctf's own
phase functions are called on it (the same numbers, several times faster).
"""

from __future__ import annotations

import functools

import torch
from torch_ctf._ctf_preparation import prepare_frequency_grid_2d
from torch_ctf.ctf_aberrations import apply_astigmatism_to_defocus
from torch_ctf.ctf_utils import calculate_total_phase_shift


def normalise_astigmatism(
    defocus_u: torch.Tensor, defocus_v: torch.Tensor, angle_deg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (U, V, angle) with U >= V describing the same CTF."""
    swap = defocus_u < defocus_v
    u = torch.where(swap, defocus_v, defocus_u)
    v = torch.where(swap, defocus_u, defocus_v)
    return u, v, torch.where(swap, angle_deg + 90.0, angle_deg)


def relion_ctf_rfft(
    defocus_u: torch.Tensor,
    defocus_v: torch.Tensor,
    defocus_angle: torch.Tensor,
    voltage_kv: torch.Tensor,
    cs_mm: torch.Tensor,
    amplitude_contrast: torch.Tensor,
    phase_shift_deg: torch.Tensor,
    bfactor: torch.Tensor,
    scale: torch.Tensor,
    pixel_size: float,
    box: int,
) -> torch.Tensor:
    """CTF on the non-fftshifted rfft grid of a (box, box) image, one per particle: (B, box, box//2+1).

    Defocus in Å (underfocus positive), angles and phase shift in degrees, B-factor in Å²;
    CTF = -sin(γ) · exp(-B u²/4) · scale, as RELION computes it.
    """
    u, v, angle = normalise_astigmatism(defocus_u, defocus_v, defocus_angle)
    grid, grid_squared = _frequency_grid(box, float(pixel_size), str(defocus_u.device))
    column = lambda values: values.to(torch.float32)[:, None, None]  # noqa: E731  (B,) -> (B, 1, 1)
    defocus_map = apply_astigmatism_to_defocus(
        defocus=column((u + v) / 2e4),
        astigmatism=((u - v) / 2e4).to(torch.float32),
        astigmatism_angle=angle.to(torch.float32),
        fft_freq_grid=grid,
        fft_freq_grid_squared=grid_squared,
    )
    gamma = calculate_total_phase_shift(
        defocus_um=defocus_map,
        voltage_kv=column(voltage_kv),
        spherical_aberration_mm=column(cs_mm),
        phase_shift_degrees=column(phase_shift_deg),
        amplitude_contrast_fraction=column(amplitude_contrast),
        fftfreq_grid_angstrom_squared=grid_squared,
    )
    envelope = torch.exp(-column(bfactor) / 4.0 * grid_squared)
    return -torch.sin(gamma) * envelope * column(scale)


@functools.lru_cache(maxsize=8)
def _frequency_grid(box: int, pixel_size: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """torch-ctf's rfft frequency grid (Å⁻¹) and its squared norm for one box and pixel size."""
    return prepare_frequency_grid_2d(image_shape=(box, box), pixel_size=pixel_size, rfft=True, fftshift=False,
                                     device=torch.device(device))
