"""RELION micrograph and coordinate nodes for the micrographs of a `cryorefine scene` folder (or their translations).

The micrographs STAR (RELION 3.1 form: optics + micrographs tables) carries the scene's optics and
each micrograph's true defocus, so Extract gives particles their CTF. The coordinates of
`External/jobNNN/<path>/<name>.mrc` are written beside it as `<name>_cryorefine.star`: the engine's
`coords_NNN.star` without its defocus columns (Extract takes defocus in a coordinate file for
per-particle CTFs and then wants optics groups there too; the scene has one defocus per micrograph).
The species (rlnClassNumber) and true angles stay. RELION finds the files by version:

- 3.1 by suffix: the node `coords_suffix_cryorefine.star` (whose text names the micrographs STAR)
  means "the micrograph's path inside the job folder, with _cryorefine.star for .mrc";
- 4.0 and 5.0 from a list, `coordinates.star` (table `coordinate_files`: rlnMicrographName,
  rlnMicrographCoordinates).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cryorefine.artifacts import SceneDescription, SceneFolder
from cryorefine.errors import InputError
from cryorefine.io.atomic import atomic_write_text
from cryorefine.io.star import read_coordinate_star, read_star_tables, stack_reference, write_star
from relion_external.nodes import NodeKind, OutputNode, RelionVersion

MICROGRAPHS_STAR = "micrographs.star"
COORDINATE_SUFFIX = "_cryorefine.star"
SUFFIX_NODE = f"coords_suffix{COORDINATE_SUFFIX}"
COORDINATE_LIST = "coordinates.star"


def micrograph_nodes(job_dir: Path, version: RelionVersion) -> list[OutputNode]:
    """The micrographs node and the coordinates node in the form `version` reads."""
    coordinates = SUFFIX_NODE if version is RelionVersion.V3_1 else COORDINATE_LIST
    return [OutputNode(str(job_dir / MICROGRAPHS_STAR), NodeKind.MICROGRAPHS),
            OutputNode(str(job_dir / coordinates), NodeKind.COORDINATES)]


def write_micrograph_nodes(job_dir: Path, scene_dir: Path, micrograph_dir: Path, template: str,
                           version: RelionVersion) -> None:
    """Write the files `micrograph_nodes` names for the scene's micrographs as `micrograph_dir/template`
    (the scene's own, or the translated ones), in scene order, with the scene's coordinates."""
    scene = SceneDescription.read(scene_dir)
    count = len(scene.micrographs)
    # Named as RELION reads them: relative to the project folder (the current directory).
    names = [stack_reference(micrograph_dir / template.format(index)) for index in range(count)]
    coordinates = [str(Path(name).with_suffix("")) + COORDINATE_SUFFIX for name in names]
    for index, path in enumerate(coordinates):
        table = read_coordinate_star(scene_dir / SceneFolder.COORDINATES.format(index))
        table = table.drop(columns=[column for column in table.columns if column.startswith("rlnDefocus")])
        write_star(path, {"": table})
    optics_table = pd.DataFrame({
        "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
        "rlnMicrographOriginalPixelSize": [scene.pixel_size], "rlnVoltage": [scene.voltage_kv],
        "rlnSphericalAberration": [scene.cs_mm], "rlnAmplitudeContrast": [scene.amplitude_contrast],
        "rlnMicrographPixelSize": [scene.pixel_size],
    })
    micrographs_table = pd.DataFrame({
        "rlnMicrographName": names, "rlnOpticsGroup": [1] * count,
        "rlnDefocusU": [m.defocus_u_a for m in scene.micrographs], "rlnDefocusV": [m.defocus_v_a for m in scene.micrographs],
        "rlnDefocusAngle": [m.defocus_angle_deg for m in scene.micrographs],
    })
    write_star(job_dir / MICROGRAPHS_STAR, {"optics": optics_table, "micrographs": micrographs_table})
    if version is RelionVersion.V3_1:
        atomic_write_text(job_dir / SUFFIX_NODE, f"{job_dir / MICROGRAPHS_STAR}\n")
    else:
        listing = pd.DataFrame({"rlnMicrographName": names, "rlnMicrographCoordinates": coordinates})
        write_star(job_dir / COORDINATE_LIST, {"coordinate_files": listing})


def read_micrograph_names(star: Path) -> list[str]:
    """The rlnMicrographName column of a RELION micrographs STAR file (3.0 or 3.1+ form)."""
    tables = read_star_tables(star)
    table = tables.get("micrographs", next(iter(tables.values())))
    if "rlnMicrographName" not in table.columns:
        raise InputError(star, "no rlnMicrographName column: not a micrographs STAR file")
    return [str(name) for name in table["rlnMicrographName"]]
