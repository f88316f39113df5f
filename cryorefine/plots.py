"""Figures for training and evaluation (matplotlib, Agg backend: no display needed).

Every spectrum here is `cryorefine.spectra.radial_log_power`, the same RPSD the loss and the
metrics use, so a plotted curve and a reported number always agree.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cryorefine import spectra  # noqa: E402
from cryorefine.io.atomic import atomic_path  # noqa: E402


def _save(figure, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def _log_amplitude(image: np.ndarray) -> np.ndarray:
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image, norm="ortho"))))


def plot_panels(path: str | os.PathLike, sim: np.ndarray, fake: np.ndarray, raw: np.ndarray, max_columns: int = 6) -> None:
    """Rows sim / fake / raw, each followed by its log(1 + |F|) row; one column per particle (n, H, W)."""
    sets = {"sim": np.asarray(sim), "fake": np.asarray(fake), "raw": np.asarray(raw)}
    n = min(max_columns, *(len(v) for v in sets.values()))
    figure, axes = plt.subplots(6, n, figsize=(1.6 * n, 1.6 * 6), squeeze=False)
    # One grey scale per row kind, shared by sim/fake/raw so their contrast is comparable.
    real_range = np.percentile(np.concatenate([v[:n].ravel() for v in sets.values()]), [1, 99])
    for k, (name, images) in enumerate(sets.items()):
        for j in range(n):
            axes[2 * k, j].imshow(images[j], cmap="gray", vmin=real_range[0], vmax=real_range[1])
            axes[2 * k + 1, j].imshow(_log_amplitude(images[j]), cmap="magma")
        axes[2 * k, 0].set_ylabel(name)
        axes[2 * k + 1, 0].set_ylabel(f"log|F| {name}")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    _save(figure, path)


def plot_rpsd_curves(path: str | os.PathLike, curves: dict[str, np.ndarray]) -> None:
    """Mean RPSD of each named set against normalised frequency.

    A value of shape (N, H, W) is an image set (its mean RPSD is drawn); a 1D value is taken
    as an RPSD already computed by `spectra.radial_log_power`.
    """
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, values in curves.items():
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 1:
            curve = values
        else:
            rpsd = spectra.radial_log_power(torch.from_numpy(values))
            curve = rpsd.reshape(-1, rpsd.shape[-1]).mean(0).numpy()
        frequency = (np.arange(len(curve)) + 0.5) / len(curve)
        axis.plot(frequency, curve, label=name)
    axis.set_xlabel("spatial frequency / Nyquist")
    axis.set_ylabel("mean log(1 + |F|²)")
    axis.legend()
    _save(figure, path)


def plot_loss_curves(path: str | os.PathLike, csv_path: str | os.PathLike) -> None:
    """Every numeric column of a training log against its `step` column, one panel per column."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in (rows[0].keys() if rows else []) if c != "step"]
    n_cols = 3
    n_rows = max(1, -(-len(columns) // n_cols))
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 2.6 * n_rows), squeeze=False)
    steps = np.array([float(r["step"]) for r in rows])
    for axis, column in zip(axes.ravel(), columns):
        values = np.array([float(r[column]) if r[column] not in ("", None) else np.nan for r in rows])
        axis.plot(steps, values, marker="." if len(rows) < 20 else None)
        axis.set_title(column, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
    for axis in axes.ravel()[len(columns):]:
        axis.set_visible(False)
    figure.tight_layout()
    _save(figure, path)


def plot_curves(path: str | os.PathLike, x: np.ndarray, curves: dict[str, np.ndarray], xlabel: str, ylabel: str,
                log_y: bool = False, title: str | None = None, emphasise: str | None = None) -> None:
    """Named 1D curves (FRC, noise power spectra) against a shared x axis; `emphasise` is drawn in black."""
    figure, axis = plt.subplots(figsize=(6, 4) if len(curves) > 4 else (5, 3.5))
    for name, values in curves.items():
        style = {"color": "black", "linewidth": 2.5, "zorder": 10} if name == emphasise else {}
        axis.plot(x, np.asarray(values), label=name, **style)
    if title:
        axis.set_title(title)
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small")
    _save(figure, path)


def plot_histograms(path: str | os.PathLike, sets: dict[str, np.ndarray], bins: int = 100) -> None:
    """Pixel-value densities of named image sets on shared bins (0.1th to 99.9th percentile of all)."""
    pooled = np.concatenate([np.asarray(v).ravel() for v in sets.values()])
    edges = np.linspace(*np.percentile(pooled, [0.1, 99.9]), bins + 1)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, values in sets.items():
        axis.stairs(np.histogram(np.asarray(values).ravel(), bins=edges, density=True)[0], edges, label=name)
    axis.set_yscale("log")
    axis.set_xlabel("pixel value")
    axis.set_ylabel("density")
    axis.legend()
    _save(figure, path)


def plot_micrographs(path: str | os.PathLike, images: dict[str, np.ndarray], side: int = 256) -> None:
    """The same top-left square crop of each named standardised micrograph, side by side, ±3 σ."""
    side = min([side, *(min(image.shape) for image in images.values())])
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4), squeeze=False)
    for axis, (name, image) in zip(axes[0], images.items()):
        axis.imshow(image[:side, :side], cmap="gray", vmin=-3, vmax=3)
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    _save(figure, path)
