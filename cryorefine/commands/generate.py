"""Generate new realistic particles with known ground truth: simulate from a map, then refine.

Poses are uniform on SO(3) (--poses uniform) or drawn from the --like file's poses; origin shifts
are drawn from the --like file's (rlnOriginX/YAngst, so their spread is the refined particles'; with
--poses like each pose keeps its own) or are zero (--shifts zero); CTFs are rows of the --like file's
CTF columns drawn at random (its optics groups kept). Each image is simulated at its pose, shift
and CTF by the forward model `simulate` uses, so the STAR files state its ground truth in RELION's
convention. The clean projections are put on the training sims' intensity scale by a least-squares
fit against the --like file's images (use the pairs' raw.star), then made realistic by a fitted
noise baseline (by default the coloured one, see cryorefine.gan.config.GENERATE_NOISE) or the
trained model (--noise gan).

Writes OUT/particles.star + particles.mrcs (realistic; true poses, shifts and CTFs in the STAR) and
OUT/clean.star + clean.mrcs (the same particles without noise).

Example:
  cryorefine generate --model model/ --map map.mrc --like pairs/raw.star --n 1000 --out synthetic/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryorefine.commands.options import add_device, add_project_dir
from cryorefine.gan.config import GENERATE_NOISE, NOISE_CHOICES

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model folder written by `cryorefine train`")
    parser.add_argument("--map", required=True, type=Path, help="map to project (MRC)")
    parser.add_argument("--like", required=True, type=Path, help="particles whose CTFs (and poses) to draw from: "
                        "the training pairs' raw.star")
    parser.add_argument("--n", required=True, type=int, help="number of particles to generate")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--poses", choices=("uniform", "like"), default="uniform",
                        help="uniform on SO(3) (default) or drawn from --like")
    parser.add_argument("--shifts", choices=("like", "zero"), default="like",
                        help="origin shifts drawn from --like's (default; with --poses like, each pose's own) "
                        "or zero, every particle centred in its box")
    parser.add_argument("--noise", default=GENERATE_NOISE, choices=NOISE_CHOICES,
                        help=f"the GAN or a noise baseline (default: {GENERATE_NOISE}, the best method on the demo's "
                        "held-out data, docs/results.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poses, CTF draws and noise (default 0)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="particles generated at once; lower it if memory runs out (default 64)")
    add_device(parser)
    parser.add_argument("--map-pixel-size", type=float, help="override the map header's voxel size (Å)")
    add_project_dir(parser)


def main(args: argparse.Namespace) -> None:
    import numpy as np

    from cryorefine.artifacts import ParticlesFolder
    from cryorefine.gan.inference import Refiner
    from cryorefine.generate import draw_particles, fit_sim_scale, scale_mismatch
    from cryorefine.io.atomic import StagedOutputDir, refuse_output_over_inputs
    from cryorefine.io.mrc import StackWriter
    from cryorefine.io.star import (ParticleStar, particle_parameters, read_particle_star, stack_reference,
                                    write_particle_star)
    from cryorefine.physics.forward import ForwardModel
    from cryorefine.progress import track
    from cryorefine.simulate import load_map, require_correlation

    refuse_output_over_inputs(args.out, files=[args.like, args.map], folders=[args.model])
    stacks = {name: stack_reference(args.out / stack, args.project_dir)
              for name, (_, stack) in ParticlesFolder.GENERATED.items()}
    refiner = Refiner(args.model, args.noise, args.device, args.seed)
    like = read_particle_star(args.like)
    pixel, box = like.pixel_size, refiner.box
    refiner.check_geometry(box, pixel, args.like)
    model = ForwardModel(load_map(args.map, pixel, box, args.map_pixel_size), pixel, device=refiner.device)

    rng = np.random.default_rng(args.seed)
    scales = fit_sim_scale(model, like, box, rng, args.project_dir)
    log.info("sim scale per optics group: %s", ", ".join(f"group {g}: {s:.4g}" for g, s in scales.items()))
    mismatch = scale_mismatch(scales, refiner.settings.sim_scales)
    if mismatch:
        log.warning(mismatch)
    particles = draw_particles(like, args.n, args.poses, args.shifts, rng)
    optics = like.optics.copy()
    optics["rlnImageSize"] = box
    star = ParticleStar(path=args.like, optics=optics, particles=particles, source_version="3.1")
    params = particle_parameters(star)
    row_scale = np.array([scales.get(int(g), 0.0) for g in params.optics_group], dtype=np.float32)
    drawn = {int(g): scales.get(int(g), 0.0) for g in np.unique(params.optics_group)}
    require_correlation(drawn, args.like, args.map, args.map_pixel_size, pixel)

    with StagedOutputDir(args.out) as staged:
        with StackWriter(staged.path(ParticlesFolder.PARTICLES_STACK), args.n, box, pixel) as noisy_out, \
                StackWriter(staged.path(ParticlesFolder.CLEAN_STACK), args.n, box, pixel) as clean_out:
            for start in track(range(0, args.n, args.batch_size), "generate"):
                rows = np.arange(start, min(start + args.batch_size, args.n))
                clean = model.simulate(params.subset(rows)).cpu().numpy() * row_scale[rows, None, None]
                clean_out.write(start, clean)
                noisy_out.write(start, refiner(clean))
        for name, (star_name, _) in ParticlesFolder.GENERATED.items():
            table = particles.copy()
            table.insert(0, "rlnImageName", [f"{i + 1:06d}@{stacks[name]}" for i in range(args.n)])
            write_particle_star(staged.path(star_name), optics, table)
    log.info("generated %d particles (%s poses, %s shifts, %s noise) in %s", args.n, args.poses, args.shifts,
             args.noise, args.out)
