"""Train the sim -> realistic model on the pairs written by `cryorefine simulate`.

Writes MODEL_DIR/checkpoint.pt + config.json (the model), log.csv (losses and validation
metrics), plots/{panels,rpsd,losses}.png and noise_models.json (the fitted noise baselines
that `apply --noise` offers beside the GAN).

Examples:
  cryorefine train --pairs pairs/ --out model/ --steps 400
  cryorefine train --pairs pairs/ --out model/ --steps 800 --resume     # continue the same run
  torchrun --nproc_per_node 4 -m cryorefine.cli train --pairs pairs/ --out model/ --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cryorefine import noise
from cryorefine.errors import InputError
from cryorefine.gan.config import LossConfig, ModelConfig, TrainConfig
from cryorefine.gan.data import PairedParticles
from cryorefine.gan.inference import NOISE_MODELS_NAME
from cryorefine.gan.trainer import Distributed, Trainer
from cryorefine.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

NOISE_FIT_MAX_IMAGES = 2000

# Command-line option -> (config class, field); defaults come from the dataclasses.
_OPTIONS = {
    "steps": (TrainConfig, "steps"), "batch_size": (TrainConfig, "batch_size"), "seed": (TrainConfig, "seed"),
    "lr_generator": (TrainConfig, "lr_generator"), "lr_discriminator": (TrainConfig, "lr_discriminator"),
    "validation_fraction": (TrainConfig, "validation_fraction"), "log_every": (TrainConfig, "log_every"),
    "checkpoint_every": (TrainConfig, "checkpoint_every"),
    "gan_loss": (LossConfig, "gan_mode"), "lambda_gan": (LossConfig, "lambda_gan"),
    "lambda_l1": (LossConfig, "lambda_l1"), "lambda_rpsd": (LossConfig, "lambda_rpsd"),
    "lambda_histogram": (LossConfig, "lambda_histogram"),
    "base_channels": (ModelConfig, "base_channels"), "depth": (ModelConfig, "depth"),
    "noise_channels": (ModelConfig, "noise_channels"),
}


def _default(cls: type, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path, help="folder written by `cryorefine simulate`")
    parser.add_argument("--out", required=True, type=Path, help="model folder to create (or continue with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out (same settings)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    parser.add_argument("--no-amp", action="store_true", help="full float32 on GPU (default: bf16/fp16 autocast)")
    helps = {
        "gan_loss": "adversarial loss: lsgan or hinge", "lambda_l1": "weight of paired L1 (keep modest: large values "
        "make the generator output a denoised mean)", "lambda_rpsd": "weight of the RPSD L1 term",
    }
    for option, (cls, name) in _OPTIONS.items():
        default = _default(cls, name)
        parser.add_argument(f"--{option.replace('_', '-')}", type=type(default), default=default,
                            help=f"{helps.get(option, name.replace('_', ' '))} (default: {default})")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {name}: no CUDA GPU is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def _configs(args: argparse.Namespace) -> tuple[ModelConfig, LossConfig, TrainConfig]:
    values: dict[type, dict] = {ModelConfig: {}, LossConfig: {}, TrainConfig: {"amp": not args.no_amp}}
    for option, (cls, name) in _OPTIONS.items():
        values[cls][name] = getattr(args, option)
    train = TrainConfig(**values[TrainConfig])
    if train.steps < 1 or train.batch_size < 1:
        raise InputError(None, "--steps and --batch-size must be at least 1")
    if not 0 < train.validation_fraction < 1:
        raise InputError(None, "--validation-fraction must be between 0 and 1")
    return ModelConfig(**values[ModelConfig]), LossConfig(**values[LossConfig]), train


def fit_noise_baselines(pairs: PairedParticles, rows: np.ndarray, seed: int) -> dict[str, dict]:
    """The noise baselines fitted on (at most NOISE_FIT_MAX_IMAGES) training pairs, as dicts."""
    sample = np.sort(np.random.default_rng(seed).permutation(rows)[:NOISE_FIT_MAX_IMAGES])
    sim, raw = pairs.read(sample)
    models = noise.fit_noise_models(torch.from_numpy(raw), torch.from_numpy(sim))
    return {name: model.to_dict() for name, model in models.items()}


def main(args: argparse.Namespace) -> None:
    model_config, loss_config, train_config = _configs(args)
    distributed = Distributed.from_environment()
    device = resolve_device(args.device, distributed.local_rank)
    if distributed.world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    pairs = PairedParticles(args.pairs)
    try:
        trainer = Trainer(pairs, args.out, model_config, loss_config, train_config, device,
                          resume=args.resume, distributed=distributed)
        noise_path = args.out / NOISE_MODELS_NAME
        if distributed.is_main and not noise_path.exists():
            baselines = fit_noise_baselines(pairs, trainer.train_rows, train_config.seed)
            atomic_write_text(noise_path, json.dumps(baselines, indent=2) + "\n")
        if distributed.is_main:
            log.info("training on %d pairs (%d held out), %d px, device %s", len(trainer.train_rows),
                     len(trainer.val_rows), pairs.box, device)
        metrics = trainer.run()
        if metrics:
            log.info("validation RPSD L1: fake %.4f, sim %.4f; pixel L1 %.4f",
                     metrics["val_rpsd_l1"], metrics["val_rpsd_l1_sim"], metrics["val_pixel_l1"])
    finally:
        pairs.close()
        if distributed.world_size > 1:
            dist.destroy_process_group()
