"""Paired simulation: for every experimental particle, a clean image at its refined pose and CTF.

Sim and raw go through the same re-boxing (Fourier resize to the target pixel size, then a window
to the target box). Raw is normalised like RELION (background mean 0, std 1 outside the particle
mask); sim is put on raw's intensity scale with one least-squares scale per optics group, fitted
over all particles in a first pass and applied to the stored stack in a second.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorefine.artifacts import PairsFolder
from cryorefine.device import resolve_device
from cryorefine.errors import InputError, SettingsError
from cryorefine.io.atomic import StagedOutputDir, write_json
from cryorefine.io.mrc import ParticleImages, StackWriter, read_map, read_voxel_size
from cryorefine.io.star import (
    CORRELATION_COLUMN,
    ParticleStar,
    check_optics_supported,
    particle_parameters,
    read_particle_star,
    stack_reference,
    write_particle_star,
)
from cryorefine.metrics.correlation import pearson_rows
from cryorefine.physics.forward import ForwardModel, prepare_map, rebox
from cryorefine.physics.imaging import background_normalise, soft_circular_mask
from cryorefine.physics.projection import random_poses
from cryorefine.progress import track

log = logging.getLogger(__name__)


@dataclass
class SimulateConfig:
    particles: Path
    map: Path
    out: Path | None = None  # simulate_pairs writes here; on-the-fly training has none
    box: int | None = None  # target box (px) after re-boxing; default: the particles' box
    pixel_size: float | None = None  # target pixel size (Å); default: the particles'
    max_particles: int | None = None
    random_subset: bool = False  # pick max_particles at random instead of the first ones
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    bfactor: float = 0.0  # extra B-factor envelope (Å²) on top of each particle's rlnCtfBfactor
    half_maps: tuple[Path, Path] | None = None
    mask: Path | None = None  # 3D mask: its projection marks the particle for normalisation
    mask_diameter: float | None = None  # Å; soft circular mask (default 75% of the box)
    apply_ctf: bool = True
    map_pixel_size: float | None = None  # overrides the map header's voxel size
    project_dir: Path | None = None  # RELION project folder image paths are read and written relative to (default: cwd)
    ignore_aberrations: bool = False


@dataclass
class SimulateSummary:
    particles: int
    seconds: float
    median_correlation: float
    scale_per_optics_group: dict[str, float]
    box: int
    pixel_size: float
    source_version: str
    out: str
    correlations_below_zero: int = 0
    # The physics check: median sim/raw correlation of the checked particles at their refined poses
    # and at random poses, and whether the first is clearly above the second (else a warning).
    pose_check: dict | None = None


# The physics check: this many particles of the first batch, each simulated at this many random poses.
POSE_CHECK_PARTICLES = 32
POSE_CHECK_POSES = 8
POSE_CHECK_WARNING = ("the simulations do not match the particles better at their refined poses than at random "
                      "poses (median correlation {stated:.3f} against {random:.3f}); check the pixel size (of the "
                      "map and of the particles), the map's hand, the pose convention of the STAR file, and that "
                      "this is the map the particles were refined against")


def pose_check(simulator: "PairSimulator", rows: np.ndarray, raw: torch.Tensor, stated: np.ndarray,
               seed: int) -> dict:
    """Correlations at the refined poses against those at random poses, for the first particles.

    A simulator with a wrong pixel size, hand, pose convention or map still gives a number for every
    particle; only this comparison tells it apart from one that matches (the demo's real TRPV1
    particles: 0.18 at the refined pose against 0.06 at random ones).
    """
    n = min(len(rows), POSE_CHECK_PARTICLES)
    rng = np.random.default_rng(seed)
    count = n * POSE_CHECK_POSES
    poses = simulator.params.subset(np.repeat(np.asarray(rows[:n]), POSE_CHECK_POSES))
    poses.rot, poses.tilt, poses.psi = random_poses(count, rng)
    random_sims = rebox(simulator.model.simulate(poses), simulator.box, simulator.resize_to)
    random = pearson_rows(raw[:n].repeat_interleave(POSE_CHECK_POSES, 0), random_sims).cpu().numpy()
    stated_median, random_median = float(np.median(stated[:n])), float(np.median(random))
    # Clearly above: by more than twice the random level's standard error, and by at least 0.01.
    margin = max(0.01, 2 * float(random.std()) / np.sqrt(n))
    return {"particles": n, "random_poses_each": POSE_CHECK_POSES, "median_at_refined_pose": stated_median,
            "median_at_random_poses": random_median, "clearly_above": bool(stated_median > random_median + margin)}


def _select_rows(n: int, config: SimulateConfig) -> np.ndarray:
    if config.max_particles is None or config.max_particles >= n:
        return np.arange(n)
    if config.max_particles <= 0:
        raise InputError(config.particles, "--max-particles must be positive")
    if config.random_subset:
        rng = np.random.default_rng(config.seed)
        return np.sort(rng.choice(n, size=config.max_particles, replace=False))
    return np.arange(config.max_particles)


def _geometry(star: ParticleStar, images: ParticleImages, config: SimulateConfig) -> tuple[float, int, int, int, float]:
    """(particle pixel size, particle box, resized box, target box, target pixel size)."""
    pixel = star.pixel_size
    box = images.box
    if "rlnImageSize" in star.optics:
        declared = set(star.optics["rlnImageSize"].astype(int))
        if declared != {box}:
            raise InputError(star.path, f"_rlnImageSize {sorted(declared)} does not match the stack's box {box}")
    target_pixel = config.pixel_size or pixel
    if target_pixel <= 0:
        raise SettingsError("--pixel-size must be positive")
    resized = int(round(box * pixel / target_pixel))
    resized += resized % 2 if box % 2 == 0 else 0  # keep even boxes even
    target_pixel = pixel * box / resized
    target_box = config.box or resized
    if target_box > resized:
        raise InputError(star.path, f"--box {target_box} is larger than the particle image ({resized} px at {target_pixel:.3f} Å)")
    if target_box < 8:
        raise SettingsError("--box must be at least 8 pixels")
    return pixel, box, resized, target_box, target_pixel


def load_map(path: Path, pixel: float, box: int, override: float | None) -> np.ndarray:
    """The map resampled for particles of `pixel` Å and `box` px; refuses a missing voxel size or a gross mismatch."""
    volume, voxel = read_map(path)
    voxel = override or voxel
    if voxel <= 0:
        raise InputError(path, "map header has no voxel size; give --map-pixel-size")
    ratio = voxel / pixel
    if not 0.2 <= ratio <= 5.0:
        raise InputError(path, f"pixel size mismatch: map {voxel:.4g} Å/px vs particles {pixel:.4g} Å/px")
    if not np.any(volume):
        raise InputError(path, "map is all zeros")
    return prepare_map(volume, voxel, pixel, box)


def output_tables(star: ParticleStar, rows: np.ndarray, stack_name: str, box: int, pixel: float,
                  correlations: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The input's metadata for the selected rows, re-pointed at the new stack and geometry."""
    optics = star.optics.copy()
    optics["rlnImagePixelSize"] = pixel
    optics["rlnImageSize"] = box
    particles = star.particles.iloc[rows].reset_index(drop=True).copy()
    particles["rlnImageName"] = [f"{i + 1:06d}@{stack_name}" for i in range(len(rows))]
    particles[CORRELATION_COLUMN] = correlations
    return optics, particles


