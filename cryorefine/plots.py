"""Figures for training and evaluation (matplotlib, Agg backend: no display needed).

Every spectrum here is `cryorefine.spectra.radial_log_power`, the same RPSD the loss and the
metrics use, so a plotted curve and a reported number always agree. Every figure takes a title
naming the method and the data set, so figures from different runs cannot be mistaken for each other.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cryorefine.io.atomic import atomic_path  # noqa: E402


def _save(figure, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def _log_amplitude(image: np.ndarray) -> np.ndarray:
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image, norm="ortho"))))


def plot_panels(path: str | os.PathLike, sim: np.ndarray, fake: np.ndarray, raw: np.ndarray, *, title: str,
                fake_label: str = "fake", max_columns: int = 6) -> None:
    """Rows sim / fake / raw, each followed by its log(1 + |F|) row; one column per particle (n, H, W)."""
    plot_image_sets(path, {"sim": sim, fake_label: fake, "raw": raw}, title=title, max_columns=max_columns)


def plot_image_sets(path: str | os.PathLike, sets: dict[str, np.ndarray], *, title: str, max_columns: int = 6,
                    shared_grey_scale: bool = True) -> None:
    """One row per named set of paired images (n, H, W), each followed by its log(1 + |F|) row; column j is
    particle j of every set. One grey scale for all sets makes their contrast comparable; one per set shows
    a clean image that realistic noise would hide. Needs no torch (Scipion's plugin draws with it)."""
    sets = {name: np.asarray(images) for name, images in sets.items()}
    n = min(max_columns, *(len(v) for v in sets.values()))
    rows = 2 * len(sets)
    figure, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.6 * rows), squeeze=False)
    shared_range = np.percentile(np.concatenate([v[:n].ravel() for v in sets.values()]), [1, 99])
    for k, (name, images) in enumerate(sets.items()):
        low, high = shared_range if shared_grey_scale else np.percentile(images[:n], [1, 99])
        for j in range(n):
            axes[2 * k, j].imshow(images[j], cmap="gray", vmin=low, vmax=high)
            axes[2 * k + 1, j].imshow(_log_amplitude(images[j]), cmap="magma")
        axes[2 * k, 0].set_ylabel(name)
        axes[2 * k + 1, 0].set_ylabel(f"log|F| {name}")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title)
    _save(figure, path)


def plot_rpsd_curves(path: str | os.PathLike, curves: dict[str, np.ndarray], *, title: str) -> None:
    """Mean RPSD of each named set against normalised frequency.

    A value of shape (N, H, W) is an image set (its mean RPSD is drawn); a 1D value is taken
    as an RPSD already computed by `spectra.radial_log_power`.
    """
    import torch  # here, not at the top: the image figures are drawn where torch is absent

    from cryorefine import spectra

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
    axis.set_title(title, fontsize="medium")
    axis.legend()
    _save(figure, path)


# The training log's columns worth reading, with their names, grouped by panel; the generator's
# terms are drawn weighted (what the optimiser sees), and a term whose weight is 0 is left out.
GENERATOR_TERMS = {"loss_gan": ("adversarial", "lambda_gan"), "loss_l1": ("paired L1", "lambda_l1"),
                   "loss_rpsd": ("RPSD", "lambda_rpsd"), "loss_histogram": ("pixel histogram", "lambda_histogram")}
LOSS_NOTE = ("Left: the generator's terms times their weights (training batches) and the discriminator's loss; "
             "adversarial terms that stay level mean a balanced game. Right: on the held-out pairs, lower is "
             "closer to raw; the dashed line is the clean sim's distance, where a model that adds nothing stands.")


def plot_loss_curves(path: str | os.PathLike, csv_path: str | os.PathLike, weights: dict[str, float], *,
                     title: str) -> None:
    """The training log as two labelled panels: weighted loss terms, and validation distances to raw."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in ("", None) else np.nan for r in rows])

    steps = column("step")
    marker = "." if len(rows) < 20 else None
    figure, (losses, validation) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, (label, weight) in GENERATOR_TERMS.items():
        if weights.get(weight, 0) > 0:
            losses.plot(steps, weights[weight] * column(name), marker=marker, label=f"{label} × {weights[weight]:g}")
    losses.plot(steps, column("loss_d"), marker=marker, color="black", label="discriminator")
    losses.set_xlabel("step")
    losses.set_ylabel("loss (weighted)")
    losses.legend(fontsize="small")
    validation.plot(steps, column("val_rpsd_l1"), marker=marker, label="RPSD L1, model vs raw")
    validation.plot(steps, column("val_rpsd_l1_sim"), linestyle="--", color="grey", label="RPSD L1, sim vs raw")
    validation.plot(steps, column("val_pixel_l1"), marker=marker, label="pixel L1, model vs raw")
    validation.set_xlabel("step")
    validation.set_ylabel("distance to raw (held-out pairs)")
    validation.set_yscale("log")  # the RPSD distance is a few hundredths, the pixel L1 about 1
    validation.legend(fontsize="small")
    figure.suptitle(title)
    figure.text(0.01, -0.02, LOSS_NOTE, fontsize="small", wrap=True, va="top")
    figure.tight_layout()
    _save(figure, path)


def plot_curves(path: str | os.PathLike, x: np.ndarray, curves: dict[str, np.ndarray], xlabel: str, ylabel: str,
                *, title: str, log_y: bool = False, emphasise: str | None = None) -> None:
    """Named 1D curves (FRC, noise power spectra) against a shared x axis; `emphasise` is drawn in black.

    On a log axis a curve with no positive value cannot be drawn; it is named as zero instead of
    leaving a legend entry with no line.
    """
    figure, axis = plt.subplots(figsize=(6, 4) if len(curves) > 4 else (5, 3.5))
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        if log_y and not (values > 0).any():
            axis.plot([], [], " ", label=f"{name}: zero at every frequency")
            continue
        style = {"color": "black", "linewidth": 2.5, "zorder": 10} if name == emphasise else {}
        axis.plot(x, values, label=name, **style)
    axis.set_title(title, fontsize="medium")
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small")
    _save(figure, path)


def plot_histograms(path: str | os.PathLike, sets: dict[str, np.ndarray], *, title: str, bins: int = 100) -> None:
    """Pixel-value densities of named image sets on shared bins (0.1th to 99.9th percentile of all)."""
    pooled = np.concatenate([np.asarray(v).ravel() for v in sets.values()])
    edges = np.linspace(*np.percentile(pooled, [0.1, 99.9]), bins + 1)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, values in sets.items():
        axis.stairs(np.histogram(np.asarray(values).ravel(), bins=edges, density=True)[0], edges, label=name)
    axis.set_yscale("log")
    axis.set_xlabel("pixel value")
    axis.set_ylabel("density")
    axis.set_title(title, fontsize="medium")
    axis.legend()
    _save(figure, path)


def plot_micrographs(path: str | os.PathLike, images: dict[str, np.ndarray], *, title: str, side: int = 256) -> None:
    """The same top-left square crop of each named standardised micrograph, side by side, ±3 σ."""
    side = min([side, *(min(image.shape) for image in images.values())])
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4), squeeze=False)
    for axis, (name, image) in zip(axes[0], images.items()):
        axis.imshow(image[:side, :side], cmap="gray", vmin=-3, vmax=3)
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title)
    _save(figure, path)
