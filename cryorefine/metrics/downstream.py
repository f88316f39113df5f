"""Downstream realism: does a denoiser trained on a synthetic set work on real particles?

A small denoiser with one fixed recipe (`DenoiserConfig`) learns noisy -> clean on each training
set (synthetic noisy particles and the clean sims they were made from) and is then applied to
held-out raw particles; its output is scored against their paired sims, the best estimate of the
clean signal there is: mean per-particle Pearson correlation and the set's Fourier ring
correlation. No labels are needed. Trained on the real raw/sim training pairs the same recipe
gives the ceiling ("oracle"), trained on white Gaussian noise the floor, and

    gap closed = (method − floor) / (oracle − floor)

says how much of the way from plain noise to real data a synthetic set takes the denoiser
(1: as good as training on real data; 0: no better than white noise; < 0: worse). The good
methods differ by a few hundredths of correlation, about what one denoiser's training seed
moves, so every set is trained `repeats` times with seeds seed, seed+1, ... and each score is
the mean with its std over those repeats (the gap closed is taken per repeat, then averaged).

Why a denoiser: its filter is set by the noise it was trained on (spectrum, level, pixel
statistics, what the signal looks like under it), so a set whose noise is wrong in any of these
ways trains a filter that is wrong for real data, and the score measures it where it matters.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from cryorefine.metrics.config import DenoiserConfig
from cryorefine.metrics.correlation import pearson_rows
from cryorefine.metrics.results import DenoisingScore
from cryorefine.metrics.spectral import fourier_ring_correlation
from cryorefine.progress import Progress

log = logging.getLogger(__name__)


def _network(config: DenoiserConfig) -> nn.Module:
    layers: list[nn.Module] = []
    channels_in = 1
    for dilation in config.dilations:
        layers += [nn.Conv2d(channels_in, config.channels, 3, padding=dilation, dilation=dilation,
                             padding_mode="reflect"), nn.ReLU()]
        channels_in = config.channels
    layers.append(nn.Conv2d(channels_in, 1, 1))
    return nn.Sequential(*layers)


def _standardise(images: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(images − mean) / std over the whole set (what a user does to a stack before a network)."""
    mean, std = float(images.mean()), float(images.std())
    if not np.isfinite(std) or std <= 0:
        raise ValueError("cannot standardise a constant image set")
    return (images - mean) / std, mean, std


