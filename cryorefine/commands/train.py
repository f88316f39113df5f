"""Train the sim -> realistic model on the pairs written by `cryorefine simulate`, or on the fly.

With --particles and --map instead of --pairs, no sim stack is written: raw images are streamed
from the original stacks by --num-workers loader processes and re-boxed, normalised and simulated
on the training device exactly as `simulate` would (the sim scale fitted on a sample of particles).

Writes MODEL_DIR/checkpoint.pt + config.json (the model), log.csv (losses and validation
metrics), plots/{panels,rpsd,losses}.png and noise_models.json + residual_bank.npy (the noise
baselines fitted on the training pairs, which `apply --noise` offers beside the GAN; the default
generator starts from the coloured one).

Examples:
  cryorefine train --pairs pairs/ --out model/ --steps 400
  cryorefine train --pairs pairs/ --out model/ --steps 800 --resume     # continue the same run
  cryorefine train --particles run_data.star --map run_class001.mrc --box 128 --out model/ --num-workers 8
                                                                        # on the fly: no sim stack on disk
  torchrun --nproc_per_node 4 -m cryorefine.cli train --pairs pairs/ --out model/ --device cuda
"""

from __future__ import annotations

import argparse
import logging
import shutil
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from cryorefine.commands.options import add_amp, add_device
from cryorefine.commands.simulate import add_simulation_args
from cryorefine.errors import SettingsError
from cryorefine.gan.config import GAN_MODES, NOISE_PRIORS, LossConfig, ModelConfig, TrainConfig
from cryorefine.threads import allowed_cores

if TYPE_CHECKING:  # torch-backed; imported where used, so that --help and argument errors answer at once
    import torch

    from cryorefine.gan.data import PairSource
    from cryorefine.gan.onthefly import OnTheFlyPairs

log = logging.getLogger(__name__)

ON_THE_FLY_NAME = "simulation.json"  # how on-the-fly sims were made (geometry, fitted scale)

# Command-line option -> (config class, field); defaults come from the dataclasses.
_OPTIONS = {
    "steps": (TrainConfig, "steps"), "batch_size": (TrainConfig, "batch_size"), "seed": (TrainConfig, "seed"),
    "lr_generator": (TrainConfig, "lr_generator"), "lr_discriminator": (TrainConfig, "lr_discriminator"),
    "validation_fraction": (TrainConfig, "validation_fraction"), "log_every": (TrainConfig, "log_every"),
    "checkpoint_every": (TrainConfig, "checkpoint_every"), "physical_lr_factor": (TrainConfig, "physical_lr_factor"),
    "gan_loss": (LossConfig, "gan_mode"), "lambda_gan": (LossConfig, "lambda_gan"),
    "lambda_l1": (LossConfig, "lambda_l1"), "lambda_rpsd": (LossConfig, "lambda_rpsd"),
    "lambda_histogram": (LossConfig, "lambda_histogram"),
    "base_channels": (ModelConfig, "base_channels"), "depth": (ModelConfig, "depth"),
    "noise_channels": (ModelConfig, "noise_channels"), "noise_prior": (ModelConfig, "noise_prior"),
}


