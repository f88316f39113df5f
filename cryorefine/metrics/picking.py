"""Particle-picking experiment: does a picker trained on one kind of synthetic micrograph find
the particles in held-out micrographs? Scored by average precision (AP).

The picker is topaz-em's: its ResNet8 region classifier (receptive field 71 px), optionally
started from its pretrained detector weights, and its non-maximum suppression. Topaz's own
training code imports torchvision (the PyPI build is CUDA-only and does not load with our CPU
torch), so the short training loop here replaces it while keeping topaz's recipe: micrographs
Fourier-cropped so a particle is ~10-30 px across, normalised per micrograph (standardised
here; topaz fits a GMM), pixels within `label_radius` of a centre are positives, minibatches of
receptive-field crops balanced between positive and other pixels, random 90° turns and flips.

Synthetic micrographs are completely labelled, so training is plain positive/negative:
topaz's positive-unlabelled objectives exist for real data where most particles are unlabelled.
Deterministic for a given seed (own generator; the global RNGs are left untouched).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from cryorefine.errors import CryorefineError, InputError, SettingsError
from cryorefine.metrics.config import PICKING_REPEATS, PickerConfig
from cryorefine.metrics.results import PickingRun, PickingScores
from cryorefine.physics.imaging import fourier_resize
from cryorefine.progress import Progress


Micrographs = Sequence[np.ndarray]
Coordinates = Sequence[np.ndarray]


@dataclass(frozen=True)
class Resampling:
    """Original <-> downsampled pixel coordinates (x, y).

    A micrograph is padded (bottom, right) to a `box` square and Fourier-cropped to `new_box`;
    Fourier cropping keeps pixel box//2 at new_box//2, so coordinates scale about those points.
    """

    box: int
    new_box: int

    @classmethod
    def for_shape(cls, shape: tuple[int, ...], factor: float) -> Resampling:
        box = max(shape)
        return cls(box, max(1, round(box / factor)))

    @property
    def scale(self) -> float:
        return self.new_box / self.box

    def to_small(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) - self.box // 2) * self.scale + self.new_box // 2

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) - self.new_box // 2) / self.scale + self.box // 2


def downsample(micrograph: np.ndarray, factor: float) -> tuple[np.ndarray, Resampling]:
    """Fourier-crop by `factor`; a rectangle is first padded with its mean to the square that
    `fourier_resize` needs, and the padding is cut off again after."""
    micrograph = np.asarray(micrograph, dtype=np.float32)
    if micrograph.ndim != 2:
        raise InputError(None, f"a micrograph must be a 2-D image, got shape {micrograph.shape}")
    grid = Resampling.for_shape(micrograph.shape, factor)
    rows, cols = micrograph.shape
    square = np.full((grid.box, grid.box), micrograph.mean(), dtype=np.float32)
    square[:rows, :cols] = micrograph
    small = fourier_resize(torch.from_numpy(square)[None], grid.new_box)[0].numpy()
    return small[: math.ceil(rows * grid.scale), : math.ceil(cols * grid.scale)], grid


def _prepare(micrograph: np.ndarray, factor: float) -> tuple[np.ndarray, Resampling]:
    """Downsample and standardise: the network sees every micrograph at zero mean, unit variance."""
    small, grid = downsample(micrograph, factor)
    std = small.std()
    if not np.isfinite(std) or std == 0:
        raise InputError(None, "a micrograph is constant or not finite")
    return ((small - small.mean()) / std).astype(np.float32), grid


@dataclass
class Picker:
    """A trained region classifier, dense (topaz's `fill`): one logit per downsampled pixel."""

    model: nn.Module
    downsample: float

    def score_map(self, micrograph: np.ndarray) -> np.ndarray:
        """Logits on the grid of `downsample(micrograph, self.downsample)`."""
        image, _ = _prepare(micrograph, self.downsample)
        with torch.no_grad():
            return self.model(torch.from_numpy(image)[None, None])[0, 0].numpy()


def _network(config: PickerConfig) -> nn.Module:
    """Topaz's ResNet8 + linear classifier, without batch norm (like its pretrained detectors)."""
    try:
        from topaz.model.classifier import LinearClassifier
        from topaz.model.factory import load_model
        from topaz.model.features.resnet import ResNet8
    except ImportError as error:
        raise CryorefineError("the picking experiment needs topaz-em: "
                              "pip install --no-deps topaz-em==0.3.20") from error
    if config.pretrained:
        if config.units not in (32, 64):
            raise SettingsError(f"topaz has pretrained ResNet8 weights for 32 or 64 units, "
                                   f"not {config.units}")
        return load_model(f"resnet8_u{config.units}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return LinearClassifier(ResNet8(units=config.units, bn=False))


def _check_pairs(micrographs: Micrographs, coordinates: Coordinates) -> None:
    if len(micrographs) == 0 or len(micrographs) != len(coordinates):
        raise InputError(None, f"need one coordinate array per micrograph, got {len(micrographs)} "
                               f"micrographs and {len(coordinates)} coordinate arrays")
    for xy in coordinates:
        if np.ndim(xy) != 2 or np.shape(xy)[1] != 2:
            raise InputError(None, f"coordinates must be (n, 2) arrays of x, y, got shape {np.shape(xy)}")


def _label_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """True at pixels within `radius` of any centre (x, y), all in downsampled pixels."""
    mask = np.zeros(shape, dtype=bool)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    for x, y in centres:
        mask |= (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
    return mask


def _crops(padded: list[np.ndarray], centres: np.ndarray, width: int,
           rng: np.random.Generator) -> torch.Tensor:
    """(B, 1, width, width) crops centred on (image, row, col) of images padded by width//2,
    each turned and flipped at random: exactly what the dense network sees at that pixel."""
    batch = np.empty((len(centres), 1, width, width), dtype=np.float32)
    for k, (i, row, col) in enumerate(centres):
        crop = np.rot90(padded[i][row : row + width, col : col + width], rng.integers(4))
        batch[k, 0] = crop[:, ::-1] if rng.integers(2) else crop
    return torch.from_numpy(batch)


def train_picker(micrographs: Micrographs, coordinates: Coordinates,
                 config: PickerConfig | None = None) -> Picker:
    """Train a picker on micrographs with complete particle centres ((n, 2) x, y, original px)."""
    config = config or PickerConfig()
    _check_pairs(micrographs, coordinates)
    if config.downsample < 1 or config.batch_size < 2 or not 0 < config.positive_fraction < 1:
        raise SettingsError("picker: need downsample >= 1, batch_size >= 2 and 0 < positive_fraction < 1")
    model = _network(config)
    width = model.width
    padded, positives, negatives = [], [], []
    for i, (micrograph, xy) in enumerate(zip(micrographs, coordinates)):
        image, grid = _prepare(micrograph, config.downsample)
        radius = config.label_radius * grid.scale
        if radius < 1:
            raise SettingsError(f"label radius {config.label_radius} px is under one pixel after "
                                   f"{config.downsample}x downsampling")
        mask = _label_mask(image.shape, grid.to_small(xy), radius)
        padded.append(np.pad(image, width // 2))
        for pixels, label in ((positives, True), (negatives, False)):
            where = np.argwhere(mask == label)
            pixels.append(np.column_stack([np.full(len(where), i), where]))
    positives, negatives = np.concatenate(positives), np.concatenate(negatives)
    if len(positives) == 0 or len(negatives) == 0:
        raise InputError(None, "the training micrographs need both particle and background pixels")

    rng = np.random.default_rng(config.seed)
    n_pos = max(1, round(config.batch_size * config.positive_fraction))
    labels = torch.cat([torch.ones(n_pos), torch.zeros(config.batch_size - n_pos)])
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(config.steps):
        centres = np.concatenate([positives[rng.integers(len(positives), size=n_pos)],
                                  negatives[rng.integers(len(negatives), size=config.batch_size - n_pos)]])
        loss = loss_fn(model(_crops(padded, centres, width, rng)).view(-1), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.fill()
    return Picker(model, config.downsample)


def pick(picker: Picker, micrograph: np.ndarray, radius: float, threshold: float = -math.inf,
         max_picks: int | None = None) -> np.ndarray:
    """Picks (n, 3) as x, y (original px) and score (logit), best first.

    Topaz's non-maximum suppression: the best-scoring pixel is picked and everything within
    `radius` (original px, about the particle radius) of it suppressed, until `threshold`.
    """
    from topaz.algorithms import non_maximum_suppression

    grid = Resampling.for_shape(np.shape(micrograph), picker.downsample)
    scores, xy = non_maximum_suppression(picker.score_map(micrograph), max(1, round(radius * grid.scale)),
                                         threshold)
    return np.column_stack([grid.to_original(xy), scores])[:max_picks]


def match_picks(picks: np.ndarray, true_xy: np.ndarray, assignment_radius: float) -> np.ndarray:
    """True for picks that are true positives: in order of score, each pick takes the nearest
    still-unmatched true centre within `assignment_radius`, so a particle explains one pick only."""
    picks, true_xy = np.asarray(picks, dtype=np.float64).reshape(-1, 3), np.asarray(true_xy).reshape(-1, 2)
    matched = np.zeros(len(picks), dtype=bool)
    if len(true_xy) == 0:
        return matched
    free = np.ones(len(true_xy), dtype=bool)
    neighbours = cKDTree(true_xy).query_ball_point(picks[:, :2], assignment_radius)
    for i in np.argsort(-picks[:, 2], kind="stable"):
        candidates = [j for j in neighbours[i] if free[j]]
        if candidates:
            nearest = min(candidates, key=lambda j: np.sum((true_xy[j] - picks[i, :2]) ** 2))
            free[nearest], matched[i] = False, True
    return matched


def evaluate_picks(picks: Sequence[np.ndarray], true_xy: Coordinates,
                   assignment_radius: float) -> PickingRun:
    """AP of picks pooled over micrographs (one (n, 3) array and one (m, 2) array per micrograph).

    AP as scikit-learn's average_precision_score, sum over score thresholds of
    (recall step) x precision, but with recall relative to ALL true particles, so the missed
    ones lower it: an AP of 1 means every particle is found before any false pick.
    """
    _check_pairs(picks, true_xy)
    n_true = sum(len(t) for t in true_xy)
    if n_true == 0:
        raise InputError(None, "average precision needs at least one true particle")
    matched = np.concatenate([match_picks(p, t, assignment_radius) for p, t in zip(picks, true_xy)])
    scores = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3)[:, 2] for p in picks])
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], matched[order]
    last_of_tie = np.append(scores[1:] != scores[:-1], True)[: len(scores)]  # thresholds
    true_positives = np.cumsum(hits)[last_of_tie]
    precision = true_positives / (np.flatnonzero(last_of_tie) + 1)
    recall = true_positives / n_true
    return PickingRun(average_precision=float(np.sum(np.diff(recall, prepend=0.0) * precision)),
                      n_true=n_true, n_picks=len(scores), n_matched=int(matched.sum()),
                      max_recall=float(matched.sum() / n_true))


def average_precision(picks: np.ndarray, true_xy: np.ndarray, assignment_radius: float) -> float:
    """AP of one micrograph's picks; see `evaluate_picks`."""
    return evaluate_picks([picks], [true_xy], assignment_radius).average_precision


def picking_experiment(train_sets: Mapping[str, tuple[Micrographs, Coordinates]],
                       test: tuple[Micrographs, Coordinates], particle_radius: float,
                       config: PickerConfig | None = None, assignment_radius: float | None = None,
                       repeats: int = PICKING_REPEATS) -> dict[str, PickingScores]:
    """Train `repeats` pickers per named training set (seeds config.seed, +1, ...; same config),
    pick the same held-out micrographs with each (NMS radius = `particle_radius`, original px)
    and score the picks: average precision as mean and std over the seeds, and each seed's scores.

    A pick counts as found within `assignment_radius` (default `particle_radius`) of a centre.
    """
    config = config or PickerConfig()
    if repeats < 1:
        raise SettingsError(f"picking repeats {repeats} must be at least 1")
    test_micrographs, test_xy = test
    _check_pairs(test_micrographs, test_xy)
    radius = particle_radius if assignment_radius is None else assignment_radius
    results: dict[str, PickingScores] = {}
    progress = Progress(len(train_sets) * repeats, "picking", unit="picker")
    for name, (micrographs, coordinates) in train_sets.items():
        start = time.perf_counter()
        runs = []
        for repeat in range(repeats):
            picker = train_picker(micrographs, coordinates, replace(config, seed=config.seed + repeat))
            picks = [pick(picker, micrograph, particle_radius) for micrograph in test_micrographs]
            runs.append(evaluate_picks(picks, test_xy, radius))
            progress.set_postfix(last=f"{name} AP {runs[-1].average_precision:.3f}")
            progress.update()
        precisions = [run.average_precision for run in runs]
        results[name] = PickingScores(
            average_precision=float(np.mean(precisions)),
            average_precision_std=float(np.std(precisions, ddof=1)) if repeats > 1 else 0.0,
            max_recall=float(np.mean([run.max_recall for run in runs])), n_true=runs[0].n_true,
            n_matched=int(round(np.mean([run.n_matched for run in runs]))), runs=runs,
            n_train_particles=sum(len(xy) for xy in coordinates), seconds=round(time.perf_counter() - start, 1))
    progress.close()
    return results