class ScaleFit:
    """Least-squares scale of sim onto raw per optics group, accumulated batch by batch."""

    def __init__(self) -> None:
        self.cross: dict[int, float] = {}
        self.power: dict[int, float] = {}

    def add(self, groups: np.ndarray, raw: torch.Tensor, sim: torch.Tensor) -> None:
        # Per-image sums first: one pass over the batch, not a masked copy of it per optics group.
        cross = (raw * sim).sum((-2, -1)).double().cpu().numpy()
        power = (sim * sim).sum((-2, -1)).double().cpu().numpy()
        for group in np.unique(groups):
            selected, key = groups == group, int(group)
            self.cross[key] = self.cross.get(key, 0.0) + float(cross[selected].sum())
            self.power[key] = self.power.get(key, 0.0) + float(power[selected].sum())

    def scales(self) -> dict[int, float]:
        return {g: (self.cross[g] / self.power[g] if self.power[g] > 0 else 0.0) for g in self.cross}


def require_correlation(scales: dict[int, float], particles: Path, map_path: Path, map_pixel_size: float | None,
                        pixel: float) -> None:
    """Refuse sims that no optics group's images correlate with (every fitted scale <= 0), naming what to check:
    most often the wrong map, or a voxel size that makes the projections the wrong size."""
    if any(scale > 0 for scale in scales.values()):
        return
    voxel = map_pixel_size or read_voxel_size(map_path)
    source = "--map-pixel-size" if map_pixel_size else "its header"
    raise InputError(particles, f"the projections of {map_path} do not correlate with these images (sim scale "
                     f"<= 0): check that it is their map, that its {voxel:g} Å per voxel ({source}) is right against "
                     f"the particles' {pixel:g} Å, and their poses")


