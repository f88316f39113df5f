"""Training pairs simulated on the fly: raw crops streamed from the original stacks, sims made on the training device.

No sim stack is written: loader workers read the particles' own images, and each batch is re-boxed,
normalised and simulated exactly as `cryorefine simulate` does (`cryorefine.simulate.PairSimulator`).
The sim's intensity scale per optics group is fitted once on a seeded sample of training particles
(`simulate` fits it on all of them; the two agree to sampling noise). Memory holds the STAR
metadata, the map and a few batches, whatever the number of particles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from cryorefine.errors import InputError
from cryorefine.gan.data import PairSource, normalisation_of, normalisation_sample
from cryorefine.normalisation import Normalisation
from cryorefine.simulate import PairSimulator, ScaleFit, SimulateConfig, require_correlation

log = logging.getLogger(__name__)

SCALE_SAMPLE = 1024  # particles in the intensity-scale fit
_CHUNK = 64  # particles per forward-model call outside training steps


class OnTheFlyPairs(PairSource):
    """(sim, raw) of the particles of one STAR file and map, simulated on `config.device` when asked for."""

    def __init__(self, config: SimulateConfig):
        self.config = config
        self.simulator = PairSimulator(config)
        self.readers = (self.simulator.images,)
        self.box = self.simulator.box
        self.pixel_size = self.simulator.pixel_size
        self.scales: dict[int, float] | None = None
        if len(self) < 2:
            raise InputError(config.particles, "need at least 2 particles (one to train, one to validate)")

    def __len__(self) -> int:
        return len(self.simulator)

    def particles(self) -> pd.DataFrame:
        return self.simulator.star.particles

    def sim_scales(self) -> dict[int, float] | None:
        return self.scales

    def fit_scale(self, rows: np.ndarray, seed: int) -> dict[int, float]:
        """Least-squares sim -> raw scale per optics group on a seeded sample of `rows` (rank 0's, under DDP)."""
        sample = np.sort(np.random.default_rng([seed, 1]).permutation(rows)[:SCALE_SAMPLE])
        fit = ScaleFit()
        for start in range(0, len(sample), _CHUNK):
            chunk = sample[start : start + _CHUNK]
            sim, raw = self.simulator.pair(chunk, self.simulator.images.read(chunk))
            fit.add(self.simulator.params.optics_group[chunk], raw, sim)
        scales = fit.scales()
        if dist.is_available() and dist.is_initialized():
            values = torch.tensor([scales[g] for g in sorted(scales)], dtype=torch.float64,
                                  device=self.simulator.device)
            dist.broadcast(values, src=0)
            scales = dict(zip(sorted(scales), values.tolist()))
        require_correlation(scales, self.config.particles, self.config.map, self.config.map_pixel_size,
                            self.simulator.star.pixel_size)  # the map is resampled to the particles' own
        self.scales = scales
        log.info("sim scale per optics group (fitted on %d particles): %s", len(sample), scales)
        return scales

    def _row_scale(self, rows: np.ndarray) -> torch.Tensor:
        if self.scales is None:
            raise RuntimeError("fit_scale must run before pairs are made")
        groups = self.simulator.params.optics_group[rows]
        # Groups missing from the fit sample get the mean scale of the others.
        fallback = float(np.mean(list(self.scales.values())))
        values = np.array([self.scales.get(int(g), fallback) for g in groups], dtype=np.float32)
        return torch.as_tensor(values, device=self.simulator.device)[:, None, None]

    def _scaled_pair(self, rows: np.ndarray, raw_images) -> tuple[torch.Tensor, torch.Tensor]:
        sim, raw = self.simulator.pair(rows, raw_images)
        return sim * self._row_scale(rows), raw

    def measure_normalisation(self, rows: np.ndarray, seed: int) -> Normalisation:
        """Fits the scale (if not yet done), then the normalisation on the same sample rule as the pairs folder."""
        if self.scales is None:
            self.fit_scale(rows, seed)
        return normalisation_of(self.read(normalisation_sample(rows, seed))[1], self.config.particles)

    def prepare(self, rows: np.ndarray, images: Sequence, normalisation: Normalisation,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(rows)
        sim, raw = self._scaled_pair(rows, images[0])
        return normalisation.forward(sim[:, None]).to(device), normalisation.forward(raw[:, None]).to(device)

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows)
        sims, raws = [], []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            sim, raw = self._scaled_pair(chunk, self.simulator.images.read(chunk))
            sims.append(sim.cpu().numpy())
            raws.append(raw.cpu().numpy())
        return np.concatenate(sims), np.concatenate(raws)
