"""The CycleGAN's networks, built from the project's GAN blocks, and the PatchNCE projection head.

G_AB (synthetic -> real) is the project's noise-injecting U-Net with the particle mask as a
second input channel: its residual is added to the image channel only. G_BA (real -> synthetic)
is the plain U-Net (real micrographs have no masks). The discriminators are the project's
PatchGAN with one input channel (unconditional: the domains are unpaired).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cryorefine.gan.config import ModelConfig
from cryorefine.gan.models import ConvBlock, Generator, PatchDiscriminator, channel_widths


class MaskConditionedGenerator(Generator):
    """Generator on [image, mask] (B, 2, H, W) -> image (B, 1, H, W); `encode` gives its encoder features."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.stem = ConvBlock(2 + config.noise_channels, channel_widths(config)[0])

    def forward(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return super().forward(torch.cat([image, mask], dim=1), generator)[:, :1]

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features at every scale (noise-free: the contrastive term compares content)."""
        x = torch.cat([image, mask], dim=1)
        zeros = torch.zeros(x.shape[0], self.config.noise_channels, *x.shape[2:], device=x.device, dtype=x.dtype)
        features = [self.stem(torch.cat([x, zeros], dim=1))]
        for block in self.down:
            features.append(block(F.avg_pool2d(features[-1], 2)))
        return features


class UnconditionalDiscriminator(PatchDiscriminator):
    """PatchGAN on one image (B, 1, H, W) -> realism score per patch."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        first = self.net[0]
        self.net[0] = nn.Conv2d(1, first.out_channels, first.kernel_size, stride=first.stride, padding=first.padding)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.net(image)


class PatchProjector(nn.Module):
    """Two-layer MLP per feature scale mapping sampled feature vectors to unit vectors for PatchNCE."""

    def __init__(self, channels: list[int], dim: int = 64):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)

    def forward(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.heads[level](vectors), dim=-1)