def _default(cls: type, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


def add_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", type=Path, help="folder written by `cryorefine simulate`")
    source.add_argument("--particles", type=Path, help="RELION particle STAR file: simulate pairs on the fly (with --map)")
    parser.add_argument("--out", required=True, type=Path, help="model folder to create (or continue with --resume)")
    fly = parser.add_argument_group("on-the-fly simulation (with --particles; as in `cryorefine simulate`)")
    on_the_fly = [fly.add_argument("--map", type=Path, help="consensus map (MRC)"), *add_simulation_args(fly)]
    parser.set_defaults(on_the_fly_options=tuple((a.option_strings[0], a.dest, a.default) for a in on_the_fly))
    speed = parser.add_argument_group("speed")
    speed.add_argument("--num-workers", type=int, default=0, help="loader processes reading images ahead (default: 0)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the models (helps on GPU after a warm-up)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out (same settings)")
    add_device(parser)
    add_amp(parser)
    helps = {
        "steps": "training steps (one batch of pairs each)",
        "batch_size": "pairs per step",
        "seed": "seed of the weights, the batch order and the noise (same seed, same model on the CPU)",
        "lr_generator": "Adam learning rate of the generator",
        "lr_discriminator": "Adam learning rate of the discriminator",
        "validation_fraction": "fraction of the pairs held out of training and scored every --log-every steps",
        "log_every": "steps between loss and validation lines in the log and log.csv",
        "checkpoint_every": "steps between checkpoints that --resume continues from",
        "physical_lr_factor": "learning rate of the physics prior's ring gains and Hermite terms, as a multiple of "
        "--lr-generator",
        "gan_loss": "adversarial loss",
        "lambda_gan": "weight of the adversarial term",
        "lambda_l1": "weight of paired L1 (keep modest: large values make the generator output a denoised mean)",
        "lambda_rpsd": "weight of the RPSD L1 term (radially averaged log power spectra)",
        "lambda_histogram": "weight of the pixel-distribution (Wasserstein-1) term",
        "base_channels": "channels of the U-Net's first level (doubled per level)",
        "depth": "U-Net levels (the box must stay at least 2**depth px)",
        "noise_channels": "random-noise input channels of the generator",
        "noise_prior": "the generator's noise source: coloured (the fitted coloured baseline, corrected by the "
        "network) or white (the network makes all the noise)",
    }
    choices = {"noise_prior": NOISE_PRIORS, "gan_loss": GAN_MODES}
    for option, (cls, name) in _OPTIONS.items():
        default = _default(cls, name)
        parser.add_argument(f"--{option.replace('_', '-')}", type=type(default), default=default,
                            choices=choices.get(option),
                            help=f"{helps[option]} (default: {default})")


def _configs(args: argparse.Namespace) -> tuple[ModelConfig, LossConfig, TrainConfig]:
    values: dict[type, dict] = {ModelConfig: {}, LossConfig: {}, TrainConfig: {"amp": not args.no_amp}}
    for option, (cls, name) in _OPTIONS.items():
        values[cls][name] = getattr(args, option)
    # The numbers' ranges are checked when the command line is parsed (cryorefine.commands.options).
    return ModelConfig(**values[ModelConfig]), LossConfig(**values[LossConfig]), TrainConfig(**values[TrainConfig])


def check_source(args: argparse.Namespace) -> None:
    """Refuse, before any set-up, a source the options do not fit: simulation options with pairs made
    already (they would be ignored), or particles without the map to simulate them from."""
    if args.pairs is not None:
        given = [option for option, dest, default in args.on_the_fly_options if getattr(args, dest) != default]
        if given:
            raise SettingsError(f"{', '.join(given)}: on-the-fly simulation options, for --particles; the pairs in "
                                f"{args.pairs} are simulated already (simulate them again with these options instead)")
    elif args.map is None:
        raise SettingsError("--particles needs --map (the map to simulate the pairs from)")


def open_source(args: argparse.Namespace, device: torch.device) -> PairSource:
    """The pairs folder, or the particles and map to simulate from on `device` (see `check_source`)."""
    from cryorefine.gan.data import PairedParticles
    from cryorefine.gan.onthefly import OnTheFlyPairs
    from cryorefine.simulate import SimulateConfig

    if args.pairs is not None:
        return PairedParticles(args.pairs, args.project_dir)
    return OnTheFlyPairs(SimulateConfig(
        particles=args.particles, map=args.map, box=args.box, pixel_size=args.pixel_size, device=str(device),
        bfactor=args.bfactor, half_maps=tuple(args.half_maps) if args.half_maps else None, mask=args.mask,
        mask_diameter=args.mask_diameter, apply_ctf=args.apply_ctf, map_pixel_size=args.map_pixel_size,
        project_dir=args.project_dir, ignore_aberrations=args.ignore_aberrations,
    ))


def simulation_record(source: OnTheFlyPairs) -> dict:
    config = source.config
    return {"particles": str(config.particles), "map": str(config.map), "box": source.box,
            "pixel_size": source.pixel_size, "apply_ctf": config.apply_ctf, "bfactor": config.bfactor,
            "scale_per_optics_group": {str(g): s for g, s in (source.scales or {}).items()}}


def main(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from cryorefine import noise
    from cryorefine.device import resolve_device
    from cryorefine.gan.checkpoint import CHECKPOINT_NAME
    from cryorefine.gan.onthefly import OnTheFlyPairs
    from cryorefine.gan.trainer import Distributed, Performance, Trainer, fit_noise_baselines
    from cryorefine.io.atomic import write_json

    check_source(args)
    cores, limit = allowed_cores()
    if args.num_workers > cores:  # each worker is a process: thousands of them would never start
        raise SettingsError(f"--num-workers {args.num_workers} is more than the {cores} cores this process "
                         f"may use ({limit}); use at most that many loader processes")
    model_config, loss_config, train_config = _configs(args)
    distributed = Distributed.from_environment()
    device = resolve_device(args.device, distributed.local_rank)
    if distributed.world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    pairs = open_source(args, device)
    new_folder = not args.out.exists()
    try:
        # The baselines (and the default generator's noise prior) are fitted on the rows the trainer trains on.
        train_rows, _ = pairs.split(train_config.seed, train_config.validation_fraction, train_config.max_validation)
        if isinstance(pairs, OnTheFlyPairs):
            pairs.fit_scale(train_rows, train_config.seed)  # on every rank: the fit broadcasts rank 0's scale
        baselines = None
        if distributed.is_main and not args.resume:
            baselines = fit_noise_baselines(pairs, train_rows, train_config.seed)
        trainer = Trainer(pairs, args.out, model_config, loss_config, train_config, device,
                          resume=args.resume, distributed=distributed,
                          performance=Performance(num_workers=args.num_workers, compile=args.compile),
                          noise_prior=None if baselines is None else baselines["coloured"])
        if distributed.is_main and isinstance(pairs, OnTheFlyPairs):
            write_json(args.out / ON_THE_FLY_NAME, simulation_record(pairs))
        if baselines is not None:
            noise.save_noise_models(args.out, baselines)
        if distributed.is_main:
            log.info("training on %d pairs (%d held out), %d px, device %s", len(trainer.train_rows),
                     len(trainer.val_rows), pairs.box, device)
        metrics = trainer.run()
        if metrics:
            log.info("validation RPSD L1: fake %.4f, sim %.4f; pixel L1 %.4f",
                     metrics["val_rpsd_l1"], metrics["val_rpsd_l1_sim"], metrics["val_pixel_l1"])
    except BaseException:
        # A run that fails before its first checkpoint leaves no half-made model folder behind.
        if new_folder and distributed.is_main and not (args.out / CHECKPOINT_NAME).exists():
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    finally:
        pairs.close()
        if distributed.world_size > 1:
            dist.destroy_process_group()
