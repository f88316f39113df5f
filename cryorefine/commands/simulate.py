"""Simulate a clean image for every particle at its refined pose and CTF (paired sim/raw sets).

Writes OUT/raw.star + raw.mrcs (the experimental crops, re-boxed and normalised) and
OUT/sim.star + sim.mrcs (the clean simulations on raw's intensity scale), in the same row order
with the same metadata, plus OUT/summary.json. Each particle gets a _rlnCryorefineSimCorrelation
column (Pearson r of sim with raw) to spot bad poses.

example:
  cryorefine simulate --particles Refine3D/job010/run_data.star \\
      --map Refine3D/job010/run_class001.mrc --out pairs --box 128 --pixel-size 2.0
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cryorefine.commands.options import add_device, add_project_dir
from cryorefine.errors import InputError

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--particles", type=Path, required=True, help="RELION particle STAR file (3.0, 3.1, 4.0 or 5.0)")
    parser.add_argument("--map", type=Path, required=True, help="consensus map (MRC)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_simulation_args(parser)
    parser.add_argument("--max-particles", type=int, help="simulate at most this many particles")
    parser.add_argument("--random-subset", action="store_true", help="pick --max-particles at random (with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-subset (default 0)")
    add_device(parser)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="particles simulated at once; lower it if memory runs out (default 64)")


def add_simulation_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> list[argparse.Action]:
    """Re-boxing, masking and forward-model options, shared with `train --particles` (one definition).
    Returns those that act on the simulation only (all but --project-dir)."""
    simulation = [
        parser.add_argument("--box", type=int, help="target box in pixels after re-boxing (default: the particles' box)"),
        parser.add_argument("--pixel-size", type=float,
                            help="target pixel size in Å, by Fourier cropping (default: the particles')"),
        parser.add_argument("--bfactor", type=float, default=0.0,
                            help="extra B-factor envelope in Å² on top of rlnCtfBfactor"),
        parser.add_argument("--half-maps", type=Path, nargs=2, metavar=("HALF1", "HALF2"),
                            help="use half map 1 or 2 per particle by rlnRandomSubset"),
        parser.add_argument("--mask", type=Path, help="3D mask; its projection marks the particle for normalisation"),
        parser.add_argument("--mask-diameter", type=float,
                            help="soft circular mask diameter in Å (default: 75%% of the box)"),
        parser.add_argument("--no-ctf", dest="apply_ctf", action="store_false", help="simulate without the CTF"),
        parser.add_argument("--map-pixel-size", type=float, help="override the map header's voxel size (Å)"),
    ]
    add_project_dir(parser)
    simulation.append(parser.add_argument(
        "--ignore-aberrations", action="store_true",
        help="simulate even if the optics table has beam tilt, Zernike terms or anisotropic magnification"))
    return simulation


def main(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import refuse_output_over_inputs
    from cryorefine.simulate import SimulateConfig, simulate_pairs

    refuse_output_over_inputs(args.out, files=[args.particles, args.map, args.mask, *(args.half_maps or [])])
    config = SimulateConfig(
        particles=args.particles, map=args.map, out=args.out, box=args.box, pixel_size=args.pixel_size,
        max_particles=args.max_particles, random_subset=args.random_subset, seed=args.seed, device=args.device,
        batch_size=args.batch_size, bfactor=args.bfactor, half_maps=tuple(args.half_maps) if args.half_maps else None,
        mask=args.mask, mask_diameter=args.mask_diameter, apply_ctf=args.apply_ctf, map_pixel_size=args.map_pixel_size,
        project_dir=args.project_dir, ignore_aberrations=args.ignore_aberrations,
    )
    summary = simulate_pairs(config)
    scales = ", ".join(f"group {g}: {s:.4g}" for g, s in summary.scale_per_optics_group.items())
    log.info(
        "simulated %d particles in %.1f s (%.1f /s); median correlation %.3f; fitted sim scale %s; %d px at %.3f Å -> %s",
        summary.particles, summary.seconds, summary.particles / max(summary.seconds, 1e-9),
        summary.median_correlation, scales, summary.box, summary.pixel_size, summary.out,
    )
