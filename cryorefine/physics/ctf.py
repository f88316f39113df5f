"""RELION's CTF (src/ctf.cpp) through torch-ctf, with the conventions made exact.

torch-ctf takes mean defocus and half-astigmatism in µm and the U-axis angle from the image X
axis (the same angle as rlnDefocusAngle on an rfft grid, checked against RELION's formula in
the tests). Its pitfall: a negative astigmatism (DefocusU < DefocusV) returns NaN, so U and V
are swapped with the angle turned by 90°, which describes the same CTF.
"""

from __future__ import annotations

import torch
from torch_ctf import calculate_ctf_2d


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
    pixel_size: torch.Tensor,
    box: int,
) -> torch.Tensor:
    """CTF on the non-fftshifted rfft grid of a (box, box) image, one per particle: (B, box, box//2+1).

    Defocus in Å (underfocus positive), angles and phase shift in degrees, B-factor in Å²;
    CTF = -sin(γ) · exp(-B u²/4) · scale, as RELION computes it.
    """
    u, v, angle = normalise_astigmatism(defocus_u, defocus_v, defocus_angle)
    ctf = calculate_ctf_2d(
        defocus=(u + v) / 2e4,
        astigmatism=(u - v) / 2e4,
        astigmatism_angle=angle,
        voltage=voltage_kv,
        spherical_aberration=cs_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift=phase_shift_deg,
        pixel_size=pixel_size,
        image_shape=(box, box),
        rfft=True,
        fftshift=False,
    )
    freq_sq = rfft_frequency_squared(box, pixel_size)
    envelope = torch.exp(-bfactor[:, None, None] / 4.0 * freq_sq)
    return ctf * envelope * scale[:, None, None]


def rfft_frequency_squared(box: int, pixel_size: torch.Tensor) -> torch.Tensor:
    """|k|² in Å⁻² on the rfft grid, (B, box, box//2+1) for per-particle pixel sizes (B,)."""
    device = pixel_size.device
    ky = torch.fft.fftfreq(box, device=device)[:, None]
    kx = torch.fft.rfftfreq(box, device=device)[None, :]
    return (ky**2 + kx**2)[None] / pixel_size[:, None, None] ** 2
