"""Classifier two-sample test: can a small CNN tell fake images from raw ones?

A fresh CNN (never the GAN's discriminator) is trained on half of the paired particles and
scored on the other half; the test ROC AUC is reported (0.5: indistinguishable, 1: always told
apart). Pairs stay together in one split, so a particle's raw image and its fake never straddle
train and test. Deterministic for a given seed (own generators, global RNG left untouched).
One test on a few hundred images scatters by a few hundredths, so `classifier_auc_spread`
repeats it with `repeats` seeds (a new split and a new network each) and reports mean ± std:
"beats" should mean beyond that spread.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from cryorefine.metrics.config import ClassifierConfig
from cryorefine.metrics.results import ClassifierSpread
from cryorefine.progress import track


log = logging.getLogger(__name__)

# Below this many images per class the classifier test is warned about (see classifier_auc_spread).
FEW_IMAGES = 100


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann–Whitney) formula; ties count one half."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _network(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * channels, 4 * channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * channels, 1),
    )


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 90° rotation and flip: the labels do not depend on orientation."""
    turns = int(torch.randint(4, (1,), generator=generator))
    batch = torch.rot90(batch, turns, dims=(-2, -1))
    return batch.flip(-1) if bool(torch.randint(2, (1,), generator=generator)) else batch


def classifier_auc(fake: torch.Tensor, raw: torch.Tensor, seed: int = 0,
                   config: ClassifierConfig | None = None) -> dict[str, float | int]:
    """Train a small CNN to tell raw (label 1) from fake (label 0); test ROC AUC and split sizes."""
    config = config or ClassifierConfig()
    n = min(len(fake), len(raw))
    if n < 4:
        raise ValueError(f"the classifier test needs at least 4 image pairs, got {n}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_test = max(2, int(round(n * config.test_fraction)))
    test, train = order[:n_test], order[n_test:]
    images = torch.cat([fake[:n], raw[:n]]).float().unsqueeze(1).cpu()
    labels = torch.cat([torch.zeros(n), torch.ones(n)])
    train_index = torch.cat([train, train + n])
    test_index = torch.cat([test, test + n])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _network(config.channels)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(config.steps):
        pick = train_index[torch.randint(len(train_index), (config.batch_size,), generator=generator)]
        batch = _augment(images[pick], generator)
        loss = loss_fn(model(batch).squeeze(1), labels[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model(images[test_index]).squeeze(1).numpy()
    return {"auc": roc_auc(scores, labels[test_index].numpy().astype(bool)),
            "n_train": int(len(train_index)), "n_test": int(len(test_index)), "steps": config.steps}


def classifier_auc_spread(fake: torch.Tensor, raw: torch.Tensor, seed: int = 0,
                          config: ClassifierConfig | None = None) -> ClassifierSpread:
    """`classifier_auc` with seeds seed, seed+1, ... (config.repeats tests): mean, std and each AUC."""
    config = config or ClassifierConfig()
    if config.repeats < 1:
        raise ValueError("the classifier test needs at least one repeat")
    per_class = min(len(fake), len(raw))
    if per_class < FEW_IMAGES:
        log.warning("classifier test on %d images per class: too few for its AUC to mean much (a network "
                    "can tell such small sets apart by chance); score a few hundred", per_class)
    runs = [classifier_auc(fake, raw, seed + k, config) for k in track(range(config.repeats), "classifier test", "run")]
    aucs = [run["auc"] for run in runs]
    return ClassifierSpread(auc=float(np.mean(aucs)), auc_std=float(np.std(aucs)), aucs=aucs, repeats=config.repeats,
                            n_train=runs[0]["n_train"], n_test=runs[0]["n_test"], steps=config.steps)
