"""The folders the commands write and read, and the names of their files: one owner for each on-disk name.

Torch-free, so the adapters (the Scipion plugin, the RELION wrapper) read the same names as the engine:
a renamed file is renamed for every reader at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryorefine.errors import InputError


class PairsFolder:
    """`cryorefine simulate --out`: the (sim, raw) pairs, row for row."""

    SIM_STAR = "sim.star"
    RAW_STAR = "raw.star"
    SIM_STACK = "sim.mrcs"
    RAW_STACK = "raw.mrcs"
    SUMMARY = "summary.json"
    SETS = {"raw": (RAW_STAR, RAW_STACK), "sim": (SIM_STAR, SIM_STACK)}  # (STAR, stack) of each side

    @classmethod
    def holds_pairs(cls, folder: Path) -> bool:
        return (folder / cls.SIM_STAR).is_file() and (folder / cls.RAW_STAR).is_file()


class ModelFolder:
    """`cryorefine train --out`: the trained model. CONFIG is its description, written after the checkpoint,
    so its presence means a complete model (the file RELION registers as the model node)."""

    CHECKPOINT = "checkpoint.pt"
    CONFIG = "config.json"
    LOG = "log.csv"
    PLOTS = "plots"  # a folder holding these, sim/model/raw images, their RPSD curves and the loss curves:
    PANELS_PLOT, RPSD_PLOT, LOSSES_PLOT = "panels.png", "rpsd.png", "losses.png"


class TranslatorFolder:
    """`cryorefine translate train --out`: a trained translator (either method) and its training log."""

    MODEL = "translator.pt"
    CONFIG = "config.json"
    LOG = "log.csv"


class EvaluationFolder:
    """`cryorefine evaluate ... --out`: the scores of one subcommand, and its plots."""

    METRICS = "metrics.json"  # particles, micrographs
    DOWNSTREAM = "downstream.json"  # denoising
    PICKING = "picking.json"  # picking
    PLOTS = "plots"


class ParticlesFolder:
    """`cryorefine apply --out` and `cryorefine generate --out`: a particle set; generate adds its noise-free
    ground truth (CLEAN_*)."""

    PARTICLES_STAR = "particles.star"
    PARTICLES_STACK = "particles.mrcs"
    CLEAN_STAR = "clean.star"
    CLEAN_STACK = "clean.mrcs"
    # generate's two sets: (STAR, stack) of the realistic particles and of their noise-free ground truth
    GENERATED = {"particles": (PARTICLES_STAR, PARTICLES_STACK), "clean": (CLEAN_STAR, CLEAN_STACK)}


class SceneFolder:
    """`cryorefine scene --out`: synthetic micrographs, numbered from 0, and their description."""

    DESCRIPTION = "scene.json"
    MICROGRAPH = "micrograph_{:03d}.mrc"
    CLEAN = "clean_{:03d}.mrc"
    MASK = "mask_{:03d}.mrc"
    ICE = "ice_{:03d}.mrc"
    COORDINATES = "coords_{:03d}.star"


class TranslatedFolder:
    """`cryorefine translate apply --out`: one translated micrograph per scene micrograph, beside copies of the
    scene's coordinates and masks (SceneFolder.COORDINATES, SceneFolder.MASK)."""

    MICROGRAPH = "translated_{:03d}.mrc"


SCENE_FORMAT = "cryorefine-scene"
SCENE_VERSION = 1  # files without a version are this layout too (written before it was stated)


@dataclass(frozen=True)
class SceneSpecies:
    name: str
    source: str  # the map or atomic model it was made from
    copies: int  # asked for per micrograph
    box: int  # px at the scene's pixel size
    diameter_a: float


@dataclass(frozen=True)
class SceneMicrograph:
    particles: int  # placed
    requested: int
    defocus_u_a: float
    defocus_v_a: float
    defocus_angle_deg: float
    min_separation_px: float
    ice_mean_a: float
    ice_std_a: float


@dataclass(frozen=True)
class SceneDescription:
    """scene.json: how a scene was built and what each micrograph holds, read by `translate` and both
    adapters. `settings` is the builder's whole configuration (`SceneConfig` as a dict, kept for the
    record); the fields the readers use are properties with their units."""

    settings: dict[str, Any]
    seed: int
    species: list[SceneSpecies]
    micrographs: list[SceneMicrograph]

    @property
    def size(self) -> int:
        return int(self.settings["size"])

    @property
    def pixel_size(self) -> float:
        return float(self.settings["pixel_size"])

    @property
    def voltage_kv(self) -> float:
        return float(self.settings["optics"]["voltage_kv"])

    @property
    def cs_mm(self) -> float:
        return float(self.settings["optics"]["cs_mm"])

    @property
    def amplitude_contrast(self) -> float:
        return float(self.settings["optics"]["amplitude_contrast"])

    @property
    def dose_per_a2(self) -> float | None:
        return None if not self.settings.get("dose_per_a2") else float(self.settings["dose_per_a2"])

    @property
    def largest_species_box(self) -> int:
        return max(species.box for species in self.species)

    def to_dict(self) -> dict[str, Any]:
        micrographs = [{"micrograph": SceneFolder.MICROGRAPH.format(index), "particles": m.particles,
                        "requested": m.requested,
                        "defocus": {"u_a": m.defocus_u_a, "v_a": m.defocus_v_a, "angle_deg": m.defocus_angle_deg},
                        "min_separation_px": m.min_separation_px, "ice_mean_a": m.ice_mean_a, "ice_std_a": m.ice_std_a}
                       for index, m in enumerate(self.micrographs)]
        return {"format": SCENE_FORMAT, "version": SCENE_VERSION, "config": self.settings, "seed": self.seed,
                "species": [asdict(species) for species in self.species], "micrographs": micrographs}

    @classmethod
    def read(cls, folder: Path) -> SceneDescription:
        """The description of a scene folder; a missing, foreign or damaged file is one InputError naming it."""
        path = Path(folder) / SceneFolder.DESCRIPTION
        if not path.is_file():
            raise InputError(Path(folder), f"no {SceneFolder.DESCRIPTION}: not a folder written by `cryorefine scene`")
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, f"unreadable scene description ({exc})") from None
        if not isinstance(values, dict) or values.get("format", SCENE_FORMAT) != SCENE_FORMAT:
            raise InputError(path, "not a cryorefine scene description")
        if values.get("version", SCENE_VERSION) != SCENE_VERSION:
            raise InputError(path, f"scene description version {values.get('version')} is not supported "
                             f"(this cryorefine reads version {SCENE_VERSION})")
        try:
            description = cls(
                settings=dict(values["config"]), seed=int(values["seed"]),
                species=[SceneSpecies(str(s["name"]), str(s["source"]), int(s["copies"]), int(s["box"]),
                                      float(s["diameter_a"])) for s in values["species"]],
                micrographs=[SceneMicrograph(int(m["particles"]), int(m["requested"]), float(m["defocus"]["u_a"]),
                                             float(m["defocus"]["v_a"]), float(m["defocus"]["angle_deg"]),
                                             float(m["min_separation_px"]), float(m["ice_mean_a"]),
                                             float(m["ice_std_a"])) for m in values["micrographs"]])
            for name in ("size", "pixel_size", "voltage_kv", "cs_mm", "amplitude_contrast", "dose_per_a2"):
                getattr(description, name)  # damaged settings fail here, naming the file, not in a reader
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"malformed scene description ({type(exc).__name__}: {exc})") from None
        if not description.species or not description.micrographs:
            raise InputError(path, "malformed scene description (no species or no micrographs)")
        return description
