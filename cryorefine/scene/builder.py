"""One synthetic micrograph from a species library: placement, poses, ice, imaging.

All copies of all species share one placement (a chain or the boundary band may mix species);
which copy goes where is a random permutation. The margin keeps every particle's box inside the
field, so no particle is cut by the edge and every mask blob is whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cryorefine.scene.ice import IceConfig, thickness_map
from cryorefine.physics.projection import random_poses
from cryorefine.scene.micrograph import PlacedParticles, form_image, particle_potential
from cryorefine.scene.optics import Defocus, Optics
from cryorefine.scene.placement import PLACEMENT_MODES, Region, place_chains, place_uniform
from cryorefine.scene.species import Species

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneConfig:
    size: int = 1024
    pixel_size: float = 1.0
    placement: str = "uniform"
    min_separation_a: float | None = None  # None: the largest species diameter (no overlaps)
    chain_length: int = 6
    band_radius_a: float | None = None  # boundary mode; None: 35 % of the field
    band_width_a: float | None = None  # boundary mode; None: twice the separation
    ice: IceConfig = field(default_factory=IceConfig)
    defocus_range_um: tuple[float, float] = (1.0, 2.5)
    astigmatism_a: float = 200.0
    optics: Optics = field(default_factory=Optics)
    dose_per_a2: float | None = 40.0
    mtf: str = "sinc"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENT_MODES:
            raise ValueError(f"unknown placement {self.placement!r}; choose from {', '.join(PLACEMENT_MODES)}")


@dataclass
class Scene:
    micrograph: np.ndarray
    clean: np.ndarray
    labels: np.ndarray  # 0 background, i+1 on particle i
    thickness: np.ndarray  # Å
    particles: PlacedParticles
    defocus: Defocus
    min_separation_px: float


def min_separation_px(species: list[Species], config: SceneConfig) -> float:
    separation_a = config.min_separation_a or max(kind.diameter_a for kind in species)
    return separation_a / config.pixel_size


def placement_region(species: list[Species], config: SceneConfig, separation_px: float) -> Region:
    margin = max(kind.box for kind in species) / 2
    if config.placement != "boundary":
        return Region(config.size, margin)
    radius = config.band_radius_a / config.pixel_size if config.band_radius_a else 0.35 * config.size
    width = config.band_width_a / config.pixel_size if config.band_width_a else 2 * separation_px
    return Region(config.size, margin, band_radius=radius, band_width=width)


def build_scene(species: list[Species], config: SceneConfig, rng: np.random.Generator) -> Scene:
    separation = min_separation_px(species, config)
    region = placement_region(species, config, separation)
    copies = np.concatenate([np.full(kind.copies, index) for index, kind in enumerate(species)])
    if config.placement == "clustered":
        positions = place_chains(len(copies), region, separation, rng, chain_length=config.chain_length)
    else:
        positions = place_uniform(len(copies), region, separation, rng)
    which = rng.permutation(copies)[: len(positions)]
    particles = PlacedParticles(positions, which, *random_poses(len(positions), rng))
    potential, labels = particle_potential(species, particles, config.size, config.device)
    thickness = thickness_map(config.size, config.pixel_size, config.ice, rng)
    mean_defocus = rng.uniform(*config.defocus_range_um) * 1e4
    defocus = Defocus(mean_defocus + config.astigmatism_a / 2, mean_defocus - config.astigmatism_a / 2,
                      float(rng.uniform(0, 180)))
    clean, micrograph = form_image(potential, thickness, config.pixel_size, defocus, config.optics,
                                   config.ice.inelastic_mfp_a, config.dose_per_a2, config.mtf, rng)
    return Scene(micrograph, clean, labels, thickness, particles, defocus, separation)
