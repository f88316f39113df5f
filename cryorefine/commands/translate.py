"""Unpaired translation of synthetic micrographs into real-looking ones (mask-guided PatchNCE GAN).

The generator sees the clean synthetic micrograph and its particle mask and is trained against
real micrograph tiles with a PatchGAN, a mask-guided contrastive (PatchNCE) term and the RPSD and
pixel-distribution terms; CycleGAN's cycle and identity terms are options (--lambda-cycle 10
--lambda-identity 5), off by default because they made the generator return its input.

Actions:
  train     learn synthetic -> real from `cryorefine scene` output (clean micrographs + masks) and
            one or more real micrographs (a strip of each is held out for evaluation)
  apply     translate every clean micrograph of a scene folder, tile-wise without seams
  evaluate  RPSD L1, classifier AUC and mask preservation against held-out real tiles, beside
            Gaussian and Poisson baselines; writes metrics.json and figures

Examples:
  cryorefine translate train --scenes scene --real real.mrc --out translator --steps 2000
  cryorefine translate apply --model translator --scenes scene --out translated
  cryorefine translate evaluate --model translator --scenes scene_heldout --real real.mrc --out eval
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from cryorefine.errors import InputError
from cryorefine.gan.config import ModelConfig
from cryorefine.io.atomic import StagedOutputDir, atomic_write_text
from cryorefine.io.mrc import write_map
from cryorefine.unpaired.data import real_micrograph, synthetic_scenes
from cryorefine.unpaired.evaluate import EvaluationConfig, evaluate_translation, plot_evaluation, translate_micrograph
from cryorefine.unpaired.train import UnpairedConfig, load_translator, train_translator

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train the translator")
    train.add_argument("--scenes", required=True, type=Path, help="a cryorefine scene output folder")
    train.add_argument("--real", required=True, type=Path, nargs="+", help="real micrograph(s), MRC")
    train.add_argument("--out", required=True, type=Path, help="model folder")
    train.add_argument("--holdout", type=float, default=0.25, help="fraction of each real micrograph's columns held out")
    train.add_argument("--steps", type=int, default=UnpairedConfig.steps)
    train.add_argument("--batch-size", type=int, default=UnpairedConfig.batch_size)
    train.add_argument("--tile", type=int, default=UnpairedConfig.tile, help="training tile size in pixels")
    train.add_argument("--base-channels", type=int, default=ModelConfig.base_channels)
    train.add_argument("--depth", type=int, default=ModelConfig.depth)
    train.add_argument("--lambda-nce", type=float, default=UnpairedConfig.lambda_nce)
    train.add_argument("--lambda-cycle", type=float, default=UnpairedConfig.lambda_cycle,
                       help="cycle-consistency weight; 0 drops the cycle (contrastive-only, CUT-like)")
    train.add_argument("--lambda-identity", type=float, default=UnpairedConfig.lambda_identity)
    train.add_argument("--seed", type=int, default=0)
    for action in (actions.add_parser("apply", help="translate a scene folder"),
                   actions.add_parser("evaluate", help="score against held-out real tiles")):
        action.add_argument("--model", required=True, type=Path, help="model folder from translate train")
        action.add_argument("--scenes", required=True, type=Path, help="a cryorefine scene output folder")
        action.add_argument("--out", required=True, type=Path, help="output folder")
        action.add_argument("--tile", type=int, default=256, help="window size for tile-wise application")
        action.add_argument("--margin", type=int, default=32, help="context margin discarded per window side")
        action.add_argument("--seed", type=int, default=0)
        if action.prog.endswith("evaluate"):
            action.add_argument("--real", required=True, type=Path, help="the real micrograph used in training")
            action.add_argument("--holdout", type=float, default=0.25, help="as in training")
            action.add_argument("--classifier-steps", type=int, default=300)


def _real_parts(paths: list[Path], pixel_size: float, holdout: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not 0 < holdout < 1:
        raise InputError(paths[0], f"--holdout {holdout} must be between 0 and 1")
    parts = [real_micrograph(path, pixel_size, holdout) for path in paths]
    return [p[0] for p in parts], [p[1] for p in parts]


def _model_file(model_dir: Path) -> Path:
    path = model_dir / "translator.pt"
    if not path.exists():
        raise InputError(model_dir, "no translator.pt (run cryorefine translate train)")
    return path


def _dose_per_pixel(scene_dir: Path) -> float:
    description = json.loads((scene_dir / "scene.json").read_text())
    config = description["config"]
    if not config.get("dose_per_a2"):
        raise InputError(scene_dir, "scene built without a dose (--dose 0): no counts scale for the baselines")
    return float(config["dose_per_a2"]) * float(config["pixel_size"]) ** 2


def main(args: argparse.Namespace) -> None:
    cleans, masks, pixel_size = synthetic_scenes(args.scenes)
    if args.action == "train":
        real, _ = _real_parts(args.real, pixel_size, args.holdout)
        config = UnpairedConfig(model=ModelConfig(base_channels=args.base_channels, depth=args.depth),
                                steps=args.steps, batch_size=args.batch_size, tile=args.tile,
                                lambda_nce=args.lambda_nce, lambda_cycle=args.lambda_cycle,
                                lambda_identity=args.lambda_identity, seed=args.seed)
        with StagedOutputDir(args.out) as staged:
            train_translator(cleans, masks, real, config, staged.stage)
        return
    translator = load_translator(_model_file(args.model))
    if args.action == "apply":
        with StagedOutputDir(args.out) as staged:
            for index, (clean, mask) in enumerate(zip(cleans, masks)):
                output = translate_micrograph(translator, clean, mask, args.tile, args.margin, args.seed + index)
                write_map(staged.path(f"translated_{index:03d}.mrc"), translator.real.inverse(output), pixel_size)
        log.info("translated %d micrographs into %s", len(cleans), args.out)
        return
    _, heldout = _real_parts([args.real], pixel_size, args.holdout)
    config = EvaluationConfig(classifier_steps=args.classifier_steps, apply_tile=args.tile,
                              apply_margin=args.margin, seed=args.seed, tile=translator.config.tile)
    metrics, images = evaluate_translation(translator, cleans[0], masks[0], heldout[0], _dose_per_pixel(args.scenes),
                                           config)
    with StagedOutputDir(args.out) as staged:
        atomic_write_text(staged.path("metrics.json"), json.dumps(metrics, indent=2) + "\n")
        plot_evaluation(staged.stage, images, config.tile, config.seed)
    for name, values in metrics.items():
        log.info("%s: %s", name, ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
