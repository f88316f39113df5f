"""Per-particle ground truth as a RELION coordinate STAR file (one per micrograph).

Columns: rlnCoordinateX/Y (pixels, x = column, y = row), rlnAngleRot/Tilt/Psi (RELION's pose
of the projection), rlnDefocusU/V/Angle (the micrograph's, exactly what was simulated),
rlnClassNumber (1-based species index) and rlnCryorefineSpecies (its name; RELION keeps
unknown labels and ignores them).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cryorefine.io.star import write_star
from cryorefine.scene.builder import Scene
from cryorefine.scene.species import Species


def coordinate_table(scene: Scene, species: list[Species]) -> pd.DataFrame:
    n = len(scene.particles.positions)
    return pd.DataFrame({
        "rlnCoordinateX": scene.particles.positions[:, 0],
        "rlnCoordinateY": scene.particles.positions[:, 1],
        "rlnAngleRot": scene.particles.rot,
        "rlnAngleTilt": scene.particles.tilt,
        "rlnAnglePsi": scene.particles.psi,
        "rlnDefocusU": [scene.defocus.u_a] * n,
        "rlnDefocusV": [scene.defocus.v_a] * n,
        "rlnDefocusAngle": [scene.defocus.angle_deg] * n,
        "rlnClassNumber": scene.particles.species + 1,
        "rlnCryorefineSpecies": [species[i].name for i in scene.particles.species],
    })


def write_coordinate_star(path: Path, table: pd.DataFrame) -> None:
    write_star(path, {"": table})

