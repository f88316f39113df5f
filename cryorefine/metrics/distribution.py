"""Pixel-level realism metrics: paired errors, value-histogram distance and moments."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import wasserstein_distance


def paired_pixel_errors(fake: torch.Tensor, raw: torch.Tensor) -> dict[str, float]:
    """Mean absolute and squared pixel difference of paired images (N, H, W)."""
    diff = fake.double() - raw.double()
    return {"l1": float(diff.abs().mean()), "mse": float((diff**2).mean())}


def pixel_wasserstein(fake: torch.Tensor, raw: torch.Tensor) -> float:
    """Wasserstein-1 distance between the pooled pixel-value distributions of two sets."""
    return float(wasserstein_distance(fake.double().cpu().numpy().ravel(), raw.double().cpu().numpy().ravel()))


def moments(images: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation, skewness and excess kurtosis of all pixel values."""
    values = images.double().cpu().numpy().ravel()
    mean = float(values.mean())
    centred = values - mean
    variance = float(np.mean(centred**2))
    std = float(np.sqrt(variance))
    if variance == 0:
        return {"mean": mean, "std": 0.0, "skewness": 0.0, "excess_kurtosis": 0.0}
    return {
        "mean": mean,
        "std": std,
        "skewness": float(np.mean(centred**3) / std**3),
        "excess_kurtosis": float(np.mean(centred**4) / variance**2 - 3.0),
    }

