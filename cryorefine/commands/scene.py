"""Build synthetic micrographs with per-particle ground truth from maps and atomic models.

Each --species is PATH[:COPIES[:NAME]]: a density map (.mrc/.map) or an atomic model
(.pdb/.cif, needs gemmi: pip install 'cryorefine[scene]'), placed COPIES times (default 10)
per micrograph at random orientations. Placement: uniform with a minimum separation,
clustered (polysome-like chains) or boundary (a circular band, e.g. a hole edge). The ice
thickness varies across the field (gradient + Perlin noise); the ice adds its own potential and
attenuation; the CTF (one defocus per micrograph), Poisson dose noise and a detector MTF follow.

Writes to DIR: micrograph_NNN.mrc (noisy), clean_NNN.mrc (noise-free), mask_NNN.mrc (0 background,
i on particle i of the coordinates file), ice_NNN.mrc (thickness, Å), coords_NNN.star (RELION
coordinates with poses, defocus and species), scene.json (settings and per-micrograph summary).

Example:
  cryorefine scene --species ribosome.mrc:40 --species apoferritin.pdb:20 --size 2048 \\
      --pixel-size 1.5 --placement clustered --ice-thickness 400 --n-micrographs 4 --out scene
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from cryorefine.artifacts import SceneDescription, SceneFolder, SceneMicrograph, SceneSpecies
from cryorefine.commands.options import add_device
from cryorefine.errors import InputError
from cryorefine.scene.ice import DEFAULT_INELASTIC_MFP_A, IceConfig
from cryorefine.scene.optics import MTF_KINDS, Optics
from cryorefine.scene.placement import PLACEMENT_MODES

if TYPE_CHECKING:  # the builder loads torch, which --help and argument errors should not wait for
    from cryorefine.scene.builder import SceneConfig
    from cryorefine.scene.species import Species

log = logging.getLogger(__name__)

MODELS_ONLY_PIXEL_SIZE_A = 1.0


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--species", action="append", required=True, metavar="PATH[:COPIES[:NAME]]",
                        help="a map or atomic model and its copies per micrograph (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--size", type=int, default=1024, help="micrograph size in pixels (default 1024)")
    parser.add_argument("--pixel-size", type=float, metavar="A",
                        help="Å per pixel (default: the first map's voxel size; "
                        f"{MODELS_ONLY_PIXEL_SIZE_A:g} Å when every species is an atomic model)")
    parser.add_argument("--n-micrographs", type=int, default=1, metavar="N", help="micrographs to build (default 1)")
    parser.add_argument("--placement", choices=PLACEMENT_MODES, default="uniform", help="placement rule")
    parser.add_argument("--min-separation", type=float, metavar="A",
                        help="minimum centre distance in Å (default: the largest species diameter)")
    parser.add_argument("--chain-length", type=int, default=6, help="particles per chain when clustered (default 6)")
    parser.add_argument("--band-radius", type=float, metavar="A",
                        help="boundary placement: radius of the band's circle (default 35%% of the field)")
    parser.add_argument("--band-width", type=float, metavar="A",
                        help="boundary placement: band width (default twice the separation)")
    parser.add_argument("--ice-thickness", type=float, default=300.0, metavar="A", help="mean ice thickness (default 300 Å)")
    parser.add_argument("--ice-correlation-length", type=float, default=1000.0, metavar="A",
                        help="1/e correlation length of the thickness noise (default 1000 Å)")
    parser.add_argument("--ice-roughness", type=float, default=0.1,
                        help="thickness noise std as a fraction of the mean (default 0.1)")
    parser.add_argument("--ice-gradient", type=float, default=0.2,
                        help="thickness change across the field as a fraction of the mean (default 0.2)")
    parser.add_argument("--inelastic-mfp", type=float, default=DEFAULT_INELASTIC_MFP_A, metavar="A",
                        help=f"inelastic mean free path of ice (default {DEFAULT_INELASTIC_MFP_A:g} Å, 300 kV)")
    parser.add_argument("--defocus", type=float, nargs=2, default=(1.0, 2.5), metavar=("MIN", "MAX"),
                        help="defocus range in µm, drawn per micrograph (default 1.0 2.5)")
    parser.add_argument("--astigmatism", type=float, default=200.0, metavar="A", help="DefocusU − DefocusV (default 200 Å)")
    parser.add_argument("--voltage", type=float, default=300.0, help="kV (default 300)")
    parser.add_argument("--cs", type=float, default=2.7, help="spherical aberration in mm (default 2.7)")
    parser.add_argument("--amplitude-contrast", type=float, default=0.1, help="(default 0.1)")
    parser.add_argument("--bfactor", type=float, default=0.0, metavar="A2", help="CTF B-factor envelope (default 0)")
    parser.add_argument("--dose", type=float, default=40.0, metavar="E_PER_A2",
                        help="electrons per Å² for Poisson noise; 0 = no noise, intensity units (default 40)")
    parser.add_argument("--mtf", choices=MTF_KINDS, default="sinc", help="detector MTF (default sinc)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device(parser)


def default_pixel_size(specs: list[str]) -> float:
    """The first map's voxel size: its particles then need no resampling, and the scene has the sampling of
    the reconstruction it came from."""
    from cryorefine.io.mrc import read_voxel_size
    from cryorefine.scene.species import MAP_SUFFIXES

    for spec in specs:
        path = Path(spec.split(":")[0])
        if path.suffix.lower() in MAP_SUFFIXES:
            return read_voxel_size(path)
    return MODELS_ONLY_PIXEL_SIZE_A


def parse_species(specs: list[str], pixel_size: float) -> list[Species]:
    from cryorefine.scene.species import load_species

    species = []
    for spec in specs:
        path_text, *rest = spec.split(":")
        path = Path(path_text)
        try:
            copies = int(rest[0]) if rest and rest[0] else 10
        except ValueError:
            raise InputError(path, f"copies must be an integer in --species {spec!r}") from None
        if copies < 0:
            raise InputError(path, f"copies must be >= 0 in --species {spec!r}")
        species.append(load_species(path, copies, pixel_size, rest[1] if len(rest) > 1 else None))
    return species


def _config(args: argparse.Namespace) -> SceneConfig:
    from cryorefine.device import resolve_device
    from cryorefine.scene.builder import SceneConfig

    if args.size < 32:
        raise InputError(args.out, f"--size {args.size} is too small (at least 32 pixels)")
    pixel_size = default_pixel_size(args.species) if args.pixel_size is None else args.pixel_size
    return SceneConfig(
        size=args.size, pixel_size=pixel_size, placement=args.placement, min_separation_a=args.min_separation,
        chain_length=args.chain_length, band_radius_a=args.band_radius, band_width_a=args.band_width,
        ice=IceConfig(args.ice_thickness, args.ice_correlation_length, args.ice_roughness, args.ice_gradient,
                      args.inelastic_mfp),
        defocus_range_um=tuple(args.defocus), astigmatism_a=args.astigmatism,
        optics=Optics(args.voltage, args.cs, args.amplitude_contrast, args.bfactor),
        dose_per_a2=args.dose or None, mtf=args.mtf, device=str(resolve_device(args.device)))


def main(args: argparse.Namespace) -> None:
    from cryorefine.io.atomic import StagedOutputDir, write_json
    from cryorefine.io.mrc import write_map
    from cryorefine.scene.builder import build_scene
    from cryorefine.scene.coordinates import coordinate_table, write_coordinate_star

    config = _config(args)
    species = parse_species(args.species, config.pixel_size)
    largest = max(kind.box for kind in species)
    if largest >= config.size:
        raise InputError(Path(species[0].source), f"a particle box of {largest} px does not fit a {config.size} px micrograph")
    rng = np.random.default_rng(args.seed)
    micrographs = []
    with StagedOutputDir(args.out) as staged:
        for index in range(args.n_micrographs):
            scene = build_scene(species, config, rng)
            wanted = sum(kind.copies for kind in species)
            placed = len(scene.particles.positions)
            log.info("micrograph %d of %d: %d of %d particles, defocus %.0f/%.0f Å", index + 1, args.n_micrographs,
                     placed, wanted, scene.defocus.u_a, scene.defocus.v_a)
            for template, image in ((SceneFolder.MICROGRAPH, scene.micrograph), (SceneFolder.CLEAN, scene.clean),
                                    (SceneFolder.MASK, scene.labels.astype(np.float32)),
                                    (SceneFolder.ICE, scene.thickness)):
                write_map(staged.path(template.format(index)), image, config.pixel_size)
            write_coordinate_star(staged.path(SceneFolder.COORDINATES.format(index)), coordinate_table(scene, species))
            micrographs.append(SceneMicrograph(
                particles=placed, requested=wanted, defocus_u_a=scene.defocus.u_a, defocus_v_a=scene.defocus.v_a,
                defocus_angle_deg=scene.defocus.angle_deg, min_separation_px=scene.min_separation_px,
                ice_mean_a=float(scene.thickness.mean()), ice_std_a=float(scene.thickness.std())))
        description = SceneDescription(
            settings=asdict(config), seed=args.seed, micrographs=micrographs,
            species=[SceneSpecies(k.name, k.source, k.copies, k.box, k.diameter_a) for k in species])
        write_json(staged.path(SceneFolder.DESCRIPTION), description.to_dict())
    log.info("wrote %d micrographs to %s", args.n_micrographs, args.out)
