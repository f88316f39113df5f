"""Score translated synthetic micrographs against held-out real tiles, beside the noise baselines.

Compared sets, all standardised to zero mean and unit variance over the whole micrograph:
- translated: G_AB applied tile-wise to a whole clean synthetic micrograph;
- gaussian / poisson: the same clean micrograph with the project's noise baselines
  (`cryorefine.noise.NoiseModel`) at the scene's dose per pixel D: white Gaussian noise of
  variance D, or Poisson counts with mean equal to the clean expected counts;
- real: tiles of the held-out strip of the real micrograph.
Metrics: RPSD L1 against real (`cryorefine.spectra.rpsd_distance`), the classifier two-sample
ROC AUC (`cryorefine.metrics.classifier_auc`) on equal numbers of random tiles, and mask
preservation: the correlation, inside the particle masks, between the low-passed output and the
low-passed clean image (particles still where and what they were).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from cryorefine import plots  # sets the Agg backend before pyplot is imported
from cryorefine.metrics import ClassifierConfig, classifier_auc
from cryorefine.noise import NoiseModel
from cryorefine.spectra import rpsd_distance
from cryorefine.unpaired.data import Standardiser, random_tiles
from cryorefine.unpaired.tiling import apply_tiled
from cryorefine.unpaired.train import Translator

import matplotlib.pyplot as plt  # noqa: E402  (after plots: no display backend)

LOW_PASS_SIGMA_PX = 2.0


@dataclass(frozen=True)
class EvaluationConfig:
    tile: int = 64
    n_tiles: int = 256
    classifier_steps: int = 300
    apply_tile: int = 256
    apply_margin: int = 32
    seed: int = 0


def translate_micrograph(translator: Translator, clean: np.ndarray, mask: np.ndarray, tile: int, margin: int,
                         seed: int = 0) -> np.ndarray:
    """Whole synthetic micrograph -> real-looking one, in the real domain's standardised units."""
    noise = torch.Generator().manual_seed(seed)
    image = translator.synthetic.forward(clean)
    return apply_tiled(lambda x, m: translator.translate(x, m, noise), image, mask, tile=tile, margin=margin)


def baselines(clean_counts: np.ndarray, dose_per_pixel: float, seed: int) -> dict[str, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    signal = torch.from_numpy(clean_counts.astype(np.float64) - dose_per_pixel)[None]
    sigma = math.sqrt(dose_per_pixel)
    models = {"gaussian": NoiseModel("gaussian", gaussian_std=sigma),
              "poisson": NoiseModel("poisson", poisson_std=sigma, dose=dose_per_pixel)}
    return {name: model.sample(signal, generator)[0].numpy() + dose_per_pixel for name, model in models.items()}


def _standardise(image: np.ndarray) -> np.ndarray:
    return Standardiser.fit([image]).forward(image)


def mask_preservation(output: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    inside = mask > 0
    smooth = lambda x: ndimage.gaussian_filter(x.astype(np.float64), LOW_PASS_SIGMA_PX)  # noqa: E731
    return float(np.corrcoef(smooth(output)[inside], smooth(clean)[inside])[0, 1])


def evaluate_translation(translator: Translator, clean: np.ndarray, mask: np.ndarray, real_heldout: np.ndarray,
                         dose_per_pixel: float, config: EvaluationConfig) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics per method and the standardised whole images (for figures)."""
    images = {"translated": translate_micrograph(translator, clean, mask, config.apply_tile, config.apply_margin,
                                                 config.seed)}
    images.update(baselines(clean, dose_per_pixel, config.seed))
    images = {name: _standardise(image) for name, image in images.items()}
    real = _standardise(real_heldout)
    rng = np.random.default_rng(config.seed)
    real_tiles = random_tiles([real], config.tile, config.n_tiles, rng)[0][:, 0]
    metrics = {}
    for name, image in images.items():
        tiles = random_tiles([image], config.tile, config.n_tiles, np.random.default_rng(config.seed + 1))[0][:, 0]
        auc = classifier_auc(tiles, real_tiles, seed=config.seed,
                             config=ClassifierConfig(steps=config.classifier_steps))["auc"]
        metrics[name] = {"rpsd_l1": float(rpsd_distance(tiles, real_tiles)[0]), "classifier_auc": auc,
                         "mask_preservation": mask_preservation(image, clean, mask)}
    images["clean"] = _standardise(clean)
    images["real"] = real
    return metrics, images


def plot_evaluation(out_dir, images: dict[str, np.ndarray], tile: int, seed: int = 0) -> None:
    """Whole-image crops side by side, tile panels (clean / translated / real) and RPSD curves."""
    order = ["clean", "gaussian", "poisson", "translated", "real"]
    side = min(min(images[name].shape) for name in order)
    figure, axes = plt.subplots(1, len(order), figsize=(3.2 * len(order), 3.4))
    for axis, name in zip(axes, order):
        axis.imshow(images[name][:side, :side], cmap="gray", vmin=-3, vmax=3)
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.savefig(out_dir / "micrographs.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    tiles = {name: random_tiles([images[name]], tile, 64, np.random.default_rng(seed))[0][:, 0].numpy() for name in order}
    plots.plot_panels(out_dir / "panels.png", tiles["clean"], tiles["translated"], tiles["real"])
    plots.plot_rpsd_curves(out_dir / "rpsd.png", {name: tiles[name] for name in order[1:]})
