"""Training data: a source of (sim, raw) batches, read lazily and streamed through loader workers.

Two sources share one interface (`PairSource`): the pairs written by `cryorefine simulate`
(`PairedParticles`) and pairs simulated on the fly from the original particles
(`cryorefine.gan.onthefly.OnTheFlyPairs`). Raw is normalised to background mean 0, std 1, and sim
is on raw's intensity scale. One affine `Normalisation` measured on raw is applied to both and
stored with the model, so `apply` maps new sims exactly as in training even if a pairs set differs.

Loading has two stages: loader workers read the stacks (`readers`, each worker with its own
memory maps), then `prepare` turns the images into normalised tensors on the training device
(for on-the-fly pairs, that is where the sims are made). Batches are a pure function of
(seed, step): a resumed run sees the same data order.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from cryorefine.artifacts import PairsFolder
from cryorefine.errors import InputError
from cryorefine.io.mrc import ParticleImages
from cryorefine.io.star import read_particle_star
from cryorefine.normalisation import Normalisation

_NORMALISATION_SAMPLE = 512


def split_rows(n: int, seed: int, validation_fraction: float, max_validation: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation rows of n particles, a seeded random partition (at least one of each)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * validation_fraction))
    n_val = min(max(n_val, 1), max_validation, n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def normalisation_of(raw: np.ndarray, where: Path | None) -> Normalisation:
    """The normalisation measured on raw images; refuses constant ones (nothing to learn)."""
    measured = Normalisation.of([raw])
    if not np.isfinite(measured.std) or measured.std <= 0:
        raise InputError(where, "raw images are constant; cannot normalise")
    return measured


def normalisation_sample(rows: np.ndarray, seed: int) -> np.ndarray:
    """The (sorted) rows on which the normalisation is measured."""
    return np.sort(np.random.default_rng(seed).permutation(rows)[:_NORMALISATION_SAMPLE])


class PairSource(ABC):
    """Row-aligned sim and raw particles; subclasses say how images are read and turned into a pair."""

    box: int
    pixel_size: float  # Å, recorded in the model so that apply and generate can check their input's
    # Lazy stack readers whose `read(rows)` runs in loader workers; `prepare` gets their outputs in order.
    readers: tuple[ParticleImages, ...]

    @abstractmethod
    def __len__(self) -> int:
        raise NotImplementedError

    def sim_scales(self) -> dict[int, float] | None:
        """The sims' intensity scale per optics group (sim -> raw), recorded in the model so that generate can
        tell a --like set that is not the training data's; None where not known."""
        return None

    def split(self, seed: int, validation_fraction: float, max_validation: int) -> tuple[np.ndarray, np.ndarray]:
        return split_rows(len(self), seed, validation_fraction, max_validation)

    @abstractmethod
    def measure_normalisation(self, rows: np.ndarray, seed: int) -> Normalisation:
        raise NotImplementedError

    @abstractmethod
    def prepare(self, rows: np.ndarray, images: Sequence, normalisation: Normalisation,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (sim, raw) tensors (B, 1, box, box) on `device` from the readers' images of `rows`."""
        raise NotImplementedError

    @abstractmethod
    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised (sim, raw) float32 arrays (len(rows), box, box)."""
        raise NotImplementedError

    @abstractmethod
    def particles(self) -> pd.DataFrame:
        """The particle table, row i being pair i (names the particles, see `io.star.particle_keys`)."""
        raise NotImplementedError

    def batch(self, rows: np.ndarray, normalisation: Normalisation, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`prepare` of `rows` read in this process."""
        rows = np.asarray(rows)
        return self.prepare(rows, [reader.read(rows) for reader in self.readers], normalisation, device)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


class PairedParticles(PairSource):
    """Row-aligned sim and raw images of one pairs folder."""

    def __init__(self, pairs_dir: str | Path, project_dir: str | Path | None = None):
        self.pairs_dir = Path(pairs_dir)
        if not self.pairs_dir.is_dir():
            raise InputError(self.pairs_dir, "pairs folder not found (expected the output of `cryorefine simulate`)")
        self.sim_star = read_particle_star(self.pairs_dir / PairsFolder.SIM_STAR)
        self.raw_star = read_particle_star(self.pairs_dir / PairsFolder.RAW_STAR)
        if len(self.sim_star) != len(self.raw_star):
            raise InputError(self.pairs_dir, f"sim.star has {len(self.sim_star)} particles but raw.star has {len(self.raw_star)}")
        self.sim = ParticleImages(self.sim_star, project_dir)
        self.raw = ParticleImages(self.raw_star, project_dir)
        self.readers = (self.sim, self.raw)
        if self.sim.box != self.raw.box:
            raise InputError(self.pairs_dir, f"sim box {self.sim.box} differs from raw box {self.raw.box}")
        self.box = self.sim.box
        self.pixel_size = self.raw_star.pixel_size
        if len(self) < 2:
            raise InputError(self.pairs_dir, "need at least 2 particle pairs (one to train, one to validate)")

    def sim_scales(self) -> dict[int, float] | None:
        """From the pairs' summary.json (what `cryorefine simulate` fitted); None when it is missing."""
        summary = self.pairs_dir / PairsFolder.SUMMARY
        try:
            scales = json.loads(summary.read_text())["scale_per_optics_group"]
            return {int(group): float(scale) for group, scale in scales.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def __len__(self) -> int:
        return len(self.sim)

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows)
        return self.sim.read(rows), self.raw.read(rows)

    def particles(self) -> pd.DataFrame:
        return self.raw_star.particles

    def measure_normalisation(self, rows: np.ndarray, seed: int) -> Normalisation:
        return normalisation_of(self.raw.read(normalisation_sample(rows, seed)), self.pairs_dir)

    def prepare(self, rows: np.ndarray, images: Sequence, normalisation: Normalisation,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        def to_tensor(array) -> torch.Tensor:
            return normalisation.forward(torch.as_tensor(array).to(device, non_blocking=True)[:, None])
        sim, raw = images
        return to_tensor(sim), to_tensor(raw)


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


class StepBatches(Dataset):
    """Step k -> (rows, the readers' images of those rows): what a loader worker produces for one step."""

    def __init__(self, readers: Sequence[ParticleImages], train_rows: np.ndarray, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.readers = tuple(readers)
        self.train_rows, self.batch_size, self.seed = train_rows, batch_size, seed
        self.rank, self.world_size = rank, world_size

    def __getitem__(self, step: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        rows = batch_rows(self.train_rows, step, self.batch_size, self.seed, self.rank, self.world_size)
        return rows, tuple(reader.read(rows) for reader in self.readers)


def _open_own_handles(_worker_id: int) -> None:
    """Drop the memory maps a forked worker inherited; it opens its own on first read."""
    for reader in get_worker_info().dataset.readers:
        reader.close()


def step_loader(source: PairSource, train_rows: np.ndarray, first_step: int, last_step: int, batch_size: int,
                seed: int, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """Batches of steps first_step..last_step-1 in order, read ahead by `num_workers` processes."""
    dataset = StepBatches(source.readers, train_rows, batch_size, seed, rank, world_size)
    return DataLoader(dataset, batch_size=None, sampler=range(first_step, last_step), num_workers=num_workers,
                      worker_init_fn=_open_own_handles if num_workers else None, pin_memory=pin_memory,
                      prefetch_factor=4 if num_workers else None)
