"""New particles with known ground truth: poses, origins and CTFs drawn for `cryorefine generate`, and the
scale that puts clean projections on the training sims' intensity scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial.transform import Rotation

from cryorefine.errors import InputError
from cryorefine.io.mrc import ParticleImages
from cryorefine.io.star import ParticleStar, particle_parameters
from cryorefine.physics.forward import ForwardModel
from cryorefine.simulate import ScaleFit

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGIN_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst")
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
               "rlnCtfScalefactor", "rlnOpticsGroup")
SCALE_FIT_PARTICLES = 256


def draw_particles(like: ParticleStar, n: int, poses: str, shifts: str, rng: np.random.Generator) -> pd.DataFrame:
    """n particle rows: CTF rows resampled from `like`; angles uniform on SO(3) or resampled (`poses`);
    origins resampled from `like` (`shifts` "like": a refined particle's pose with its own origin when
    `poses` is "like", else the origin of another row drawn at random) or zero (`shifts` "zero")."""
    ctf_rows = rng.integers(len(like), size=n)
    table = pd.DataFrame({c: like.particles[c].to_numpy()[ctf_rows] for c in CTF_COLUMNS if c in like.particles})
    pose_rows = rng.integers(len(like), size=n)
    if poses == "like":
        missing = [c for c in ANGLE_COLUMNS if c not in like.particles]
        if missing:
            raise InputError(like.path, f"--poses like needs pose columns, missing {missing}")
        for column in ANGLE_COLUMNS:
            table[column] = like.particles[column].to_numpy()[pose_rows]
    else:
        # Uniform rotations; the ZYZ angles of R and of its inverse are equally distributed.
        angles = Rotation.random(n, random_state=rng).as_euler("ZYZ", degrees=True)
        table["rlnAngleRot"], table["rlnAngleTilt"], table["rlnAnglePsi"] = angles.T
    for column in ORIGIN_COLUMNS:  # the reader gives origins in Å whatever the file's version
        drawn = shifts == "like" and column in like.particles
        table[column] = like.particles[column].to_numpy(dtype=np.float64)[pose_rows] if drawn else 0.0
    return table


def fit_sim_scale(model: ForwardModel, like: ParticleStar, box: int, rng: np.random.Generator,
                  project_dir: Path | None) -> dict[int, float]:
    """Least-squares scale per optics group from clean sims to the like file's images (`simulate`'s fit, in float64)."""
    images = ParticleImages(like, project_dir)
    try:
        if images.box != box:
            raise InputError(like.path, f"images are {images.box} px but the model was trained on {box} px "
                             "(pass the training pairs' raw.star as --like)")
        rows = np.sort(rng.permutation(len(like))[:SCALE_FIT_PARTICLES])
        params = particle_parameters(like).subset(rows)
        sim = model.simulate(params).cpu().double()
        raw = torch.from_numpy(images.read(rows)).double()
    finally:
        images.close()
    fit = ScaleFit()
    fit.add(params.optics_group, raw, sim)
    return fit.scales()


# A fitted sim scale this far (as a ratio) from the training pairs' is not the same data's.
SCALE_MISMATCH_RATIO = 1.25


def scale_mismatch(fitted: dict[int, float], trained: dict[int, float] | None) -> str | None:
    """Why the scale fitted on --like does not look like the training pairs' (None when it does, or when the
    model does not record them): the model's noise was learnt at the training sims' intensity."""
    if not trained:
        return None
    off = {group: (scale, trained[group]) for group, scale in fitted.items()
           if group in trained and trained[group] > 0 and scale > 0
           and max(scale / trained[group], trained[group] / scale) > SCALE_MISMATCH_RATIO}
    if not off:
        return None
    pairs = ", ".join(f"group {g}: {a:.4g} here, {b:.4g} in training" for g, (a, b) in sorted(off.items()))
    return (f"the sim scale fitted on --like differs from the training pairs' ({pairs}): --like is probably not "
            "the training data (use the pairs' raw.star), or --map is not the map they were simulated from")
