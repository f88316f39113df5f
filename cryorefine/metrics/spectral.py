"""Spectral realism metrics: RPSD distances (whole image, inside and outside a particle mask),
paired Fourier ring correlation with the clean simulation, and noise power spectra.

RPSD distances go through `cryorefine.spectra.rpsd_distance`, the implementation the loss uses;
rings here are the same rings (normalised radius, DC to Nyquist, corners in one extra bin).
"""

from __future__ import annotations

import torch

from cryorefine.spectra import ring_indices, default_bins, radial_log_power, rpsd_distance

def ring_sum(values: torch.Tensor, n_bins: int, height: int, width: int) -> torch.Tensor:
    """Sum of rfft-grid values (..., H, W//2+1) over each ring -> (..., n_bins + 1); last bin = corners."""
    ring, counts = ring_indices(height, width, n_bins, str(values.device))
    flat = values.reshape(-1, ring.numel())
    sums = torch.zeros(flat.shape[0], n_bins + 1, dtype=flat.dtype, device=values.device)
    return sums.index_add(1, ring, flat).reshape(*values.shape[:-2], n_bins + 1)


def noise_power_spectrum(residuals: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """Mean |F|² per ring (orthonormal DFT) of residual images (N, H, W) -> (n_bins + 1,), float64.

    Bins 0..n_bins-1 run from DC to Nyquist, bin n_bins holds the corners beyond Nyquist. The
    set's mean is removed first (per-image offsets stay: they are noise at DC). With the
    orthonormal DFT, white noise of variance σ² gives σ² in every ring, and the count-weighted
    mean over all bins is the residuals' variance.
    """
    height, width = residuals.shape[-2:]
    n_bins = n_bins or default_bins(min(height, width))
    centred = residuals.double() - residuals.double().mean()
    spectrum = torch.fft.rfft2(centred, norm="ortho")
    power = ring_sum(spectrum.real**2 + spectrum.imag**2, n_bins, height, width).sum(0)
    _, counts = ring_indices(height, width, n_bins, str(residuals.device))
    return power / (counts.double() * residuals.shape[0])


def fourier_ring_correlation(images: torch.Tensor, references: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """Set-level FRC of paired images (N, H, W) with references (N, H, W) -> (n_bins,), DC to Nyquist.

    Cross and auto powers are summed over every image before dividing, which gives a stable
    estimate of the spectral signal-to-noise ratio shared by the set (SSNR = FRC / (1 - FRC)).
    """
    height, width = images.shape[-2:]
    n_bins = n_bins or default_bins(min(height, width))
    f1 = torch.fft.rfft2(images.double(), norm="ortho")
    f2 = torch.fft.rfft2(references.double(), norm="ortho")
    cross = ring_sum((f1 * f2.conj()).real, n_bins, height, width).sum(0)
    p1 = ring_sum(f1.real**2 + f1.imag**2, n_bins, height, width).sum(0)
    p2 = ring_sum(f2.real**2 + f2.imag**2, n_bins, height, width).sum(0)
    frc = cross / torch.sqrt(p1 * p2).clamp_min(1e-30)
    return frc[:n_bins]


def rpsd_metrics(fake: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """RPSD L1 / MSE between fake and raw on whole images, inside the soft mask and outside it."""
    result = {}
    for region, weight in (("", None), ("inside_", mask), ("outside_", 1 - mask)):
        a, b = (fake, raw) if weight is None else (fake * weight, raw * weight)
        l1, mse = rpsd_distance(a, b)
        result[f"{region}l1"] = float(l1)
        result[f"{region}mse"] = float(mse)
    return result


def mean_rpsd(images: torch.Tensor) -> torch.Tensor:
    """Set-mean RPSD curve (n_bins,) for plots and reports."""
    return radial_log_power(images).reshape(-1, default_bins(min(images.shape[-2:]))).mean(0)


def ring_radii(box: int) -> torch.Tensor:
    """Normalised radius (fraction of Nyquist) of each ring's centre, (box // 2,)."""
    n_bins = default_bins(box)
    return (torch.arange(n_bins, dtype=torch.float64) + 0.5) / n_bins
