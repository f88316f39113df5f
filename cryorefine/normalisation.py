"""The one intensity normalisation: an affine map measured on a whole set and applied to each image.

One map for a whole set keeps the relative scale of its images (the GAN's sim and raw share raw's;
the unpaired translators keep the contrast differences between tiles). Torch-free: it works on numpy
arrays and on torch tensors alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalisation:
    """x -> (x - mean) / std and back; images come out as float32, the networks' dtype."""

    mean: float
    std: float

    @classmethod
    def of(cls, images: Iterable[np.ndarray]) -> Normalisation:
        """Mean and std over every pixel of `images`, in float64 (std 0 for a constant set: callers decide)."""
        values = np.concatenate([np.asarray(image, dtype=np.float64).ravel() for image in images])
        return cls(float(values.mean()), float(values.std()))

    def forward(self, images):
        return _float32((images - self.mean) / self.std)

    def inverse(self, images):
        return _float32(images * self.std + self.mean)


def _float32(images):
    return images.astype(np.float32) if isinstance(images, np.ndarray) else images.float()
