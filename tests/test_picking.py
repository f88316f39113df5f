"""Particle-picking metric: AP bookkeeping by hand-made cases, coordinate mapping through the
Fourier crop, and a topaz picker that must learn dark blobs (and must not from wrong labels)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cryorefine.errors import InputError, SettingsError
from cryorefine.metrics import picking
from cryorefine.metrics.picking import (
    PickerConfig,
    Resampling,
    average_precision,
    downsample,
    evaluate_picks,
    match_picks,
    pick,
    picking_experiment,
    train_picker,
)

TRUE = np.array([[10.0, 10.0], [50.0, 10.0], [10.0, 50.0], [50.0, 50.0]])


def _picks(xy, scores) -> np.ndarray:
    return np.column_stack([np.asarray(xy, dtype=float), scores])


def test_perfect_picks_give_ap_one():
    picks = _picks(TRUE + 1.5, [0.9, 0.8, 0.7, 0.6])
    assert average_precision(picks, TRUE, assignment_radius=3) == 1.0


def test_missed_particles_lower_recall():
    picks = _picks(TRUE[:2], [0.9, 0.8])
    assert average_precision(picks, TRUE, assignment_radius=3) == pytest.approx(0.5)
    assert evaluate_picks([picks], [TRUE], 3).max_recall == pytest.approx(0.5)


def test_false_positive_ranked_first():
    picks = _picks([[100, 100], TRUE[0], TRUE[1]], [0.9, 0.8, 0.7])
    # recall 1/2 at precision 1/2, then 2/2 at precision 2/3
    assert average_precision(picks, TRUE[:2], 3) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_far_pick_is_not_a_match():
    picks = _picks([TRUE[0] + [3.5, 0]], [1.0])
    assert average_precision(picks, TRUE[:1], 3) == 0.0
    assert average_precision(picks, TRUE[:1], 4) == 1.0


def test_matching_is_one_to_one():
    picks = _picks([TRUE[0], TRUE[0] + 1, TRUE[1]], [0.9, 0.8, 0.7])
    assert match_picks(picks, TRUE[:2], 3).tolist() == [True, False, True]
    assert average_precision(picks, TRUE[:2], 3) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_matching_is_greedy_by_score():
    true = np.array([[0.0, 0.0], [6.0, 0.0]])
    xy = [[2.9, 0.0], [0.5, 0.0]]  # the first can reach both particles and is nearer the left one
    assert match_picks(_picks(xy, [0.9, 0.5]), true, 3.5).tolist() == [True, False]
    assert match_picks(_picks(xy, [0.5, 0.9]), true, 3.5).tolist() == [True, True]


def test_tied_scores_count_as_one_threshold():
    # like scikit-learn: a tie is one threshold, whatever order the picks come in
    picks = _picks([[100, 100], TRUE[0]], [0.5, 0.5])
    assert average_precision(picks, TRUE[:1], 3) == pytest.approx(0.5)
    assert average_precision(picks[::-1], TRUE[:1], 3) == pytest.approx(0.5)


def test_pooled_over_micrographs():
    first, second = _picks(TRUE[:2], [0.9, 0.3]), _picks([TRUE[0], [90, 90]], [0.6, 0.5])
    result = evaluate_picks([first, second], [TRUE[:2], TRUE[:1]], 3)
    # by score: TP (0.9), TP (0.6, in the second micrograph), FP, TP; 3 true particles in all
    assert result.average_precision == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert (result.n_true, result.n_picks, result.n_matched) == (3, 4, 3)
    assert average_precision(np.empty((0, 3)), TRUE, 3) == 0.0
    with pytest.raises(InputError):
        evaluate_picks([first], [TRUE, TRUE], 3)


def test_coordinates_round_trip_through_downsampling():
    # odd new box (213 / 3 = 71): naive x / factor would be a third of a pixel off
    rows, cols = np.mgrid[:150, :213]
    true = np.array([[40.3, 50.0], [151.7, 97.4], [106.0, 75.2]])
    image = sum(np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * 6.0**2)) for x, y in true)
    small, grid = downsample(image, 3)
    assert small.shape == (50, 71)
    expected = grid.to_small(true)
    for x, y in expected:
        r, c = int(round(y)), int(round(x))
        window = small[r - 6 : r + 7, c - 6 : c + 7]
        wr, wc = np.mgrid[r - 6 : r + 7, c - 6 : c + 7]
        assert np.sum(window * wc) / window.sum() == pytest.approx(x, abs=0.05)
        assert np.sum(window * wr) / window.sum() == pytest.approx(y, abs=0.05)
    np.testing.assert_allclose(grid.to_original(expected), true)
    assert Resampling.for_shape((150, 213), 3) == grid


def _blob_micrograph(seed: int, size: int = 192, n: int = 14, sigma: float = 4.0):
    """Dark Gaussian blobs at random non-overlapping positions in white noise."""
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < n:
        centre = rng.uniform(10, size - 10, 2)
        if all(np.hypot(*(centre - other)) > 6 * sigma for other in centres):
            centres.append(centre)
    rows, cols = np.mgrid[:size, :size]
    image = rng.normal(0, 0.7, (size, size))
    for x, y in centres:
        image -= np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return image.astype(np.float32), np.array(centres)


SMALL = PickerConfig(downsample=2, label_radius=4, steps=60, batch_size=16, units=8, pretrained=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny convolutions gain nothing from a second thread and lose much on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def blobs():
    pytest.importorskip("topaz")
    data = [_blob_micrograph(seed) for seed in range(3)]
    return [d[0] for d in data], [d[1] for d in data]


def test_dense_score_map_is_the_trained_crop_classifier(blobs):
    """Training scores 71-px crops; picking scores the whole micrograph at once: same numbers."""
    picker = train_picker(blobs[0][:1], blobs[1][:1], replace(SMALL, steps=0))
    scores = picker.score_map(blobs[0][0])
    assert scores.shape == (96, 96)
    image, _ = picking._prepare(blobs[0][0], SMALL.downsample)
    width = picker.model.width
    centres = np.array([[0, 0, 0], [0, 5, 90], [0, 47, 31], [0, 95, 95]])

    class NoTurn:
        def integers(self, n: int) -> int:
            return 0

    picker.model.unfill()
    crops = picking._crops([np.pad(image, width // 2)], centres, width, NoTurn())
    np.testing.assert_allclose(picker.model(crops).detach().numpy().ravel(),
                               scores[centres[:, 1], centres[:, 2]], rtol=1e-4, atol=1e-4)


def test_trained_picker_finds_blobs_and_wrong_labels_do_not(blobs):
    micrographs, coordinates = blobs
    rng = np.random.default_rng(7)
    wrong = []  # as many labels, at random places away from every particle
    for xy in coordinates[:2]:
        places = rng.uniform(10, 182, (500, 2))
        away = np.linalg.norm(places[:, None] - xy[None], axis=-1).min(axis=1) > 16
        wrong.append(places[away][: len(xy)])
    results = picking_experiment({"right": (micrographs[:2], coordinates[:2]),
                                  "wrong": (micrographs[:2], wrong)},
                                 (micrographs[2:], coordinates[2:]), particle_radius=8, config=SMALL, repeats=2)
    assert results["right"].average_precision > 0.8
    runs = [run.average_precision for run in results["right"].runs]
    assert len(runs) == 2 and results["right"].average_precision == pytest.approx(np.mean(runs))
    assert results["right"].average_precision_std == pytest.approx(np.std(runs, ddof=1))
    assert results["wrong"].average_precision < 0.3
    assert results["right"].n_true == 14 and results["right"].n_train_particles == 28

    untrained = train_picker(micrographs[:2], coordinates[:2], replace(SMALL, steps=0))
    picks = pick(untrained, micrographs[2], radius=8)
    assert average_precision(picks, coordinates[2], 8) < 0.3


def test_training_is_deterministic_for_a_seed(blobs):
    config = replace(SMALL, steps=10)
    maps = [train_picker(blobs[0][:1], blobs[1][:1], replace(config, seed=seed))
            .score_map(blobs[0][2]) for seed in (0, 0, 1)]
    np.testing.assert_array_equal(maps[0], maps[1])
    assert not np.allclose(maps[0], maps[2])


def test_pick_returns_original_pixels_best_first(blobs):
    picker = train_picker(blobs[0][:1], blobs[1][:1], replace(SMALL, steps=0))
    picks = pick(picker, blobs[0][2], radius=8, max_picks=5)
    assert picks.shape == (5, 3)
    assert np.all(np.diff(picks[:, 2]) <= 0)
    assert np.all((picks[:, :2] >= 0) & (picks[:, :2] < 192))


def test_score_map_ignores_intensity_scale_and_offset(blobs):
    """Per-micrograph normalisation: simulated and real micrographs differ in units and offset."""
    picker = train_picker(blobs[0][:1], blobs[1][:1], replace(SMALL, steps=0))
    micrograph = blobs[0][2]
    np.testing.assert_allclose(picker.score_map(3 * micrograph + 100), picker.score_map(micrograph),
                               atol=1e-3)


def test_bad_inputs_are_input_errors_and_bad_settings_settings_errors(blobs):
    micrographs, coordinates = blobs
    with pytest.raises(InputError, match="one coordinate array per micrograph"):
        train_picker(micrographs[:2], coordinates[:1], SMALL)
    with pytest.raises(InputError, match=r"\(n, 2\)"):
        train_picker(micrographs[:1], [np.zeros((3, 3))], SMALL)
    with pytest.raises(SettingsError, match="under one pixel"):
        train_picker(micrographs[:1], coordinates[:1], replace(SMALL, label_radius=1))
    with pytest.raises(SettingsError, match="pretrained"):
        train_picker(micrographs[:1], coordinates[:1], replace(SMALL, pretrained=True))
