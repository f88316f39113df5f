"""Paired training data: DIR/sim.star + sim.mrcs and DIR/raw.star + raw.mrcs, read lazily in batches.

The pairs come from `cryorefine simulate`: raw normalised to background mean 0, std 1, and sim on
raw's intensity scale. One affine `Normalisation` measured on raw is applied to both and stored
with the model, so `apply` maps new sims exactly as in training even if a pairs set differs.
Batches are a pure function of (seed, step): a resumed run sees the same data order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryorefine.errors import InputError
from cryorefine.io.mrc import ParticleImages
from cryorefine.io.star import read_particle_star

_NORMALISATION_SAMPLE = 512


@dataclass(frozen=True)
class Normalisation:
    """x -> (x - mean) / std, the same for sim and raw (keeps their relative scale)."""

    mean: float
    std: float

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def inverse(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.std + self.mean


class PairedParticles:
    """Row-aligned sim and raw images of one pairs folder."""

    def __init__(self, pairs_dir: str | Path):
        self.pairs_dir = Path(pairs_dir)
        if not self.pairs_dir.is_dir():
            raise InputError(self.pairs_dir, "pairs folder not found (expected the output of `cryorefine simulate`)")
        self.sim_star = read_particle_star(self.pairs_dir / "sim.star")
        self.raw_star = read_particle_star(self.pairs_dir / "raw.star")
        if len(self.sim_star) != len(self.raw_star):
            raise InputError(self.pairs_dir, f"sim.star has {len(self.sim_star)} particles but raw.star has {len(self.raw_star)}")
        self.sim = ParticleImages(self.sim_star)
        self.raw = ParticleImages(self.raw_star)
        if self.sim.box != self.raw.box:
            raise InputError(self.pairs_dir, f"sim box {self.sim.box} differs from raw box {self.raw.box}")
        self.box = self.sim.box
        if len(self) < 2:
            raise InputError(self.pairs_dir, "need at least 2 particle pairs (one to train, one to validate)")

    def __len__(self) -> int:
        return len(self.sim)

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised (sim, raw) float32 arrays (len(rows), box, box)."""
        rows = np.asarray(rows)
        return self.sim.read(rows), self.raw.read(rows)

    def split(self, seed: int, validation_fraction: float, max_validation: int) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation rows, a seeded random partition (at least one of each)."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = int(round(len(self) * validation_fraction))
        n_val = min(max(n_val, 1), max_validation, len(self) - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def measure_normalisation(self, rows: np.ndarray, seed: int) -> Normalisation:
        sample = np.random.default_rng(seed).permutation(rows)[:_NORMALISATION_SAMPLE]
        raw = self.raw.read(np.sort(sample)).astype(np.float64)
        std = float(raw.std())
        if not np.isfinite(std) or std <= 0:
            raise InputError(self.pairs_dir, "raw images are constant; cannot normalise")
        return Normalisation(mean=float(raw.mean()), std=std)

    def batch(self, rows: np.ndarray, normalisation: Normalisation, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (sim, raw) tensors (B, 1, box, box) on `device`."""
        sim, raw = self.read(rows)
        to_tensor = lambda a: normalisation.forward(torch.from_numpy(a)[:, None]).to(device)  # noqa: E731
        return to_tensor(sim), to_tensor(raw)

    def close(self) -> None:
        self.sim.close()
        self.raw.close()


def batch_rows(train_rows: np.ndarray, step: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """The rows of one rank's batch at `step`.

    Each epoch is a seeded permutation of the training rows; with several processes every
    rank takes its own interleaved shard, so ranks never see the same particle in one step.
    """
    global_batch = batch_size * world_size
    per_epoch = max(len(train_rows) // global_batch, 1)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(train_rows)
    if len(order) < global_batch:  # tiny sets: repeat the permutation to fill one batch
        order = np.resize(order, global_batch)
    chunk = order[position * global_batch : (position + 1) * global_batch]
    return np.sort(chunk[rank::world_size])
