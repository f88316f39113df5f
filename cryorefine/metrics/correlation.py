"""Pearson correlation of paired images, the one used wherever a sim is compared with an image."""

from __future__ import annotations

import torch


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation of each image of `a` (N, ...) with the same row of `b` -> (N,), in their dtype.

    A constant image correlates 0 with anything (no division by zero).
    """
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1)).clamp(min=1e-20)
