"""Score fake particle images against real ones with offline realism metrics.

Rows of --fake, --raw and --sim are paired by order (row i is the same particle in each), so
the files must list the same number of particles of the same box. Writes DIR/metrics.json
(RPSD L1/MSE on whole images and inside/outside a soft particle mask, pixel L1/MSE and
Wasserstein-1, moments, classifier two-sample ROC AUC, and with --sim the FRC of fake and raw
with the clean sim and their residual noise power spectra) and plots in DIR/plots/.

Example:
  cryorefine evaluate --fake applied/particles.star --raw pairs/raw.star --sim pairs/sim.star --out eval
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from cryorefine import plots
from cryorefine.errors import InputError
from cryorefine.io.atomic import StagedOutputDir
from cryorefine.io.mrc import ParticleImages
from cryorefine.io.star import read_particle_star
from cryorefine.metrics import ClassifierConfig, evaluate_sets

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fake", required=True, type=Path, help="STAR file of the images to score")
    parser.add_argument("--raw", required=True, type=Path, help="STAR file of the real images, same rows")
    parser.add_argument("--sim", type=Path,
                        help="STAR file of the clean simulations, same rows (enables FRC and noise spectra)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--mask-diameter", type=float, metavar="A",
                        help="particle mask diameter in Å for inside/outside RPSD (default: 60%% of the box)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifier test (default 0)")
    parser.add_argument("--max-images", type=int, default=1000, metavar="N",
                        help="score only the first N pairs (default 1000)")
    parser.add_argument("--classifier-steps", type=int, default=ClassifierConfig.steps, metavar="N",
                        help=f"training steps of the classifier test (default {ClassifierConfig.steps})")
    parser.add_argument("--project-dir", type=Path, help="folder the stack paths in the STAR files are relative to")


def _open(path: Path, project_dir: Path | None) -> ParticleImages:
    return ParticleImages(read_particle_star(path), project_dir)


def _check_paired(reference: ParticleImages, other: ParticleImages) -> None:
    if len(other) != len(reference):
        raise InputError(other.star.path, f"has {len(other)} particles but {reference.star.path} has "
                         f"{len(reference)}; evaluate pairs rows by order")
    if other.box != reference.box:
        raise InputError(other.star.path, f"box {other.box} differs from {reference.box} in {reference.star.path}")


def main(args: argparse.Namespace) -> None:
    if args.max_images is not None and args.max_images < 4:
        raise InputError(None, "--max-images must be at least 4 (the classifier test needs pairs to split)")
    if args.classifier_steps < 1:
        raise InputError(None, "--classifier-steps must be positive")
    raw = _open(args.raw, args.project_dir)
    fake = _open(args.fake, args.project_dir)
    _check_paired(raw, fake)
    sim = None
    if args.sim is not None:
        sim = _open(args.sim, args.project_dir)
        _check_paired(raw, sim)
    n = min(len(raw), args.max_images)
    if n < 4:
        raise InputError(args.raw, f"has {n} particles; the classifier test needs at least 4")
    rows = np.arange(n)
    raw_images, fake_images = raw.read(rows), fake.read(rows)
    sim_images = None if sim is None else sim.read(rows)

    pixel_size = float(raw.star.optics["rlnImagePixelSize"].astype(float).iloc[0])
    diameter_px = None if args.mask_diameter is None else args.mask_diameter / pixel_size
    metrics = evaluate_sets(fake_images, raw_images, sim_images, mask_diameter_px=diameter_px, seed=args.seed,
                            classifier=ClassifierConfig(steps=args.classifier_steps))
    metrics["inputs"] = {"fake": str(args.fake), "raw": str(args.raw),
                         "sim": None if args.sim is None else str(args.sim), "pixel_size": pixel_size}

    with StagedOutputDir(args.out) as out:
        out.path("metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        _write_plots(out, metrics, fake_images, raw_images, sim_images)
    log.info("RPSD L1 %.4f, classifier AUC %.3f; metrics in %s", metrics["rpsd"]["l1"],
             metrics["classifier"]["auc"], args.out / "metrics.json")


def _write_plots(out: StagedOutputDir, metrics: dict, fake: np.ndarray, raw: np.ndarray,
                 sim: np.ndarray | None) -> None:
    curves = metrics["curves"]
    rpsd = {"fake": np.array(curves["rpsd_fake"]), "raw": np.array(curves["rpsd_raw"])}
    if sim is not None:
        rpsd["sim"] = np.array(curves["rpsd_sim"])
    plots.plot_rpsd_curves(out.path("plots/rpsd.png"), rpsd)
    plots.plot_histograms(out.path("plots/histograms.png"), {"fake": fake, "raw": raw})
    if sim is None:
        return
    frequency = np.array(curves["frequency"])
    plots.plot_curves(out.path("plots/frc.png"), frequency,
                      {"fake vs sim": metrics["frc"]["fake_vs_sim"], "raw vs sim": metrics["frc"]["raw_vs_sim"]},
                      "spatial frequency / Nyquist", "FRC with the clean sim")
    plots.plot_curves(out.path("plots/noise_power.png"), frequency,
                      {"fake − sim": metrics["noise_power"]["fake_minus_sim"],
                       "raw − sim": metrics["noise_power"]["raw_minus_sim"]},
                      "spatial frequency / Nyquist", "residual noise power", log_y=True)
    plots.plot_panels(out.path("plots/panels.png"), sim, fake, raw)
