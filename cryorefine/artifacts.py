"""The folders the commands write and read, and the names of their files: one owner for each on-disk name.

Torch-free, so the adapters (the Scipion plugin, the RELION wrapper) read the same names as the engine:
a renamed file is renamed for every reader at once.
"""

from __future__ import annotations

from pathlib import Path


class PairsFolder:
    """`cryorefine simulate --out`: the (sim, raw) pairs, row for row."""

    SIM_STAR = "sim.star"
    RAW_STAR = "raw.star"
    SIM_STACK = "sim.mrcs"
    RAW_STACK = "raw.mrcs"
    SUMMARY = "summary.json"

    @classmethod
    def holds_pairs(cls, folder: Path) -> bool:
        return (folder / cls.SIM_STAR).is_file() and (folder / cls.RAW_STAR).is_file()


class ModelFolder:
    """`cryorefine train --out`: the trained model. CONFIG is its description, written after the checkpoint,
    so its presence means a complete model (the file RELION registers as the model node)."""

    CHECKPOINT = "checkpoint.pt"
    CONFIG = "config.json"
    LOG = "log.csv"
    PLOTS = "plots"


class ParticlesFolder:
    """`cryorefine apply --out` and `cryorefine generate --out`: a particle set; generate adds its noise-free
    ground truth (CLEAN_*)."""

    PARTICLES_STAR = "particles.star"
    PARTICLES_STACK = "particles.mrcs"
    CLEAN_STAR = "clean.star"
    CLEAN_STACK = "clean.mrcs"


class SceneFolder:
    """`cryorefine scene --out`: synthetic micrographs, numbered from 0, and their description."""

    DESCRIPTION = "scene.json"
    MICROGRAPH = "micrograph_{:03d}.mrc"
    CLEAN = "clean_{:03d}.mrc"
    MASK = "mask_{:03d}.mrc"
    ICE = "ice_{:03d}.mrc"
    COORDINATES = "coords_{:03d}.star"
