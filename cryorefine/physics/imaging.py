"""Image operations applied identically to simulated and raw particles: shifts, re-boxing, masks.

Every box keeps RELION's centre convention: the centre of an N box is pixel N//2, and the DFT
is taken after `ifftshift`, so Fourier crops and phase shifts keep the particle centred for even
and odd boxes alike.
"""

from __future__ import annotations

import math

import torch


def centring_shift(box: int) -> float:
    """The translation (pixels) that `fftshift` applies: folding it into a phase saves the copy."""
    return float(box // 2)


def translation_phase(shift_x: torch.Tensor, shift_y: torch.Tensor, box: int) -> torch.Tensor:
    """Phase factors (B, box, box//2+1) that translate images by (shift_x, shift_y) pixels.

    new(x) = old(x - shift): positive shifts move the content towards larger x / y. The factor is
    separable, so it is built from one row and one column per image.
    """
    ky = torch.fft.fftfreq(box, device=shift_x.device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box, device=shift_x.device, dtype=torch.float64)
    phase_x = -2.0 * math.pi * kx[None, :] * shift_x.double()[:, None]
    phase_y = -2.0 * math.pi * ky[None, :] * shift_y.double()[:, None]
    row = torch.polar(torch.ones_like(phase_x), phase_x).to(torch.complex64)
    column = torch.polar(torch.ones_like(phase_y), phase_y).to(torch.complex64)
    return column[:, :, None] * row[:, None, :]


def fourier_resize(images: torch.Tensor, new_box: int) -> torch.Tensor:
    """Fourier crop (bin) or pad images (B, N, N) to (B, M, M) keeping the centre and the mean.

    Changes the pixel size by N / M. Intensities are scaled so that a constant stays constant
    (the sum over the image scales by (M/N)², like RELION's rescaling in extraction).
    """
    box = images.shape[-1]
    if new_box == box:
        return images
    full = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images, dim=(-2, -1))), dim=(-2, -1))
    centre, new_centre = box // 2, new_box // 2
    if new_box < box:
        start = centre - new_centre
        cropped = full[..., start : start + new_box, start : start + new_box]
    else:
        cropped = torch.zeros((*images.shape[:-2], new_box, new_box), dtype=full.dtype, device=full.device)
        start = new_centre - centre
        cropped[..., start : start + box, start : start + box] = full
    out = torch.fft.ifft2(torch.fft.ifftshift(cropped, dim=(-2, -1))).real
    return torch.fft.fftshift(out, dim=(-2, -1)) * (new_box / box) ** 2


def window(images: torch.Tensor, new_box: int) -> torch.Tensor:
    """Real-space crop or zero-pad to (new_box, new_box) around the centre pixel N//2."""
    box = images.shape[-1]
    if new_box == box:
        return images
    out = torch.zeros((*images.shape[:-2], new_box, new_box), dtype=images.dtype, device=images.device)
    src0 = max(box // 2 - new_box // 2, 0)
    dst0 = max(new_box // 2 - box // 2, 0)
    n = min(box, new_box)
    out[..., dst0 : dst0 + n, dst0 : dst0 + n] = images[..., src0 : src0 + n, src0 : src0 + n]
    return out


def soft_circular_mask(box: int, radius_px: float, edge_px: float = 3.0, device=None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 inside the radius, a raised-cosine edge of `edge_px` beyond it, 0 outside (RELION's soft mask),
    computed in `dtype`. The soft edge keeps the mask's own boundary out of masked images' spectra."""
    coords = torch.arange(box, device=device, dtype=dtype) - box // 2
    radius = torch.sqrt(coords[:, None] ** 2 + coords[None, :] ** 2)
    ramp = torch.clamp((radius - radius_px) / max(edge_px, 1e-6), 0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * ramp))


def background_normalise(images: torch.Tensor, particle_mask: torch.Tensor) -> torch.Tensor:
    """Subtract the background mean and divide by the background std (RELION's normalisation).

    `particle_mask` (box, box) or (B, box, box) is ~1 on the particle; the background is where it
    is below 0.5.
    """
    background = (particle_mask < 0.5).expand_as(images).to(images.dtype)
    count = background.sum(dim=(-2, -1)).clamp(min=1.0)
    mean = (images * background).sum(dim=(-2, -1)) / count
    var = (((images - mean[..., None, None]) * background) ** 2).sum(dim=(-2, -1)) / count
    std = torch.sqrt(var).clamp(min=1e-12)
    return (images - mean[..., None, None]) / std[..., None, None]