class PairSimulator:
    """Re-boxed, normalised raw and clean sim of any particle rows, on one device.

    The one implementation of a pair, shared by `simulate_pairs` (whole stacks written to disk) and
    on-the-fly training (batches made on the training device); sims come out unscaled (see ScaleFit).
    """

    def __init__(self, config: SimulateConfig):
        self.star = read_particle_star(config.particles)
        if not config.ignore_aberrations:
            check_optics_supported(self.star)
        self.params = particle_parameters(self.star, require_ctf=config.apply_ctf)
        self.images = ParticleImages(self.star, config.project_dir)
        pixel, box, resized, self.box, self.pixel_size = _geometry(self.star, self.images, config)

        volume = load_map(config.map, pixel, box, config.map_pixel_size)
        halves = None
        if config.half_maps:
            halves = tuple(load_map(Path(p), pixel, box, config.map_pixel_size) for p in config.half_maps)
        self.device = resolve_device(config.device)
        self.model = ForwardModel(volume, pixel, device=self.device, apply_ctf=config.apply_ctf,
                                  extra_bfactor=config.bfactor, half_volumes=halves)
        self.mask_model = None
        if config.mask is not None:
            self.mask_model = ForwardModel(load_map(config.mask, pixel, box, config.map_pixel_size), pixel,
                                           device=self.device, apply_ctf=False)
        diameter_px = (config.mask_diameter / self.pixel_size) if config.mask_diameter else 0.75 * self.box
        self.circle = soft_circular_mask(self.box, diameter_px / 2, device=self.device)
        self.resize_to = resized if resized != box else None

    def __len__(self) -> int:
        return len(self.star)

    def pair(self, rows: np.ndarray, raw_images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sim, raw) (B, box, box) on the device for `rows`, given their images as read from the stacks."""
        batch = self.params.subset(np.asarray(rows))
        raw = torch.as_tensor(raw_images).to(self.device, non_blocking=True)
        raw = rebox(raw, self.box, self.resize_to)
        sim = rebox(self.model.simulate(batch), self.box, self.resize_to)
        if self.mask_model is not None:
            particle_mask = rebox(self.mask_model.simulate(batch), self.box, self.resize_to)
            particle_mask = (particle_mask > 0.05 * particle_mask.flatten(1).amax(1)[:, None, None]).float()
        else:
            particle_mask = self.circle
        return sim, background_normalise(raw, particle_mask)

    def close(self) -> None:
        self.images.close()


def simulate_pairs(config: SimulateConfig) -> SimulateSummary:
    """Write raw.star/raw.mrcs and sim.star/sim.mrcs into config.out; return the summary."""
    started = time.time()
    if config.out is None:
        raise SettingsError("simulate needs an output folder (--out)")
    stacks = {name: stack_reference(Path(config.out) / stack, config.project_dir)
              for name, (_, stack) in PairsFolder.SETS.items()}
    simulator = PairSimulator(config)
    star, params = simulator.star, simulator.params
    rows = _select_rows(len(star), config)
    target_box, target_pixel = simulator.box, simulator.pixel_size
    groups = params.optics_group[rows]
    fit = ScaleFit()
    correlations = np.zeros(len(rows))

    staged = StagedOutputDir(config.out)
    try:
        raw_path, sim_path = staged.path(PairsFolder.RAW_STACK), staged.path(PairsFolder.SIM_STACK)
        with StackWriter(raw_path, len(rows), target_box, target_pixel) as raw_out, \
                StackWriter(sim_path, len(rows), target_box, target_pixel) as sim_out:
            batches = range(0, len(rows), config.batch_size)
            for start in track(batches, "simulate"):
                batch_rows = rows[start : start + config.batch_size]
                sim, raw = simulator.pair(batch_rows, simulator.images.read(batch_rows))
                correlations[start : start + len(batch_rows)] = pearson_rows(raw, sim).cpu().numpy()
                if start == 0:
                    check = pose_check(simulator, batch_rows, raw, correlations, config.seed)
                fit.add(groups[start : start + len(batch_rows)], raw, sim)
                raw_out.write(start, raw.cpu().numpy())
                sim_out.write(start, sim.cpu().numpy())
            scales = fit.scales()
            row_scale = np.array([scales[int(g)] for g in groups], dtype=np.float32)
            sim_out.scale_rows(row_scale)
        simulator.close()

        for name, (star_name, _) in PairsFolder.SETS.items():
            optics, particles = output_tables(star, rows, stacks[name], target_box, target_pixel, correlations)
            write_particle_star(staged.path(star_name), optics, particles)
        summary = SimulateSummary(
            particles=len(rows),
            seconds=round(time.time() - started, 2),
            median_correlation=float(np.median(correlations)),
            scale_per_optics_group={str(g): float(s) for g, s in scales.items()},
            box=target_box,
            pixel_size=target_pixel,
            source_version=star.source_version,
            out=str(config.out),
            correlations_below_zero=int((correlations < 0).sum()),
            pose_check=check,
        )
        if not check["clearly_above"]:
            check["warning"] = POSE_CHECK_WARNING.format(stated=check["median_at_refined_pose"],
                                                         random=check["median_at_random_poses"])
            log.warning(check["warning"])
        write_json(staged.path(PairsFolder.SUMMARY), asdict(summary))
    except BaseException:
        staged.discard()
        raise
    staged.publish()
    return summary
