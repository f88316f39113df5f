"""Radially averaged log power spectra (RPSD): the one implementation used by the loss and the metrics.

s(x)[k] = mean over the k-th ring of log(1 + |F(x)|²), with F the orthonormal 2D DFT (so
white noise of variance σ² has |F|² ≈ σ² whatever the box) and rings over the normalised
radius r = |f| / f_Nyquist in [0, 1]. Differentiable: written in torch, no detaching.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=32)
def ring_indices(height: int, width: int, n_bins: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ring index of every rfft coefficient and the number of coefficients per ring."""
    fy = torch.fft.fftfreq(height, device=device)
    fx = torch.fft.rfftfreq(width, device=device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5
    ring = torch.clamp((radius * n_bins).long(), max=n_bins)  # bin n_bins collects the corners
    counts = torch.bincount(ring.flatten(), minlength=n_bins + 1).to(torch.float32)
    return ring.flatten(), counts


def default_bins(box: int) -> int:
    return box // 2


def radial_log_power(images: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """RPSD of images (..., H, W) -> (..., n_bins), rings from DC to Nyquist.

    The rfft half-plane is used; every ring is symmetric under f -> -f, so its mean is
    the same as over the full plane.
    """
    height, width = images.shape[-2:]
    n_bins = n_bins or default_bins(min(height, width))
    spectrum = torch.fft.rfft2(images.float(), norm="ortho")
    log_power = torch.log1p(spectrum.real**2 + spectrum.imag**2)
    ring, counts = ring_indices(height, width, n_bins, str(images.device))
    flat = log_power.reshape(-1, ring.numel())
    sums = torch.zeros(flat.shape[0], n_bins + 1, device=images.device, dtype=flat.dtype)
    sums = sums.index_add(1, ring, flat)
    rpsd = sums[:, :n_bins] / counts[:n_bins]
    return rpsd.reshape(*images.shape[:-2], n_bins)


def rpsd_distance(fake: torch.Tensor, real: torch.Tensor, n_bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and MSE between the batch-mean RPSDs of two image sets (..., H, W)."""
    s_fake = radial_log_power(fake, n_bins).reshape(-1, n_bins or default_bins(min(fake.shape[-2:])))
    s_real = radial_log_power(real, n_bins).reshape(-1, s_fake.shape[-1])
    diff = s_fake.mean(0) - s_real.mean(0)
    return diff.abs().mean(), (diff**2).mean()
