"""Particle species: a potential volume (V, at the micrograph's pixel size) and a copy number.

Every volume holds the particle's potential *relative to the ice it displaces*, so a scene is the
ice layer's potential plus the particles' volumes. Sources:

- Density maps (any units): scaled so the mean over the molecule (voxels above
  `MAP_MOLECULE_FRACTION` of the maximum) equals PROTEIN − ICE mean inner potential.
- Atomic models (PDB/mmCIF, needs gemmi, the optional extra `scene`): gemmi's electron
  scattering potential (Mott–Bethe form factors; gemmi's grid integrates to f_e(0) in Å per atom,
  times h²/(2π m₀ e) = 47.878 V·Å² gives volts). The ice a voxel displaces is taken in proportion
  to how close its potential is to protein's mean inner potential: net = V − V_ice·clip(V/V_protein, 0, 1).
- C-alpha-only models (every atom named CA): one isotropic Gaussian per residue with the
  integrated potential of an average residue (C5 H8 N1.4 O1.5 S0.04: Σ f_e(0) ≈ 23.1 Å with
  Peng's 1996 coefficients, × 47.878 V·Å² ≈ 1,100 V·Å³) and σ = 2 Å (a residue's side chain extent),
  then the same ice displacement rule.

Constants: `PROTEIN_MEAN_INNER_POTENTIAL_V` about 7 V, the value commonly used for protein in
image simulators; the ice constant is in `cryorefine.scene.ice`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cryorefine.errors import InputError
from cryorefine.io.mrc import read_map
from cryorefine.physics.forward import prepare_map
from cryorefine.scene.ice import ICE_MEAN_INNER_POTENTIAL_V

log = logging.getLogger(__name__)

PROTEIN_MEAN_INNER_POTENTIAL_V = 7.0
MOTT_BETHE_VOLT_A2 = 47.878  # h² / (2π m₀ e): electron form factor (Å) -> potential (V·Å³)
RESIDUE_INTEGRATED_POTENTIAL_V_A3 = 23.1 * MOTT_BETHE_VOLT_A2
RESIDUE_SIGMA_A = 2.0
MAP_MOLECULE_FRACTION = 0.25
MODEL_PADDING_A = 10.0
MAP_SUFFIXES = (".mrc", ".map", ".mrcs", ".ccp4")
MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


@dataclass
class Species:
    name: str
    volume: np.ndarray  # (box, box, box) net potential in V at `pixel_size`, centre voxel box//2
    pixel_size: float
    copies: int
    source: str

    @property
    def box(self) -> int:
        return int(self.volume.shape[-1])

    @property
    def diameter_a(self) -> float:
        """Diameter of the smallest centred sphere holding the voxels above 10 % of the maximum."""
        support = np.argwhere(self.volume > 0.1 * float(self.volume.max()))
        radius = np.sqrt(((support - self.box // 2) ** 2).sum(axis=1)).max() if len(support) else 0.0
        return float(2 * (radius + 1) * self.pixel_size)


def _even(n: float) -> int:
    return int(math.ceil(n / 2) * 2)


# Fewer voxels across than this and a particle is a blob of a few pixels (and the projector fails);
# more, and its 3D Fourier transform alone needs gigabytes.
MIN_SPECIES_BOX, MAX_SPECIES_BOX = 8, 1024


def _species_box(path: Path, width_a: float, pixel_size: float) -> int:
    """The even box of a species `width_a` wide at `pixel_size`, refused when too coarse to be a particle."""
    box = _even(width_a / pixel_size)
    if box < MIN_SPECIES_BOX:
        raise InputError(path, f"at the scene's pixel size of {pixel_size:g} Å this species is only {box} voxels "
                         f"across ({width_a:.0f} Å); use a --pixel-size of at most {width_a / MIN_SPECIES_BOX:.3g} Å")
    if box > MAX_SPECIES_BOX:
        raise InputError(path, f"at the scene's pixel size of {pixel_size:g} Å this species would be {box} voxels "
                         f"across ({width_a:.0f} Å); use a --pixel-size of at least {width_a / MAX_SPECIES_BOX:.3g} Å")
    return box


def species_from_map(path: Path, copies: int, pixel_size: float, name: str | None = None) -> Species:
    volume, voxel = read_map(path)
    box = _species_box(path, volume.shape[-1] * voxel, pixel_size)
    volume = prepare_map(volume, voxel, pixel_size, box)
    peak = float(volume.max())
    if peak <= 0:
        raise InputError(path, "map has no positive density to place as a particle")
    molecule = volume > MAP_MOLECULE_FRACTION * peak
    scale = (PROTEIN_MEAN_INNER_POTENTIAL_V - ICE_MEAN_INNER_POTENTIAL_V) / float(volume[molecule].mean())
    return Species(name or path.stem, (volume * scale).astype(np.float32), pixel_size, copies, str(path))


def _displace_ice(potential: np.ndarray) -> np.ndarray:
    excluded = np.clip(potential / PROTEIN_MEAN_INNER_POTENTIAL_V, 0.0, 1.0)
    return (potential - ICE_MEAN_INNER_POTENTIAL_V * excluded).astype(np.float32)


def _read_structure(path: Path):
    try:
        import gemmi
    except ImportError:
        raise InputError(path, "atomic models need gemmi: pip install 'cryorefine[scene]'") from None
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"unreadable atomic model ({exc})") from None
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise InputError(path, "atomic model has no atoms")
    return gemmi, structure


def species_from_model(path: Path, copies: int, pixel_size: float, name: str | None = None) -> Species:
    gemmi, structure = _read_structure(path)
    model = structure[0]
    atoms = [atom for chain in model for residue in chain for atom in residue]
    positions = np.array([[a.pos.x, a.pos.y, a.pos.z] for a in atoms])
    centroid = positions.mean(axis=0)
    extent = np.sqrt(((positions - centroid) ** 2).sum(axis=1)).max()
    box = _species_box(path, 2 * (extent + MODEL_PADDING_A), pixel_size)
    centre_a = (box // 2) * pixel_size
    if all(atom.name == "CA" for atom in atoms):
        log.info("%s: C-alpha-only model, one Gaussian per residue", path.name)
        potential = _residue_gaussians(positions - centroid + centre_a, box, pixel_size)
    else:
        potential = atomic_potential(gemmi, structure, centroid, centre_a, box, pixel_size)
    return Species(name or path.stem, _displace_ice(potential), pixel_size, copies, str(path))


def _residue_gaussians(positions_xyz: np.ndarray, box: int, pixel_size: float) -> np.ndarray:
    edges = np.arange(box + 1) * pixel_size - pixel_size / 2
    counts, _ = np.histogramdd(positions_xyz[:, ::-1], bins=(edges, edges, edges))  # (z, y, x)
    density = counts * RESIDUE_INTEGRATED_POTENTIAL_V_A3 / pixel_size**3
    return ndimage.gaussian_filter(density, RESIDUE_SIGMA_A / pixel_size, mode="constant")


def atomic_potential(gemmi, structure, centroid: np.ndarray, centre_a: float, box: int,
                     pixel_size: float) -> np.ndarray:
    shifted = structure.clone()
    shift = gemmi.Position(*(centre_a - centroid))
    for chain in shifted[0]:
        for residue in chain:
            for atom in residue:
                atom.pos = atom.pos + shift
    shifted.cell = gemmi.UnitCell(box * pixel_size, box * pixel_size, box * pixel_size, 90, 90, 90)
    shifted.spacegroup_hm = "P 1"
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 2 * pixel_size
    calculator.grid.unit_cell = shifted.cell
    calculator.grid.spacegroup = gemmi.find_spacegroup_by_name("P 1")
    calculator.grid.set_size(box, box, box)
    calculator.add_model_density_to_grid(shifted[0])
    grid = np.array(calculator.grid, copy=True)  # indexed [x, y, z]
    return grid.transpose(2, 1, 0) * MOTT_BETHE_VOLT_A2


def load_species(path: Path, copies: int, pixel_size: float, name: str | None = None) -> Species:
    suffix = path.suffix.lower()
    if suffix in MAP_SUFFIXES:
        return species_from_map(path, copies, pixel_size, name)
    if suffix in MODEL_SUFFIXES:
        return species_from_model(path, copies, pixel_size, name)
    raise InputError(path, f"unknown species file type {suffix!r}: maps {', '.join(MAP_SUFFIXES)}, "
                     f"models {', '.join(MODEL_SUFFIXES)}")
