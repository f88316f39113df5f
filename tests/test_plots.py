"""Every figure is titled and its legend names only what is drawn."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cryorefine import plots


@pytest.fixture
def figures(monkeypatch):
    """Figures as they would be saved, kept open for inspection."""
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure))
    yield saved
    for figure in saved:
        plots.plt.close(figure)


def _titles(figure) -> list[str]:
    texts = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    return [t for t in texts + [axis.get_title() for axis in figure.axes] if t]


def _legend(figure) -> list[str]:
    return [text.get_text() for axis in figure.axes if axis.get_legend() for text in axis.get_legend().get_texts()]


def test_every_plot_carries_its_title(figures, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 16, 16)).astype(np.float32)
    x = np.linspace(0, 1, 8)
    plots.plot_panels(tmp_path / "p.png", images, images, images, fake_label="coloured", title="panels T")
    plots.plot_rpsd_curves(tmp_path / "r.png", {"coloured": images, "raw": images}, title="rpsd T")
    plots.plot_curves(tmp_path / "c.png", x, {"a": x + 1}, "x", "y", title="curves T")
    plots.plot_histograms(tmp_path / "h.png", {"a": images}, title="hist T")
    plots.plot_micrographs(tmp_path / "m.png", {"a": images[0]}, title="micrographs T")
    assert [title for figure in figures for title in _titles(figure) if title.endswith(" T")] == [
        "panels T", "rpsd T", "curves T", "hist T", "micrographs T"]
    assert "coloured" in figures[0].axes[2 * 6].get_ylabel()  # the method's name, not "fake"


def test_a_zero_curve_on_a_log_axis_is_named_not_drawn_blank(figures, tmp_path):
    x = np.linspace(0, 1, 8)
    plots.plot_curves(tmp_path / "c.png", x, {"raw − sim": x + 1, "sim, no noise − sim": np.zeros(8)}, "x", "y",
                      log_y=True, title="T")
    assert _legend(figures[0]) == ["raw − sim", "sim, no noise − sim: zero at every frequency"]


def test_loss_plot_shows_weighted_terms_that_count_with_names(figures, tmp_path):
    log = tmp_path / "log.csv"
    columns = ["step", "loss_d", "loss_gan", "loss_l1", "loss_rpsd", "loss_histogram", "val_rpsd_l1",
               "val_rpsd_l1_sim", "val_pixel_l1"]
    with open(log, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for step in (10, 20):
            writer.writerow({c: step if c == "step" else 0.5 for c in columns})
    weights = {"lambda_gan": 1.0, "lambda_l1": 1.0, "lambda_rpsd": 10.0, "lambda_histogram": 0.0}
    plots.plot_loss_curves(tmp_path / "l.png", log, weights, title="Training: model m")
    legend = _legend(figures[0])
    assert "pixel histogram" not in " ".join(legend)  # weight 0: not a term of this run
    assert "RPSD × 10" in legend and "discriminator" in legend and "RPSD L1, sim vs raw" in legend
    assert all(axis.get_ylabel() for axis in figures[0].axes)
    rpsd = next(line for line in figures[0].axes[0].get_lines() if line.get_label() == "RPSD × 10")
    assert np.allclose(rpsd.get_ydata(), 5.0)  # drawn weighted