def train_denoiser(noisy: np.ndarray | torch.Tensor, clean: np.ndarray | torch.Tensor,
                   config: DenoiserConfig = DenoiserConfig()) -> nn.Module:
    """The recipe's denoiser trained on paired (noisy, clean) images (N, H, W), row i the same particle.

    The noisy set is standardised; the clean target is put on the same scale (mean removed), so
    the network learns the set's own signal-to-noise ratio. Random 90° turns and flips augment.
    """
    noisy_t, clean_t = torch.as_tensor(np.asarray(noisy), dtype=torch.float32), torch.as_tensor(np.asarray(clean), dtype=torch.float32)
    if noisy_t.shape != clean_t.shape or noisy_t.dim() != 3 or len(noisy_t) < 2:
        raise ValueError(f"noisy and clean must be paired (N, H, W) sets of one shape, got {tuple(noisy_t.shape)} "
                         f"and {tuple(clean_t.shape)}")
    inputs, _, std = _standardise(noisy_t)
    targets = (clean_t - clean_t.mean()) / std
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _network(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    model.train()
    for _ in range(config.steps):
        pick = torch.randint(len(inputs), (config.batch_size,), generator=generator)
        turns = int(torch.randint(8, (1,), generator=generator))
        x, y = (torch.rot90(t[pick], turns % 4, dims=(-2, -1))[:, None] for t in (inputs, targets))
        if turns >= 4:
            x, y = x.flip(-1), y.flip(-1)
        loss = ((model(x) - y) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def score_denoiser(model: nn.Module, raw: np.ndarray | torch.Tensor, sim: np.ndarray | torch.Tensor,
                   batch_size: int = 64) -> DenoisingScore:
    """The denoiser applied to raw images (standardised as a set) and scored against the paired sims."""
    raw_t, sim_t = torch.as_tensor(np.asarray(raw), dtype=torch.float32), torch.as_tensor(np.asarray(sim), dtype=torch.float32)
    if raw_t.shape != sim_t.shape or raw_t.dim() != 3:
        raise ValueError(f"raw and sim must be paired (N, H, W) sets of one shape, got {tuple(raw_t.shape)} "
                         f"and {tuple(sim_t.shape)}")
    inputs, _, _ = _standardise(raw_t)
    denoised = torch.cat([model(inputs[i : i + batch_size, None])[:, 0] for i in range(0, len(inputs), batch_size)])
    correlation = pearson_rows(denoised.double(), sim_t.double())
    frc = fourier_ring_correlation(denoised, sim_t)
    sem = float(correlation.std() / np.sqrt(len(correlation))) if len(correlation) > 1 else 0.0
    return DenoisingScore(correlation=float(correlation.mean()), correlation_sem=sem, frc_mean=float(frc.mean()),
                          frc=[float(v) for v in frc], n_images=len(correlation))


def _mean_score(scores: list[DenoisingScore], gaps: list[float] | None) -> DenoisingScore:
    correlations = np.array([score.correlation for score in scores])
    return DenoisingScore(
        correlation=float(correlations.mean()), correlation_sem=float(np.mean([s.correlation_sem for s in scores])),
        frc_mean=float(np.mean([s.frc_mean for s in scores])),
        frc=[float(v) for v in np.mean([s.frc for s in scores], axis=0)], n_images=scores[0].n_images,
        correlation_std=float(correlations.std()), repeats=len(scores),
        gap_closed=None if gaps is None else float(np.mean(gaps)),
        gap_closed_std=None if gaps is None else float(np.std(gaps)))


def downstream_scores(training_sets: dict[str, tuple], tests: dict[str, tuple], oracle: str | None = None,
                      floor: str | None = None, config: DenoiserConfig = DenoiserConfig()) -> dict[str, dict[str, DenoisingScore]]:
    """One denoiser per training set (name -> (noisy, clean)) and repeat, scored on every test set (name -> (raw, sim)).

    Returns scores[test][method], means over `config.repeats`; with `oracle` and `floor` naming
    two of the training sets, each score carries its gap closed.
    """
    for name in (oracle, floor):
        if name is not None and name not in training_sets:
            raise ValueError(f"the reference set {name!r} is not among the training sets {sorted(training_sets)}")
    if config.repeats < 1:
        raise ValueError("the downstream score needs at least one repeat")
    runs: dict[str, dict[str, list[DenoisingScore]]] = {test: {m: [] for m in training_sets} for test in tests}
    progress = Progress(config.repeats * len(training_sets), "downstream denoisers", unit="denoiser")
    for repeat in range(config.repeats):
        recipe = replace(config, seed=config.seed + repeat)
        for method, (noisy, clean) in training_sets.items():
            progress.set_postfix(now=f"{method}, seed {repeat + 1} of {config.repeats}")
            model = train_denoiser(noisy, clean, recipe)
            for test, (raw, sim) in tests.items():
                runs[test][method].append(score_denoiser(model, raw, sim))
            progress.update()
    progress.close()
    scores: dict[str, dict[str, DenoisingScore]] = {}
    for test, by_method in runs.items():
        scores[test] = {}
        for method, repeats in by_method.items():
            gaps = None
            if oracle is not None and floor is not None:
                spans = [(o.correlation, f.correlation) for o, f in zip(by_method[oracle], by_method[floor])]
                if all(abs(top - bottom) > 1e-12 for top, bottom in spans):
                    gaps = [(s.correlation - bottom) / (top - bottom) for s, (top, bottom) in zip(repeats, spans)]
            scores[test][method] = _mean_score(repeats, gaps)
    return scores
