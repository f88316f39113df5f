"""The mask-guided PatchNCE term: a translated patch must be recognisable as its own source patch.

For sampled locations, the encoder feature of the output at a location is the query, the
feature of the input at the same location the positive, and the input's features at the other
sampled locations the negatives (InfoNCE, temperature τ). Half the locations are drawn inside
particle masks: particles' features, and so their positions and shapes, must survive the
translation; the other half keep the background's layout (ice gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryorefine.unpaired.model import PatchProjector

TEMPERATURE = 0.07


def sample_locations(mask: torch.Tensor, height: int, width: int, count: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Flat indices (B, count) into (height, width) maps, half inside the (resized) mask where possible."""
    resized = F.interpolate(mask, size=(height, width), mode="area")[:, 0].flatten(1)  # (B, HW)
    uniform = torch.ones_like(resized)
    inside = torch.where(resized.sum(1, keepdim=True) > 0, resized, uniform)
    half = count // 2
    a = torch.multinomial(inside + 1e-12, half, replacement=True, generator=generator)
    b = torch.multinomial(uniform, count - half, replacement=True, generator=generator)
    return torch.cat([a, b], dim=1)


def patch_nce(source: list[torch.Tensor], output: list[torch.Tensor], projector: PatchProjector, mask: torch.Tensor,
              count: int, generator: torch.Generator) -> torch.Tensor:
    """Mean InfoNCE over feature scales and sampled locations."""
    total = 0.0
    for level, (src, out) in enumerate(zip(source, output)):
        batch, channels, height, width = src.shape
        index = sample_locations(mask, height, width, count, generator)
        gather = lambda f: torch.gather(f.flatten(2), 2, index[:, None].expand(-1, channels, -1)).transpose(1, 2)  # noqa: E731
        keys = projector(level, gather(src).reshape(-1, channels)).reshape(batch, count, -1)
        queries = projector(level, gather(out).reshape(-1, channels)).reshape(batch, count, -1)
        logits = torch.bmm(queries, keys.transpose(1, 2)) / TEMPERATURE  # (B, count, count); diagonal = positives
        targets = torch.arange(count, device=logits.device).expand(batch, -1)
        total = total + F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return total / len(source)
