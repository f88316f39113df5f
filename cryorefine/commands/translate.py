"""Unpaired translation of synthetic micrographs into real-looking ones.

Two learned methods, both conditioned on the scene's particles so they stay in place:
  contrastive  generator on [physics image, particle mask] trained against real tiles with a
               PatchGAN, a mask-guided PatchNCE term and the RPSD and pixel-distribution terms;
               the physics image (--input physics, the default) is the coloured baseline, so the
               network corrects the best simple baseline; --input clean gives it the clean
               micrograph to invent all noise; CycleGAN's cycle and identity terms are options
               (--lambda-cycle 10 --lambda-identity 5), off by default because they made the
               generator return its input
  diffusion    conditional DDPM trained on real tiles given their own low-pass; sampling starts
               from noise (--start-level 1) or from the physics image noised to a level (partial
               diffusion, e.g. --start-level 0.5), conditions on the low-pass, keeps the particles'
               low frequencies inside the masks, and takes --sampling-steps stochastic steps

Actions:
  train  learn synthetic -> real from `cryorefine scene` output (clean micrographs + masks) and
         one or more real micrographs (the last --holdout of each one's columns is never used);
         writes translator.pt (checkpointed every --checkpoint-every steps), config.json and
         log.csv; --resume continues a run, exactly as if it had not stopped
  apply  turn every micrograph of a scene folder into translated_NNN.mrc (tile-wise, without
         seams) beside copies of its coords_NNN.star and mask_NNN.mrc; with --baseline instead of
         --model: gaussian or poisson noise, coloured (Gaussian noise that gives the micrograph the
         real one's measured power spectrum, fitted on its training part), or real-background (the
         scene's particles on a strip of a real micrograph: real ice and detector noise)

Both actions run on --device (default: a GPU when the machine has one; train computes there in mixed
precision unless --no-amp), in one process: torchrun is refused, as the translators are not split across
GPUs.

Score the outputs with `cryorefine evaluate micrographs --sets NAME=DIR ... --real REAL.mrc`.

Examples:
  cryorefine translate train --scenes scene --real real.mrc --out translator --steps 2000
  cryorefine translate train --method diffusion --scenes scene --real real.mrc --out ddpm --steps 3000
  cryorefine translate train --scenes scene --real real.mrc --out translator --steps 4000 --resume
  cryorefine translate apply --model translator --scenes scene_heldout --out translated
  cryorefine translate apply --baseline gaussian --scenes scene_heldout --out gaussian
  cryorefine translate apply --baseline coloured --real real.mrc --scenes scene_heldout --out coloured
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryorefine.artifacts import SceneDescription, SceneFolder, TranslatedFolder, TranslatorFolder
from cryorefine.commands.options import action_help, add_amp, add_device
from cryorefine.errors import InputError, SettingsError
from cryorefine.gan.config import ModelConfig
from cryorefine.unpaired.config import BASELINES, INPUTS, METHODS, DiffusionConfig, UnpairedConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a translator", formatter_class=argparse.RawDescriptionHelpFormatter,
                               description=action_help(__doc__, "translate", "train"))
    train.add_argument("--method", choices=METHODS, default=METHODS[0], help="(default %(default)s)")
    train.add_argument("--scenes", required=True, type=Path, help="a cryorefine scene output folder")
    train.add_argument("--real", required=True, type=Path, nargs="+", help="real micrograph(s), MRC")
    train.add_argument("--out", required=True, type=Path, help="model folder")
    train.add_argument("--holdout", type=float, default=0.25, help="fraction of each real micrograph's columns held out")
    train.add_argument("--steps", type=int, help=f"training steps (default {UnpairedConfig.steps} contrastive, "
                       f"{DiffusionConfig.steps} diffusion)")
    train.add_argument("--batch-size", type=int, help=f"tiles per step (default {UnpairedConfig.batch_size} "
                       f"contrastive, {DiffusionConfig.batch_size} diffusion)")
    train.add_argument("--tile", type=int, default=UnpairedConfig.tile, help="training tile size in pixels")
    train.add_argument("--base-channels", type=int, default=ModelConfig.base_channels,
                       help="generator width at full resolution (default %(default)s)")
    train.add_argument("--depth", type=int, default=ModelConfig.depth,
                       help="generator levels; each halves the tile (default %(default)s)")
    train.add_argument("--lambda-nce", type=float, default=UnpairedConfig.lambda_nce,
                       help="contrastive: weight of the mask-guided PatchNCE term (default %(default)s)")
    train.add_argument("--lambda-cycle", type=float, default=UnpairedConfig.lambda_cycle,
                       help="contrastive: cycle-consistency weight; 0 drops the cycle (CUT-like)")
    train.add_argument("--lambda-identity", type=float, default=UnpairedConfig.lambda_identity, help="contrastive")
    train.add_argument("--lambda-structure", type=float, default=UnpairedConfig.lambda_structure,
                       help="contrastive: weight of the in-mask low-pass L1 between output and input "
                       "(default %(default)s)")
    train.add_argument("--input", choices=INPUTS, default=UnpairedConfig.input,
                       help="contrastive: the generator's input, the coloured baseline (physics) or the clean "
                       "micrograph (default %(default)s)")
    train.add_argument("--condition-sigma", type=float, default=DiffusionConfig.condition_sigma, metavar="PX",
                       help="diffusion: low-pass of the structure condition (default %(default)s px)")
    train.add_argument("--sampling-steps", type=int, default=DiffusionConfig.sampling_steps,
                       help="diffusion: stochastic sampling steps used by apply (default %(default)s)")
    train.add_argument("--guidance", type=float, default=DiffusionConfig.guidance,
                       help="diffusion: weight of the in-mask low-frequency guidance, 0..1 (default %(default)s)")
    train.add_argument("--start-level", type=float, default=DiffusionConfig.start_level,
                       help="diffusion: noise level sampling starts from, 0..1; below 1 it starts from the physics "
                       "image (partial diffusion; default %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="seed of the tiles and weights (default 0)")
    train.add_argument("--log-every", type=int, default=UnpairedConfig.log_every,
                       help="steps between rows of log.csv (default %(default)s)")
    train.add_argument("--checkpoint-every", type=int, default=UnpairedConfig.checkpoint_every,
                       help="steps between checkpoints that --resume continues from (default %(default)s)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out (same settings; --steps may grow)")
    add_amp(train)

    apply = actions.add_parser("apply", help="translate a scene folder, or apply a baseline to it",
                               formatter_class=argparse.RawDescriptionHelpFormatter, description=action_help(__doc__, "translate", "apply"))
    for action in (train, apply):
        action.set_defaults(command_parser=action)
        add_device(action)
    source = apply.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="model folder from translate train")
    source.add_argument("--baseline", choices=BASELINES, help="a baseline instead of a model")
    apply.add_argument("--scenes", required=True, type=Path, help="a cryorefine scene output folder")
    apply.add_argument("--out", required=True, type=Path, help="output folder")
    apply.add_argument("--real", type=Path, help="coloured, real-background: the real micrograph")
    apply.add_argument("--holdout", type=float, default=0.25,
                       help="coloured, real-background: the held-out fraction of the real micrograph's columns, as "
                       "in training (coloured fits on the rest)")
    apply.add_argument("--background-strip", choices=("held-out", "training"), default="held-out",
                       help="real-background: the part of the real micrograph the particles are put on (default "
                       "%(default)s, the test strip; training, for a training set)")
    apply.add_argument("--sampling-steps", type=int, help="diffusion: override the model's sampling steps")
    apply.add_argument("--guidance", type=float, help="diffusion: override the model's in-mask guidance weight")
    apply.add_argument("--start-level", type=float, help="diffusion: override the model's start level")
    apply.add_argument("--tile", type=int, default=256, help="window size for tile-wise application")
    apply.add_argument("--margin", type=int, default=32, help="context margin discarded per window side")
    apply.add_argument("--seed", type=int, default=0, help="seed of the noise; micrograph k uses seed + k (default 0)")


def _real_parts(paths: list[Path], pixel_size: float, holdout: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from cryorefine.unpaired.data import real_micrograph

    if not 0 < holdout < 1:
        raise InputError(paths[0], f"--holdout {holdout} must be between 0 and 1")
    parts = [real_micrograph(path, pixel_size, holdout) for path in paths]
    return [p[0] for p in parts], [p[1] for p in parts]


def _dose_per_pixel(scene_dir: Path) -> float:
    scene = SceneDescription.read(scene_dir)
    if scene.dose_per_a2 is None:
        raise InputError(scene_dir, "scene built without a dose (--dose 0): no counts scale for the baselines or the physics input (train with --input clean)")
    return scene.dose_per_a2 * scene.pixel_size**2


def _device(args: argparse.Namespace) -> torch.device:
    """The device of `--device`; one process only (the translators' tasks are not split across ranks)."""
    from cryorefine.device import resolve_device
    from cryorefine.training import Distributed

    if Distributed.from_environment().world_size > 1:
        raise SettingsError("translate runs in one process: start it without torchrun (use --device cuda:N to "
                            "choose the GPU)")
    return resolve_device(args.device)


def _train(args: argparse.Namespace, cleans: list[np.ndarray], masks: list[np.ndarray], pixel_size: float,
           device: torch.device) -> None:
    from cryorefine.unpaired.diffusion import train_diffusion
    from cryorefine.unpaired.train import train_translator

    real, _ = _real_parts(args.real, pixel_size, args.holdout)
    smallest = min(min(image.shape) for image in (*cleans, *real))
    if not 16 <= args.tile <= smallest:
        raise SettingsError(f"--tile {args.tile} must be between 16 px and {smallest} px, the smallest training "
                            "image (a scene micrograph or the training part of a real one)")
    model = ModelConfig(base_channels=args.base_channels, depth=args.depth)
    amp = not args.no_amp
    new_folder = not args.out.exists()
    try:
        if args.method == "diffusion":
            config = DiffusionConfig(model=model, steps=args.steps or DiffusionConfig.steps,
                                     batch_size=args.batch_size or DiffusionConfig.batch_size, tile=args.tile,
                                     condition_sigma=args.condition_sigma, sampling_steps=args.sampling_steps,
                                     guidance=args.guidance, start_level=args.start_level,
                                     log_every=args.log_every, checkpoint_every=args.checkpoint_every, seed=args.seed)
            _, rows = train_diffusion(cleans, real, config, args.out, args.resume, device, amp)
        else:
            config = UnpairedConfig(model=model, steps=args.steps or UnpairedConfig.steps,
                                    batch_size=args.batch_size or UnpairedConfig.batch_size, tile=args.tile,
                                    lambda_nce=args.lambda_nce, lambda_cycle=args.lambda_cycle,
                                    lambda_identity=args.lambda_identity, lambda_structure=args.lambda_structure,
                                    input=args.input, log_every=args.log_every, checkpoint_every=args.checkpoint_every,
                                    seed=args.seed)
            dose = _dose_per_pixel(args.scenes) if config.input == "physics" else None
            _, rows = train_translator(cleans, masks, real, config, dose, args.out, args.resume, device, amp)
    except BaseException:
        # A run that fails before its first checkpoint leaves no half-made model folder behind.
        if new_folder and not (args.out / TranslatorFolder.MODEL).exists():
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    if rows:  # none when a resumed run had no steps left (the training loop said so)
        log.info("%s translator trained in %s", args.method, args.out)


def _apply(args: argparse.Namespace, cleans: list[np.ndarray], masks: list[np.ndarray], pixel_size: float,
           device: torch.device) -> None:
    from cryorefine.io.atomic import StagedOutputDir
    from cryorefine.io.mrc import read_micrograph, write_map
    from cryorefine.io.star import read_coordinate_star
    from cryorefine.scene.coordinates import write_coordinate_star
    from cryorefine.unpaired.diffusion import DiffusionTranslator
    from cryorefine.unpaired.methods import MicrographNoise, noise_baseline, real_background, translate_micrograph
    from cryorefine.unpaired.store import load_translator

    if args.baseline in ("coloured", "real-background") and args.real is None:
        raise SettingsError(f"--baseline {args.baseline} needs --real (the real micrograph it is measured on)")
    translator = None
    if args.model is not None:
        if not (args.model / TranslatorFolder.MODEL).exists():
            raise InputError(args.model, f"no {TranslatorFolder.MODEL} (run cryorefine translate train)")
        translator = load_translator(args.model / TranslatorFolder.MODEL).to(device)
        overrides = {k: v for k, v in (("sampling_steps", args.sampling_steps), ("guidance", args.guidance),
                                       ("start_level", args.start_level)) if v is not None}
        if overrides:
            if not isinstance(translator, DiffusionTranslator):
                raise InputError(args.model, "--sampling-steps, --guidance and --start-level apply to a diffusion "
                                             "model only")
            translator.config = dataclasses.replace(translator.config, **overrides)
        if translator.needs_physics and translator.noise is None:
            raise InputError(args.model, "model saved before the physics input existed: it has no measured real "
                                         "spectrum (train it again, or use --start-level 1)")
    dose = None if translator is not None and not translator.needs_physics else _dose_per_pixel(args.scenes)
    background, noise = None, None
    if args.baseline in ("coloured", "real-background"):
        training, held_out = _real_parts([args.real], pixel_size, args.holdout)
        if args.baseline == "coloured":
            noise = MicrographNoise.fit(training)
        else:
            background = (held_out if args.background_strip == "held-out" else training)[0]
    with StagedOutputDir(args.out) as staged:
        for index, (clean, mask) in enumerate(zip(cleans, masks)):
            coordinates, mask_file = (SceneFolder.COORDINATES.format(index), SceneFolder.MASK.format(index))
            if background is not None:
                labels = read_micrograph(args.scenes / mask_file)[0]
                image, cropped, kept = real_background(clean, labels, read_coordinate_star(args.scenes / coordinates),
                                                       background, dose)
                write_map(staged.path(mask_file), cropped, pixel_size)
                write_coordinate_star(staged.path(coordinates), kept)
            else:
                seed = args.seed + index
                if translator is not None:
                    image = translate_micrograph(translator, clean, mask, args.tile, args.margin, seed, dose, device)
                elif noise is not None:
                    image = noise.sample(clean, dose, seed)
                else:
                    image = noise_baseline(args.baseline, clean, dose, seed)
                for copied in (coordinates, mask_file):
                    shutil.copyfile(args.scenes / copied, staged.path(copied))
            write_map(staged.path(TranslatedFolder.MICROGRAPH.format(index)), image, pixel_size)
    log.info("wrote %d micrographs (%s) to %s", len(cleans), args.baseline or f"model {args.model}", args.out)


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse impossible combinations before any work (each number's own range is checked when parsed)."""
    if args.action == "train":
        if args.batch_size is not None and args.batch_size < 2:
            raise SettingsError("--batch-size must be at least 2 (the contrastive term compares tiles)")
    elif args.tile <= 2 * args.margin:
        raise SettingsError(f"--tile {args.tile} must be larger than twice --margin {args.margin}")


def main(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import refuse_output_over_inputs
    from cryorefine.unpaired.data import synthetic_scenes

    _check_numbers(args)
    device = _device(args)  # refused before any input is read
    real = args.real if isinstance(args.real, list) else [args.real]
    refuse_output_over_inputs(args.out, files=real, folders=[args.scenes, getattr(args, "model", None)])
    cleans, masks, pixel_size = synthetic_scenes(args.scenes)
    (_train if args.action == "train" else _apply)(args, cleans, masks, pixel_size, device)
