"""Apply a tile model to a whole micrograph without seams: overlapping windows, cores kept.

Each window is `tile` pixels; only its central core (tile − 2·margin) is written, and cores tile
the micrograph exactly. Every output pixel therefore comes from a window in which it had at
least `margin` pixels of real context on every side (the image is reflect-padded at the outer
edges), so the deterministic part of the output matches a whole-image pass when the network's
receptive field is within the margin. Windows are not averaged: averaging two independently
drawn noise realisations lowers the noise variance in the overlap, which shows as a seam in a
noise-dominated image; abutting independent noise of the same statistics shows none.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

TileModel = Callable[..., torch.Tensor]  # (image, mask[, extra]) each (B, 1, t, t) -> (B, 1, t, t)


def apply_tiled(model: TileModel, image: np.ndarray, mask: np.ndarray, tile: int = 256, margin: int = 32,
                batch_size: int = 8, extra: np.ndarray | None = None) -> np.ndarray:
    """`extra`, an image of the same shape, is windowed alike and passed as the model's third input."""
    if tile <= 2 * margin:
        raise ValueError(f"tile {tile} must be larger than twice the margin {margin}")
    core = tile - 2 * margin
    height, width = image.shape
    rows, cols = -(-height // core), -(-width // core)
    pad_bottom, pad_right = rows * core - height + margin, cols * core - width + margin
    channels = [image, mask] + ([extra] if extra is not None else [])
    stacked = torch.from_numpy(np.stack(channels).astype(np.float32))[None]
    # Reflect padding needs pad < size: pad in steps for small images.
    padded = stacked
    for side_pad in _reflect_steps(margin, pad_bottom, margin, pad_right, height, width):
        padded = F.pad(padded, side_pad, mode="reflect")
    out = np.zeros((rows * core, cols * core), dtype=np.float32)
    corners = [(r * core, c * core) for r in range(rows) for c in range(cols)]
    with torch.no_grad():
        for start in range(0, len(corners), batch_size):
            chunk = corners[start : start + batch_size]
            windows = torch.stack([padded[0, :, y : y + tile, x : x + tile] for y, x in chunk])
            result = model(*windows.split(1, dim=1)).cpu().numpy()[:, 0]
            for (y, x), window in zip(chunk, result):
                out[y : y + core, x : x + core] = window[margin : margin + core, margin : margin + core]
    return out[:height, :width]


def _reflect_steps(top: int, bottom: int, left: int, right: int, height: int, width: int):
    """Split a reflect padding into steps that each stay below the current size."""
    while top or bottom or left or right:
        step = (min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1))
        yield step
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
        width, height = width + step[0] + step[1], height + step[2] + step[3]
