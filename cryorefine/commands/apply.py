"""Turn simulated particles into realistic ones with a trained model (or a fitted noise baseline).

Writes OUT/particles.star + particles.mrcs: the input's rows and metadata, rlnImageName changed
and the CTF columns the input leaves to their defaults stated (see io.star.write_particle_star).
Images are streamed in batches; nothing appears in OUT unless the run completes.

Examples:
  cryorefine apply --model model/ --particles pairs/sim.star --out realistic/
  cryorefine apply --model model/ --particles pairs/sim.star --out gaussian/ --noise gaussian
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from cryorefine.commands.options import add_device, add_project_dir
from cryorefine.errors import InputError
from cryorefine.gan.config import APPLY_NOISE, NOISE_CHOICES

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model folder written by `cryorefine train`")
    parser.add_argument("--particles", required=True, type=Path, help="simulated particles (e.g. pairs/sim.star)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--noise", default=APPLY_NOISE, choices=NOISE_CHOICES,
                        help=f"the GAN or a noise baseline (default: {APPLY_NOISE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (same seed, same output)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="particles refined at once; lower it if memory runs out (default 64)")
    add_device(parser)
    add_project_dir(parser)


def main(args: argparse.Namespace) -> None:
    from cryorefine.artifacts import ParticlesFolder
    from cryorefine.gan.inference import Refiner
    from cryorefine.io.atomic import StagedOutputDir, refuse_output_over_inputs
    from cryorefine.io.mrc import ParticleImages, StackWriter
    from cryorefine.io.star import particle_keys, read_particle_star, stack_reference, write_particle_star
    from cryorefine.progress import track

    refuse_output_over_inputs(args.out, files=[args.particles], folders=[args.model])
    refiner = Refiner(args.model, args.noise, args.device, args.seed)
    star = read_particle_star(args.particles)
    images = ParticleImages(star, args.project_dir)
    pixel_size = star.pixel_size
    refiner.check_geometry(images.box, pixel_size, args.particles)
    stack = stack_reference(args.out / ParticlesFolder.PARTICLES_STACK, args.project_dir)
    n = len(star)
    keys = particle_keys(star.particles)
    if args.noise == "residual":
        log.info("%d of %d particles are in the residual bank (they never get their own residual)",
                 refiner.noise_model.known(keys), len(keys))
    try:
        with StagedOutputDir(args.out) as staged:
            with StackWriter(staged.path(ParticlesFolder.PARTICLES_STACK), n, images.box, pixel_size) as writer:
                for start in track(range(0, n, args.batch_size), "apply"):
                    rows = np.arange(start, min(start + args.batch_size, n))
                    writer.write(start, refiner(images.read(rows), [keys[i] for i in rows]))
            particles = star.particles.copy()
            particles["rlnImageName"] = [f"{i + 1:06d}@{stack}" for i in range(n)]
            write_particle_star(staged.path(ParticlesFolder.PARTICLES_STAR), star.optics.assign(rlnImageSize=images.box), particles)
    finally:
        images.close()
    log.info("wrote %d particles (%s noise) to %s", n, args.noise, args.out)
